"""Evaluation runs over the admin API (the console's Evaluate screen): a run of a draft against the active
version as a job in ``switchboard serve``, its progress, its comparison; one run at a time; and what an
attacker or a careless upload gets (docs/evaluation.md, "From the console")."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from support import keys
from support.db.engine import session_factory
from support.errors import EvaluationRunning
from support.evaluation.runs import LOST, EvaluationRuns
from support.jobs import JobEngine
from support.knowledge.render import Document, render
from support.knowledge.service import KnowledgeService
from support.settings import EvaluationSettings, KnowledgeSettings, Settings
from support.testing.demo_model import DemoModel
from support.testing.fake_anthropic import FakeAnthropic
from tests import servers
from tests.integration.llm_fixtures import settings_for
from tests.integration.test_eval_compare import CASES, GIFT_WRAPPING, POLICY_V1, POLICY_V2
from tests.integration.test_widget_ws import start_server
from tests.redis_cluster import sync_redis_client_for
from tests.servers import ServerProcess, agent_auth

PASSWORD = "s3cret-pass-for-evaluations"
MAX_CASES = 6
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    draft = render(
        [Document("policy", "policy", POLICY_V2), Document("Gift wrapping", "article", GIFT_WRAPPING)]
    )
    with FakeAnthropic() as server:
        server.add_rule(DemoModel(draft).reply)
        yield server


@pytest.fixture
def server(tmp_path: Path, fake: FakeAnthropic, redis_url: str) -> Iterator[ServerProcess]:
    client = sync_redis_client_for(redis_url)
    client.flushdb()
    policy = tmp_path / "policy.md"
    policy.write_text(POLICY_V1, encoding="utf-8")
    db = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"
    env = {"SWITCHBOARD_DATABASE_URL": db, "SWITCHBOARD_DATA_DIR": str(tmp_path), "PATH": ""}
    servers.create_agent(env, tmp_path, "root@example.com", PASSWORD, "Root", "admin")
    servers.create_agent(env, tmp_path, "ada@example.com", PASSWORD, "Ada", "agent")
    proc = start_server(
        tmp_path / "srv", fake, redis_url, SWITCHBOARD_DATABASE_URL=db, SWITCHBOARD_POLICY_PATH=str(policy),
        SWITCHBOARD_EVAL_MAX_CASES=str(MAX_CASES), SWITCHBOARD_EVAL_MAX_UPLOAD_CHARS="20000",
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.kill()
        client.flushdb()
        client.close()


def jsonl(cases: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(c) + "\n" for c in cases)


def draft_version(server: ServerProcess, admin: dict[str, str]) -> str:
    url = f"{server.url}/api/v1/admin/knowledge/import"
    body = {"documents": [{"name": "policy", "kind": "policy", "text": POLICY_V2},
                          {"name": "Gift wrapping", "kind": "article", "text": GIFT_WRAPPING}]}  # fmt: skip
    saved = httpx.post(url, json=body, headers=admin)
    assert saved.status_code == 201, saved.text
    version: str = saved.json()["version"]["id"]
    return version


def wait_finished(
    server: ServerProcess, admin: dict[str, str], run_id: str
) -> tuple[dict[str, Any], list[int]]:
    """The run once it ended, and every ``done`` count seen on the way."""
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run: dict[str, Any] = httpx.get(
            f"{server.url}/api/v1/admin/evaluations/{run_id}", headers=admin
        ).json()
        seen.append(run["done"])
        if run["status"] not in ("queued", "running"):
            return run, seen
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish: {run}")


def test_a_draft_runs_against_the_active_version_as_a_job_one_run_at_a_time(
    server: ServerProcess, tmp_path: Path
) -> None:
    admin = agent_auth(server, "root@example.com", PASSWORD)
    url = f"{server.url}/api/v1/admin/evaluations"
    active = httpx.get(f"{server.url}/api/v1/admin/knowledge", headers=admin).json()["active"]
    draft = draft_version(server, admin)
    cases = CASES[:5]

    started = httpx.post(url, json={"knowledge_version": draft, "cases": jsonl(cases)}, headers=admin)
    assert started.status_code == 202, started.text
    run = started.json()
    assert (run["status"], run["knowledge_version"], run["compare_version"]) == ("queued", draft, active)
    assert (run["cases"], run["total"], run["cases_source"]) == (5, 10, "upload")
    # One run at a time per workspace: a second start while the first holds the slot is refused.
    second = httpx.post(url, json={"knowledge_version": active, "cases": jsonl(cases)}, headers=admin)
    assert (second.status_code, second.json()["error"]["code"]) == (409, "evaluation_running")
    assert run["id"] in second.json()["error"]["message"]

    finished, seen = wait_finished(server, admin, run["id"])
    assert finished["status"] == "finished", finished
    assert finished["done"] == finished["total"] == 10
    assert seen == sorted(seen), "progress only moves forward"
    report = finished["report"]
    assert [(c["id"], c["outcome"], c["other_outcome"]) for c in report["compare"]["changed"]] == [
        ("gift-wrap", "answered", "handed_off"),
        ("rental-price", "answered", "answered"),
        ("gift-wrap-cost", "answered", "handed_off"),
    ]
    assert (report["summary"]["answered"], report["compare"]["summary"]["answered"]) == (4, 2)
    both = report["summary"]["cost_usd"] + report["compare"]["summary"]["cost_usd"]
    assert finished["cost_usd"] == pytest.approx(both, abs=2e-6)
    assert finished["cost_usd"] > 0
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        rows = db.execute("SELECT count(*) FROM model_usage WHERE conversation_id LIKE 'eval-%'").fetchone()
    assert rows == (0,), "the run's model calls were priced in a scratch ledger, not the service's"
    listed = httpx.get(url, headers=admin).json()
    assert [(r["id"], r["status"], r["report"]) for r in listed] == [(run["id"], "finished", None)]

    # The slot is free again; evaluating the active version itself is one run with nothing to compare.
    alone = httpx.post(url, json={"knowledge_version": active, "cases": jsonl(cases[:2])}, headers=admin)
    assert alone.status_code == 202, alone.text
    assert (alone.json()["compare_version"], alone.json()["total"]) == (None, 2)
    done, _ = wait_finished(server, admin, alone.json()["id"])
    assert done["status"] == "finished"
    assert "compare" not in done["report"]


def test_the_evaluations_api_refuses_what_it_must(server: ServerProcess) -> None:
    url = f"{server.url}/api/v1/admin/evaluations"
    admin = agent_auth(server, "root@example.com", PASSWORD)
    agent = agent_auth(server, "ada@example.com", PASSWORD)
    active = httpx.get(f"{server.url}/api/v1/admin/knowledge", headers=admin).json()["active"]
    body = {"knowledge_version": active, "cases": jsonl(CASES[:1])}
    for method, path, data in (("POST", "", body), ("GET", "", None), ("GET", "/0123456789abcdef", None)):
        nobody = httpx.request(method, url + path, json=data)
        assert (nobody.status_code, nobody.json()["error"]["code"]) == (401, "unauthorized"), (method, path)
        forbidden = httpx.request(method, url + path, json=data, headers=agent)
        assert (forbidden.status_code, forbidden.json()["error"]["code"]) == (403, "forbidden"), (
            method,
            path,
        )
        forged = httpx.request(
            method, url + path, json=data, headers={"Authorization": "Bearer forged.token.x"}
        )
        assert forged.status_code == 401

    def post(data: Any) -> httpx.Response:
        return httpx.post(url, json=data, headers=admin)

    bad = post({**body, "cases": jsonl(CASES[:1]) + "{not json\n" + json.dumps({"id": "x", "turns": []})})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "cases_invalid")
    assert "cases line 2: not JSON" in bad.json()["error"]["message"]
    assert "cases line 3: " in bad.json()["error"]["message"]
    assert post({**body, "cases": ""}).status_code == 400
    assert post({"cases": jsonl(CASES[:1])}).status_code == 400, "no knowledge_version"
    assert post({**body, "knowledge_version": ["x"]}).status_code == 400
    unknown = post({**body, "knowledge_version": "000000000000"})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "not_found")
    assert post({**body, "compare": "000000000000"}).status_code == 404
    many = [{"id": f"c{i}", "turns": ["Can tents be rented?"]} for i in range(MAX_CASES + 1)]
    over = post({**body, "cases": jsonl(many)})
    assert (over.status_code, over.json()["error"]["code"]) == (413, "too_large")
    long = post({**body, "cases": jsonl([{"id": "long", "turns": ["x" * 7000]}] * 3)})
    assert (long.status_code, long.json()["error"]["code"]) == (413, "too_large")
    # No upload: the shipped starter set (123 cases), over this server's bound of MAX_CASES.
    starter = post({"knowledge_version": active})
    assert starter.status_code == 413
    assert "123 cases" in starter.json()["error"]["message"]
    missing = httpx.get(f"{url}/0123456789abcdef", headers=admin)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    assert httpx.get(url, headers=admin).json() == [], "nothing refused was started"
    schema = httpx.get(f"{server.url}/schema/openapi.json").json()
    assert {"400", "401", "403", "404", "409", "413"} <= set(
        schema["paths"]["/api/v1/admin/evaluations"]["post"]["responses"]
    )


async def test_a_run_whose_worker_is_gone_reads_failed_and_frees_the_slot(
    tmp_path: Path, db_engine: AsyncEngine, redis_client: aioredis.Redis, redis_url: str, fake: FakeAnthropic
) -> None:
    """No worker takes the job here: the run holds the slot only as long as its lease."""
    seed = tmp_path / "policy.md"
    seed.write_text(POLICY_V1, encoding="utf-8")
    knowledge = KnowledgeService(session_factory(db_engine), redis_client, KnowledgeSettings())
    active = (await knowledge.start(seed)).version
    settings = Settings(llm=settings_for(fake), evaluation=EvaluationSettings(lease_s=60))
    jobs = JobEngine(redis_url)
    runs = EvaluationRuns(redis_client, session_factory(db_engine), jobs, knowledge, settings)
    try:
        first = await runs.start(knowledge_version=active, compare=None, cases=jsonl(CASES[:1]), by="root")
        assert (first.status, first.compare_version, first.total) == ("queued", None, 1)
        with pytest.raises(EvaluationRunning):
            await runs.start(knowledge_version=active, compare=None, cases=jsonl(CASES[:1]), by="root")
        lease_ms = await redis_client.pttl(keys.evaluation_running())
        assert 55_000 < lease_ms <= 60_000

        await redis_client.delete(keys.evaluation_running())  # the lease lapsed: its worker never came
        lost = await runs.get(first.id)
        assert (lost.status, lost.error) == ("failed", LOST)
        second = await runs.start(knowledge_version=active, compare=None, cases=jsonl(CASES[:1]), by="root")
        # A worker that takes the lost run late does not run it, and leaves the new run's slot alone.
        await runs.execute(run_id=first.id)
        assert (await runs.get(first.id)).status == "failed"
        assert await redis_client.get(keys.evaluation_running()) == second.id.encode()
        assert [r.id for r in await runs.recent()] == [second.id, first.id]
    finally:
        await jobs.aclose()
