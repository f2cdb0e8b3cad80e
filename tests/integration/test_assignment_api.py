"""Teams, automatic assignment and SLA end to end: a `switchboard serve` process, real Redis, SQLite, real
customer and agent WebSockets; only the model API is the fake."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests import servers
from tests.integration.test_widget_ws import Client, connect, is_answer, is_triage, open_session, start_server
from tests.servers import ServerProcess, agent_auth


@pytest.fixture
def desk(tmp_path: Path, fake: FakeAnthropic, redis_url: str, redis_client: Any) -> Iterator[ServerProcess]:
    fake.reset()
    fake.add_rule(
        lambda body: Reply(
            tool_use={
                "name": "record_triage",
                "input": {
                    "intent": "payments_billing", "urgency": "normal", "sentiment": "neutral",
                    "language": "en", "wants_human": True, "confidence": 0.9, "reason": "asks for a person",
                },
            }
        ) if is_triage(body) else None
    )  # fmt: skip
    fake.add_rule(lambda body: Reply(text="A draft for the agent.") if is_answer(body) else None)
    db = f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}"
    env = {"SWITCHBOARD_DATABASE_URL": db, "SWITCHBOARD_DATA_DIR": str(tmp_path), "PATH": ""}
    servers.create_agent(env, tmp_path, "root@example.com", "s3cret-pass", "Root", "admin")
    proc = start_server(tmp_path / "a", fake, redis_url, SWITCHBOARD_DATABASE_URL=db)
    admin = agent_auth(proc, "root@example.com", "s3cret-pass")
    made = httpx.post(
        f"{proc.url}/api/v1/admin/agents", headers=admin,
        json={"email": "ada@example.com", "password": "s3cret-pass", "name": "Ada"},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    try:
        yield proc
    finally:
        proc.kill()


async def test_an_online_agent_is_assigned_a_handoff_automatically_and_the_sla_is_shown_and_reported(
    desk: ServerProcess,
) -> None:
    admin, ada = (
        agent_auth(desk, "root@example.com", "s3cret-pass"),
        agent_auth(desk, "ada@example.com", "s3cret-pass"),
    )
    url = f"{desk.url}/api/v1/admin"
    ada_id = httpx.get(f"{desk.url}/api/v1/agent/me", headers=ada).json()["id"]
    root_id = httpx.get(f"{desk.url}/api/v1/agent/me", headers=admin).json()["id"]
    # An agent may not change teams, skills or see the SLA report (403), whatever they send.
    for method, path, body in (
        ("PATCH", "/teams/default", {"assignment": "least_busy"}),
        ("POST", "/teams", {"id": "x", "name": "X"}),
        ("PUT", "/teams/default/members", {"agent_ids": [ada_id]}),
        ("PUT", f"/agents/{ada_id}/skills", {"languages": ["en"], "intents": []}),
        ("GET", f"/agents/{ada_id}/skills", None),
    ):  # fmt: skip
        denied = httpx.request(method, f"{url}{path}", headers=ada, json=body)
        assert (denied.status_code, denied.json()["error"]["code"]) == (403, "forbidden")
    assert httpx.get(f"{desk.url}/api/v1/reports/sla", headers=ada).status_code == 403
    # Bad input: a clear 400, nothing changed.
    for body in (
        {"assignment": "fastest"}, {"sla_first_reply_s": -5}, {"sla_first_reply_s": "soon"},
        {"sla_first_reply_s": 30 * 86400 + 1}, {"sla_resolution_s": -1}, {"name": "x" * 121},
    ):  # fmt: skip
        bad = httpx.patch(f"{url}/teams/default", headers=admin, json=body)
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_request"), bad.text
    bad = httpx.put(f"{url}/teams/default/members", headers=admin, json={"agent_ids": ["nobody"]})
    assert bad.status_code == 400
    assert httpx.patch(f"{url}/teams/nope", headers=admin, json={"name": "N"}).status_code == 404
    (team,) = httpx.get(f"{url}/teams", headers=admin).json()
    assert (team["assignment"], team["assignment_source"]) == ("manual", "setting")
    # The admin turns automatic assignment on, with a 60 s first-reply target.
    team = httpx.patch(
        f"{url}/teams/default", headers=admin,
        json={"assignment": "least_busy", "sla_first_reply_s": 60, "sla_resolution_s": 900},
    ).json()  # fmt: skip
    assert (team["assignment"], team["sla"]) == (
        "least_busy",
        {"first_reply_s": 60, "resolution_s": 900, "source": "admin"},
    )
    skills = httpx.put(
        f"{url}/agents/{ada_id}/skills", headers=admin, json={"languages": ["EN"], "intents": []}
    )
    assert skills.json() == {"agent_id": ada_id, "languages": ["en"], "intents": []}
    for body in (
        {"languages": "en", "intents": []},  # a code, not a list
        {"languages": [], "intents": [f"intent_{i}" for i in range(51)]},  # over 50
    ):
        bad = httpx.put(f"{url}/agents/{ada_id}/skills", headers=admin, json=body)
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_request"), body
    unchanged = httpx.get(f"{url}/agents/{ada_id}/skills", headers=admin).json()
    assert unchanged == {"agent_id": ada_id, "languages": ["en"], "intents": []}

    token = ada["Authorization"][7:]
    async with websockets.connect(f"ws://127.0.0.1:{desk.port}/api/v1/agent/ws?token={token}") as ws:
        console = Client(ws)
        await console.until(lambda f: f["type"] == "queue")  # her console is open: she is online
        session = open_session(desk)
        async for customer in connect(desk, session["token"]):
            await customer.send({"type": "message", "client_id": "m1", "text": "A person please"})
            assigned = (await console.until(lambda f: f["type"] == "assigned"))[-1]
            assert (assigned["agent"]["id"], assigned["auto"]) == (ada_id, True)
            cid = assigned["conversation_id"]
            await customer.until(lambda f: f["type"] == "status" and f["state"] == "agent")
            (mine,) = httpx.get(f"{desk.url}/api/v1/agent/conversations", headers=ada).json()
            assert (mine["conversation_id"], mine["team"], mine["language"]) == (cid, "default", "en")
            first = mine["sla"]["first_reply"]
            assert (first["target_s"], first["breached"], first["met_at"]) == (60, False, None)
            assert 50 <= first["left_s"] <= 60
            sent = httpx.post(
                f"{desk.url}/api/v1/agent/conversations/{cid}/messages",
                headers=ada,
                json={"text": "Hello, Ada here."},
            )
            assert sent.status_code == 201, sent.text
            (mine,) = httpx.get(f"{desk.url}/api/v1/agent/conversations", headers=ada).json()
            assert mine["sla"]["first_reply"]["met_at"] is not None
            assert mine["sla"]["first_reply"]["breached"] is False
            resolved = httpx.post(f"{desk.url}/api/v1/agent/conversations/{cid}/resolve", headers=ada)
            assert resolved.status_code == 200, resolved.text
    deadline = time.monotonic() + 10
    while True:  # the record is written beside the queue; read until it shows
        report = httpx.get(f"{desk.url}/api/v1/reports/sla", headers=admin).json()
        if report["total"]["resolution"]["met"] == 1 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    (row,) = report["teams"]
    assert (row["team"], row["handoffs"]) == ("default", 1)
    assert row["first_reply"] == {"met": 1, "breached": 0, "pending": 0, "breach_rate": 0.0}
    assert row["resolution"] == {"met": 1, "breached": 0, "pending": 0, "breach_rate": 0.0}
    # The admin's changes and the system's assignment are in the audit log, by whom.
    entries = httpx.get(f"{desk.url}/api/v1/admin/audit", headers=admin, params={"limit": 50}).json()[
        "entries"
    ]
    done = [
        (e["action"], e["actor_id"]) for e in entries if e["action"].startswith(("team.", "conversation.a"))
    ]
    assert ("team.updated", root_id) in done
    assert ("conversation.assigned", None) in done
    csv = httpx.get(f"{desk.url}/api/v1/reports/sla", headers=admin, params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[1].startswith("default,1,0,1,0,0,0.0,1,0,0,0.0")
