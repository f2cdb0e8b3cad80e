"""Knowledge as versions: saved, seeded, activated for every process within 2 s, rolled back with the
prompt cache intact; the admin API as an attacker sees it (docs/knowledge.md)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from support import keys
from support.db.engine import make_engine, session_factory
from support.errors import KnowledgeConflict, TooLarge, ValidationFailed
from support.evaluation.judge import judge_system
from support.knowledge.render import GUIDANCE_INTRO
from support.knowledge.service import DocumentIn, KnowledgeService
from support.llm.answer import knowledge_blocks, system_blocks
from support.llm.policy import Policy
from support.runtime import open_runtime
from support.settings import (
    AppSettings,
    DatabaseSettings,
    KnowledgeSettings,
    PolicySettings,
    RedisSettings,
    Settings,
)
from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests import servers
from tests.integration.test_widget_ws import (
    assistant_message,
    connect,
    is_answer,
    is_triage,
    open_session,
    start_server,
    triage_reply,
)
from tests.servers import ServerProcess, agent_auth

POLICY = "# Shop policy\n\n## Returns\n\nTents can be returned within 30 days.\n"
PASSWORD = "s3cret-pass-for-knowledge"


def prompt_prefix(policy: Policy) -> list[dict[str, Any]]:
    """The answer prompt's cached prefix for ``policy``: the system, then the knowledge documents and the
    (here no) curated examples that open the first user turn."""
    return [*system_blocks(policy), *knowledge_blocks(policy, [])]


def service(db_engine: AsyncEngine, redis: aioredis.Redis, **limits: Any) -> KnowledgeService:
    return KnowledgeService(session_factory(db_engine), redis, KnowledgeSettings(**limits))


async def test_the_policy_file_seeds_the_first_version_once_and_saves_make_versions(
    tmp_path: Path, db_engine: AsyncEngine, redis_client: aioredis.Redis
) -> None:
    seed = tmp_path / "policy.md"
    seed.write_text(POLICY, encoding="utf-8")
    knowledge = service(db_engine, redis_client)
    active = await knowledge.start(seed)
    # The id of a policy-only knowledge is the policy file's own version: sha256 of its bytes.
    assert active.version == hashlib.sha256(seed.read_bytes()).hexdigest()[:12]
    assert active.text == POLICY
    assert await redis_client.get(keys.knowledge_active()) == active.version.encode()

    other = tmp_path / "other.md"
    other.write_text("# Another policy\n\nNothing.\n", encoding="utf-8")
    again = service(db_engine, redis_client)
    assert (await again.start(other)).version == active.version, "the file only seeds an empty database"

    first = await knowledge.save(DocumentIn("Gift wrapping", "We wrap gifts for 3 EUR.", "article"))
    second = await knowledge.save(
        DocumentIn("Rentals", "Rent a tent for 10 EUR a day.", "article"), base=first.version.id
    )
    assert first.created
    assert second.created
    assert knowledge.active.version == active.version, "a save is not active until activated"
    edited = await knowledge.save(DocumentIn("Gift wrapping", "We wrap gifts for 4 EUR.", "article"))
    detail = await knowledge.version(edited.version.id)
    assert [(d.name, d.kind) for d in detail.items] == [
        ("policy", "policy"), ("Gift wrapping", "article"), ("Rentals", "article"),
    ], "the policy first; an edited article keeps its place"  # fmt: skip
    assert (await knowledge.head()).version.id == edited.version.id
    # Saving what an existing version holds gives that version back (one id, one prompt text).
    back = await knowledge.save(DocumentIn("Gift wrapping", "We wrap gifts for 3 EUR.", "article"))
    assert (back.created, back.version.id) == (False, second.version.id)
    assert (await knowledge.head()).version.id == second.version.id

    with pytest.raises(KnowledgeConflict):
        await knowledge.save(DocumentIn("Rentals", "x", "article"), base=first.version.id)
    with pytest.raises(KnowledgeConflict):
        await knowledge.save(DocumentIn("Rentals", "x", "policy"))
    with pytest.raises(ValidationFailed):
        await knowledge.save(DocumentIn("Bad\nname", "x", "article"))
    with pytest.raises(ValidationFailed):
        await knowledge.save(DocumentIn("Empty", "  \n", "article"))
    with pytest.raises(TooLarge):
        await service(db_engine, redis_client, max_document_chars=10).save(DocumentIn("Long", "x" * 11))

    # Activating, then rolling back: the prompt prefix of a version is the same bytes every time.
    before = prompt_prefix(knowledge.active)
    await knowledge.activate(second.version.id)
    assert knowledge.active.version == second.version.id
    assert "# Article: Rentals" in knowledge.active.text
    await knowledge.activate(active.version)
    assert prompt_prefix(knowledge.active) == before

    # Redis flushed: SQL knows which version was activated last.
    await knowledge.activate(second.version.id)
    await redis_client.flushdb()
    fresh = service(db_engine, redis_client)
    assert (await fresh.start(seed)).version == second.version.id
    # An id this database does not know (processes on another database wrote it) does not stop a start.
    await redis_client.set(keys.knowledge_active(), "ffffffffffff")
    assert (await service(db_engine, redis_client).start(seed)).version == second.version.id


async def test_the_runtime_hands_the_active_version_to_answers_tickets_examples_and_offline(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> None:
    settings = Settings(
        app=AppSettings(data_dir=tmp_path),
        redis=RedisSettings(url=redis_url),
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"),
        policy=PolicySettings(path=_write(tmp_path / "policy.md", POLICY)),
    )
    async with open_runtime(settings, run_jobs=False) as rt:
        seeded = rt.policy.version
        assert rt.turns.deps.offline.answer("How do I rent a tent for a trip?") is None
        saved = await rt.knowledge.save(
            DocumentIn("Rentals", "## Tent rental\n\nRent a tent for a trip: 10 EUR a day, deposit 50 EUR.")
        )
        await rt.knowledge.activate(saved.version.id)
        new = saved.version.id
        assert new != seeded
        assert (rt.policy.version, rt.turns.deps.policy.version, rt.tickets.policy.version) == (new, new, new)
        assert (rt.desk.policy_version, rt.batches.policy_version) == (
            new,
            new,
        )  # examples, batch ledger rows
        match = rt.turns.deps.offline.answer("How do I rent a tent for a trip?")
        assert match is not None
        assert "10 EUR a day" in match.text


async def test_guidance_rules_render_in_their_own_section_into_the_answer_and_judge_prefixes(
    tmp_path: Path, db_engine: AsyncEngine, redis_client: aioredis.Redis
) -> None:
    knowledge = service(db_engine, redis_client)
    seeded = await knowledge.start(_write(tmp_path / "policy.md", POLICY))
    prefix = prompt_prefix(knowledge.active)
    rule = "Never promise a refund above 100 EUR."
    await knowledge.save(DocumentIn("Refund limit", rule, "guidance"))
    saved = await knowledge.save(DocumentIn("Rentals", "Tents rent for 10 EUR a day.", "article"))
    with pytest.raises(ValidationFailed):
        await knowledge.save(DocumentIn("Secret", "x", "secret"))
    assert knowledge.active.version == seeded.version, "saved, not active"
    assert prompt_prefix(knowledge.active) == prefix

    await knowledge.activate(saved.version.id)
    active = knowledge.active
    section = f"# Guidance\n\n{GUIDANCE_INTRO}\n\n## Refund limit\n\n{rule}\n"
    assert active.guidance == section
    # After the articles whatever the order of saving, in the cached block of every answer request.
    assert (
        active.text == f"{POLICY.strip()}\n\n# Article: Rentals\n\nTents rent for 10 EUR a day.\n\n{section}"
    )
    # The guidance in the system prompt (rules, never cited); the policy and the article as documents.
    answer_system, *documents, _examples = prompt_prefix(active)
    assert answer_system["text"].endswith(f"<guidance>\n{section.strip()}\n</guidance>")
    assert [d["title"] for d in documents] == ["policy", "Rentals"]
    assert rule not in str(documents)
    assert "cache_control" in documents[-1]
    assert rule not in active.facts, "the offline responder never quotes a rule to a customer"
    judge = judge_system(active.text, active.guidance)
    assert judge[-1]["text"] == f"<guidance>\n{section}\n</guidance>"
    assert "cache_control" in judge[-1]
    assert rule not in judge[1]["text"], "read once, in its own tag"
    assert (await KnowledgeService.policy_in(session_factory(db_engine))) == active  # what eval reads


def _write(path: Path, content: str) -> Path:
    path.write_text(content, encoding="utf-8")
    return path


# --- two served processes ---------------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path: Path, fake: FakeAnthropic, redis_url: str, redis_client: Any) -> Iterator[Any]:
    """Servers A and B sharing Redis and one SQLite database, an admin and an agent."""
    fake.reset()
    db = f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}"
    env = {"SWITCHBOARD_DATABASE_URL": db, "SWITCHBOARD_DATA_DIR": str(tmp_path), "PATH": ""}
    servers.create_agent(env, tmp_path, "root@example.com", PASSWORD, "Root", "admin")
    servers.create_agent(env, tmp_path, "ada@example.com", PASSWORD, "Ada", "agent")
    extra = {"SWITCHBOARD_DATABASE_URL": db, "SWITCHBOARD_KNOWLEDGE_MAX_DOCUMENT_CHARS": "50000"}
    a = start_server(tmp_path / "a", fake, redis_url, **extra)
    b = start_server(tmp_path / "b", fake, redis_url, **extra)
    try:
        yield a, b, db
    finally:
        a.kill()
        b.kill()


async def ask(server: ServerProcess, fake: FakeAnthropic, question: str) -> dict[str, Any]:
    """One customer question in a new conversation on ``server``: the answer request's body."""
    count = len(fake.requests)
    session = open_session(server)
    async for client in connect(server, session["token"]):
        await client.send({"type": "message", "client_id": "c-1", "text": question})
        # answered, or handed off when the answer cites nothing of the knowledge (it does not cover it)
        await client.until(lambda f: assistant_message(f) or f.get("state") == "queued")
    bodies = [r.body for r in fake.requests[count:] if r.body and is_answer(r.body)]
    assert len(bodies) == 1
    body: dict[str, Any] = bodies[0]
    return body


def documents(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The knowledge document blocks of an answer request (they open its first user turn)."""
    return [b for b in body["messages"][0]["content"] if b["type"] == "document"]


async def ledger(db: str, purpose: str, rows: int = 0) -> list[tuple[str, int]]:
    """(policy_version, cache_read_tokens) of the ledger rows of ``purpose``, oldest first, once there are
    at least ``rows`` (a row is written just after the answer reached the customer)."""
    engine = make_engine(db)
    query = text("SELECT policy_version, cache_read_tokens FROM model_usage WHERE purpose = :p ORDER BY id")
    try:
        async with asyncio.timeout(10):
            while True:
                async with engine.connect() as conn:
                    found = [(r[0], r[1]) for r in await conn.execute(query, {"p": purpose})]
                if len(found) >= rows:
                    return found
                await asyncio.sleep(0.05)
    finally:
        await engine.dispose()


@pytest.mark.serial  # a bound on elapsed time: run while no other test loads the machine
async def test_an_activation_reaches_another_process_within_2s_and_a_rollback_reads_the_old_cache(
    pair: Any, fake: FakeAnthropic
) -> None:
    a, b, db = pair
    fake.add_rule(lambda body: triage_reply() if is_triage(body) else None)
    fake.add_rule(lambda body: Reply(text="Here is what our policy says.") if is_answer(body) else None)
    admin = agent_auth(a, "root@example.com", PASSWORD)
    url = f"{a.url}/api/v1/admin/knowledge"
    listed = httpx.get(url, headers=admin).json()
    seeded = listed["active"]
    assert listed["head"]["id"] == seeded
    assert [d["kind"] for d in listed["documents"]] == ["policy"]

    first = await ask(b, fake, "Can I return my tent?")
    marker = "GIFTWRAP-7731: we wrap any gift for 3 EUR."
    saved = httpx.post(url, json={"name": "Gift wrapping", "kind": "article", "text": marker}, headers=admin)
    assert saved.status_code == 201, saved.text
    assert saved.json()["created"] is True
    article = saved.json()["version"]["id"]
    rule = "Hand off any legal threat."
    guided = httpx.post(url, json={"name": "Legal", "kind": "guidance", "text": rule}, headers=admin)
    assert guided.status_code == 201, guided.text
    new = guided.json()["version"]["id"]
    assert marker not in json.dumps((await ask(b, fake, "Do you wrap gifts?"))["messages"]), (
        "saved, not active"
    )

    activated = httpx.post(f"{url}/versions/{new}/activate", headers=admin)
    assert activated.status_code == 200, activated.text
    assert activated.json()["active"] is True
    await asyncio.sleep(2.0)  # the promise: every process answers from it within 2 s, no restart
    after = await ask(b, fake, "Do you wrap gifts?")
    assert after["system"][0]["text"].endswith(
        f"# Guidance\n\n{GUIDANCE_INTRO}\n\n## Legal\n\n{rule}\n</guidance>"
    )
    article_doc = documents(after)[-1]
    assert (article_doc["title"], article_doc["source"]["content"]) == (
        "Gift wrapping",
        [{"type": "text", "text": marker}],
    )
    versions = [v for v, _ in await ledger(db, "answer", rows=3)]
    assert versions == [seeded, seeded, new], "each answer's ledger row names the version it used"
    assert [v for v, _ in await ledger(db, "triage")][-1] == new

    # Rolling back: the seeded version's prefix is the same bytes as before, so its cache entry is read.
    listed_versions = httpx.get(f"{url}/versions", headers=admin).json()
    assert [(v["id"], v["active"], v["head"]) for v in listed_versions] == [
        (new, True, True),
        (article, False, False),
        (seeded, False, False),
    ]
    assert httpx.post(f"{url}/versions/{seeded}/activate", headers=admin).status_code == 200
    await asyncio.sleep(2.0)
    rolled_back = await ask(b, fake, "Can I return my boots?")
    assert (rolled_back["system"], documents(rolled_back)) == (first["system"], documents(first))
    version, cache_read = (await ledger(db, "answer", rows=4))[-1]
    assert version == seeded
    assert cache_read >= len(json.dumps(documents(first))) // 8, "the seeded prefix was read from the cache"


def test_the_admin_api_refuses_what_it_must(pair: Any) -> None:
    a, _b, _db = pair
    url = f"{a.url}/api/v1/admin/knowledge"
    admin = agent_auth(a, "root@example.com", PASSWORD)
    agent = agent_auth(a, "ada@example.com", PASSWORD)
    doc = {"name": "Rentals", "kind": "article", "text": "Rent a tent."}
    assert httpx.get(url).status_code == 401
    for method, path, body in (("GET", "", None), ("POST", "", doc), ("GET", "/versions", None),
                               ("POST", "/versions/000000000000/activate", None)):  # fmt: skip
        resp = httpx.request(method, url + path, json=body, headers=agent)
        assert resp.status_code == 403, (method, path, resp.text)
        assert resp.json()["error"]["code"] == "forbidden"

    def post(body: Any, path: str = "") -> httpx.Response:
        return httpx.post(url + path, json=body, headers=admin)

    too_long = post({**doc, "text": "x" * 50_001})
    assert (too_long.status_code, too_long.json()["error"]["code"]) == (413, "too_large")
    over_body = post({**doc, "text": "x" * 1_100_000})
    assert over_body.status_code == 413
    bad_kind = post({**doc, "kind": "secret"})
    assert (bad_kind.status_code, bad_kind.json()["error"]["code"]) == (400, "invalid_request")
    assert post({**doc, "name": ""}).status_code == 400
    assert post({**doc, "name": "a\u0000b"}).status_code == 400
    assert post({"name": "x"}).status_code == 400
    unknown = post(None, "/versions/nope00000000/activate")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "not_found")
    assert httpx.get(f"{url}/versions/nope00000000", headers=admin).status_code == 404
    saved = post(doc)
    assert saved.status_code == 201
    stale = post({**doc, "text": "Rent two tents.", "base_version": "000000000000"})
    assert (stale.status_code, stale.json()["error"]["code"]) == (409, "knowledge_conflict")
    assert post({**doc, "kind": "policy"}).status_code == 409, "a name of the other kind"
    schema = httpx.get(f"{a.url}/schema/openapi.json").json()
    operation = schema["paths"]["/api/v1/admin/knowledge"]["post"]
    assert {"400", "401", "403", "409", "413"} <= set(operation["responses"])
