"""Customer data: export and erasure per customer (admin API and CLI) and retention, attempted as an admin
answering a customer's access or erasure request would: against real `switchboard serve` processes, the
real widget socket and agent API, real Redis, SQLite and PostgreSQL, and the fake model API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import websockets
from sqlalchemy import func, select

from handoff.examples import ExampleService
from handoff.queue import HandoffQueue
from handoff.records import HandoffRecords
from handoff.service import HandoffService
from support import keys
from support.conversation.archive import archive_idle
from support.conversation.store import ConversationStore
from support.db.engine import make_engine, session_factory
from support.db.models import (
    ArchivedConversation,
    ArchivedMessage,
    ConversationFact,
    Example,
    HandoffRecord,
    Rating,
)
from support.privacy.customer_data import CustomerDataService, CustomerRef, default_sources
from support.privacy.retention import sweep_once
from support.reports.facts import FactRefresher
from support.settings import RetentionSettings
from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests import servers
from tests.integration.test_handoff import triage, user_text
from tests.integration.test_widget_ws import ORIGIN, WIDGET_KEYS, Client, is_answer, is_triage
from tests.servers import ServerProcess, agent_auth
from tests.servers import wait_for as servers_wait_for

UNCOVERED = "Can you engrave our names on a wedding tent? My card is 4111 1111 1111 1111."
AGENT_TEXT = "We don't engrave tents, but StitchCo embroiders names on tent bags for $25."
SIMILAR = "Do you engrave names on tents?"
BOT_TEXT = "Here is what our policy says."
ADA = {"id": "v-ada", "name": "Ada", "email": "Ada@Example.com"}
BOB = {"id": "v-bob", "name": "Bob", "email": "bob@example.com"}
PASSWORD = "long enough password"


@pytest.fixture
def fake_api(fake: FakeAnthropic) -> FakeAnthropic:
    fake.reset()
    # the wedding question is not in the policy: triage is unsure and it goes to a person
    fake.add_rule(
        lambda body: (
            (triage(0.2) if "wedding" in user_text(body) else triage(0.95)) if is_triage(body) else None
        )
    )
    fake.add_rule(lambda body: Reply(text=BOT_TEXT) if is_answer(body) else None)
    return fake


def server_env(fake: FakeAnthropic, redis_url: str, db_url: str, **extra: str) -> dict[str, str]:
    return {
        "ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": fake.url, "SWITCHBOARD_REDIS_URL": redis_url,
        "SWITCHBOARD_DATABASE_URL": db_url, "SWITCHBOARD_WIDGET_KEYS": WIDGET_KEYS,
        "SWITCHBOARD_LLM_REQUESTS_PER_MINUTE": "10000", **extra,
    }  # fmt: skip


@pytest.fixture
def server(
    tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: Any, db_url: str
) -> Iterator[ServerProcess]:
    env = server_env(fake_api, redis_url, db_url)
    for email, name, role in (("agent@example.test", "Sam", "agent"), ("root@example.test", "Root", "admin")):
        servers.create_agent(env, tmp_path, email, PASSWORD, name, role)
    proc = ServerProcess(tmp_path / "srv", env=env).start()
    try:
        yield proc
    finally:
        proc.kill()


def login(server: ServerProcess, email: str) -> dict[str, str]:
    return agent_auth(server, email, PASSWORD)


def open_session(server: ServerProcess, visitor: dict[str, str]) -> dict[str, Any]:
    resp = httpx.post(
        f"{server.url}/api/v1/widget/sessions", json={"widget_key": "pk_test", "visitor": visitor},
        headers={"Origin": ORIGIN},
    )  # fmt: skip
    assert resp.status_code == 201, resp.text
    session: dict[str, Any] = resp.json()
    return session


async def customer(server: ServerProcess, token: str) -> AsyncIterator[Client]:
    async with websockets.connect(f"ws://127.0.0.1:{server.port}/api/v1/widget/ws?token={token}") as ws:
        yield Client(ws)


async def ask_bot(server: ServerProcess, visitor: dict[str, str], text: str) -> str:
    """A new conversation of ``visitor`` with one question the bot answers; returns its id."""
    session = open_session(server, visitor)
    async for client in customer(server, session["token"]):
        await client.send({"type": "message", "client_id": "q1", "text": text})
        await client.until(lambda f: f["type"] == "message" and f["role"] == "assistant")
    cid: str = session["conversation_id"]
    return cid


async def wait_for(pred: Any, timeout_s: float = 15.0) -> Any:
    return await servers_wait_for(pred, timeout_s)


async def handed_off_answered_rated(server: ServerProcess, agent: dict[str, str]) -> str:
    """Ada's first conversation: a question the bot may not answer, an agent's reply (which becomes an
    example), resolved and rated. Returns its id."""
    session = open_session(server, ADA)
    cid: str = session["conversation_id"]
    base = f"{server.url}/api/v1/agent/conversations/{cid}"
    async for client in customer(server, session["token"]):
        await client.send({"type": "message", "client_id": "m1", "text": UNCOVERED})
        await client.until(lambda f: f["type"] == "status" and f["state"] == "queued")
        await wait_for(lambda: httpx.get(base, headers=agent).json().get("draft"))
        assert httpx.post(f"{base}/claim", headers=agent).status_code == 200
        sent = httpx.post(f"{base}/messages", json={"text": AGENT_TEXT}, headers=agent)
        assert sent.status_code == 201, sent.text
        await client.until(lambda f: f["type"] == "message" and f["role"] == "agent")
        assert httpx.post(f"{base}/resolve", headers=agent).status_code == 200
        await client.until(lambda f: f["type"] == "rating_request")
        await client.send({"type": "rating", "score": 5, "comment": "Ada loved it"})
        await client.send({"type": "typing"})  # frames are handled in order: the rating is stored by now
    return cid


async def conversation_keys(redis_client: aioredis.Redis, cid: str) -> list[bytes]:
    return [k async for k in redis_client.scan_iter(match=f"*{{conv:{cid}}}*")]


async def sql_rows_of(sessions: Any, conversation_ids: list[str]) -> dict[str, int]:
    """How many rows of each table still belong to these conversations."""
    counts = {}
    async with sessions() as session:
        for model in (ArchivedConversation, ArchivedMessage, Rating, HandoffRecord, Example):
            table = model.__table__  # type: ignore[attr-defined]
            column = table.c.id if model is ArchivedConversation else table.c.conversation_id
            query = select(func.count()).select_from(table).where(column.in_(conversation_ids))
            counts[table.name] = (await session.execute(query)).scalar_one()
    return counts


def export(server: ServerProcess, admin: dict[str, str], **params: str) -> dict[str, Any]:
    resp = httpx.get(f"{server.url}/api/v1/admin/customers/export", params=params, headers=admin)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def empty_export(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("customer", "exported_at")}


NOTHING = {
    kind: []
    for kind in (
        "conversations", "ratings", "handoffs", "examples", "tickets", "attachments", "webhook_deliveries",
        "facts", "notes", "labels",
    )
}  # fmt: skip


async def test_a_customer_is_exported_whole_then_erased_everywhere_and_the_others_stay(
    server: ServerProcess, fake_api: FakeAnthropic, redis_client: aioredis.Redis, db_url: str
) -> None:
    agent = login(server, "agent@example.test")
    admin = login(server, "root@example.test")
    # Ada's first conversation goes through a person, is rated, and is archived to SQL; its Redis keys
    # then expire, as the archiver arranges.
    first = await handed_off_answered_rated(server, agent)
    store = ConversationStore(redis_client)
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    try:
        assert await archive_idle(store, sessions, idle_s=0, ttl_s=1) == 1
        await asyncio.sleep(1.5)  # past the 1 s expiry the archiver gave its keys
        assert await conversation_keys(redis_client, first) == [], "the archived conversation expired"
        # Ada's second conversation is hot; Bob's question is similar enough to carry the agent's example.
        second = await ask_bot(server, ADA, "Where is my order 5521?")
        bob = await ask_bot(server, BOB, SIMILAR)
        assert AGENT_TEXT in user_text(
            [r.body for r in fake_api.requests if r.body and is_answer(r.body)][-1]
        )

        by_id = export(server, admin, visitor_id="v-ada")
        by_email = export(server, admin, email="ADA@example.COM")
        assert by_id["customer"] == {"visitor_id": "v-ada", "email": None}
        conversations = {c["id"]: c for c in by_id["conversations"]}
        assert sorted(conversations) == sorted([first, second])
        assert [c["id"] for c in by_email["conversations"]] == [c["id"] for c in by_id["conversations"]]
        assert (conversations[first]["archived"], conversations[first]["live"]) == (True, False)
        assert (conversations[second]["archived"], conversations[second]["live"]) == (False, True)
        assert [(m["role"], m["text"]) for m in conversations[first]["messages"]] == [
            ("customer", UNCOVERED), ("agent", AGENT_TEXT)
        ]  # fmt: skip
        assert [(m["role"], m["text"]) for m in conversations[second]["messages"]] == [
            ("customer", "Where is my order 5521?"), ("assistant", BOT_TEXT)
        ]  # fmt: skip
        assert [(r["conversation_id"], r["score"], r["comment"]) for r in by_id["ratings"]] == [
            (first, 5, "Ada loved it")
        ]
        assert [(h["conversation_id"], h["outcome"]) for h in by_id["handoffs"]] == [(first, "resolved")]
        assert [(e["conversation_id"], e["agent_text"]) for e in by_id["examples"]] == [(first, AGENT_TEXT)]
        assert (by_id["tickets"], by_id["attachments"]) == ([], [])
        assert bob not in json.dumps(by_id)
        assert "v-bob" not in json.dumps(by_id)

        hot_keys = [k for k in await conversation_keys(redis_client, second) if b":lock:" not in k]
        # Both of Ada's conversations have report facts before the erasure (whether or not the server's
        # periodic refresh came round yet): the erasure must delete exactly those two rows.
        assert await FactRefresher(store, sessions, redis_client).refresh([first, second]) == 2
        erased = httpx.post(
            f"{server.url}/api/v1/admin/customers/erase", json={"visitor_id": "v-ada"}, headers=admin
        )
        assert erased.status_code == 200, erased.text
        counts = erased.json()
        assert counts == {
            "facts": 2, "conversations": 2, "messages": 4, "ratings": 1, "handoffs": 1, "examples": 1,
            "tickets": 0, "attachments": 0, "webhook_deliveries": 0, "notes": 0, "labels": 0,
            "redis_keys": len(hot_keys),
        }  # fmt: skip

        # A later export finds nothing, by id or e-mail; erasing again erases nothing.
        assert empty_export(export(server, admin, visitor_id="v-ada")) == NOTHING
        assert empty_export(export(server, admin, email="ada@example.com")) == NOTHING
        again = httpx.post(
            f"{server.url}/api/v1/admin/customers/erase", json={"email": "ada@example.com"}, headers=admin
        )
        assert again.status_code == 200
        assert set(again.json().values()) == {0}
        # Nothing of Ada's left in Redis: no key of her conversations, no index, queue or archiver entry.
        for cid in (first, second):
            assert await conversation_keys(redis_client, cid) == []
            assert await redis_client.zscore(keys.active_conversations(), cid) is None
            assert await redis_client.zscore(keys.turns_owed(), cid) is None
            assert await redis_client.zscore(keys.handoff_queue(), cid) is None
            assert await redis_client.exists(keys.handoff_item(cid)) == 0
        assert await redis_client.exists(keys.customer_conversations("visitor", "v-ada")) == 0
        assert await redis_client.exists(keys.customer_conversations("email", "ada@example.com")) == 0
        assert await sql_rows_of(sessions, [first, second]) == {
            "conversation": 0, "conversation_event": 0, "rating": 0, "handoff_record": 0, "example": 0
        }  # fmt: skip

        # Bob is untouched.
        bobs = export(server, admin, visitor_id="v-bob")
        assert [c["id"] for c in bobs["conversations"]] == [bob]
        assert [m["text"] for m in bobs["conversations"][0]["messages"]] == [SIMILAR, BOT_TEXT]
        assert await conversation_keys(redis_client, bob) != []

        # The example that came from Ada's conversation is gone from the next answer prompt.
        await ask_bot(server, BOB, "Could you engrave names on a tent for a party?")
        last_answer = [r.body for r in fake_api.requests if r.body and is_answer(r.body)][-1]
        assert "engrave" in user_text(last_answer)
        assert AGENT_TEXT not in json.dumps(last_answer)
    finally:
        await engine.dispose()


async def test_export_and_erase_take_exactly_one_customer_and_only_from_admins(server: ServerProcess) -> None:
    agent = login(server, "agent@example.test")
    admin = login(server, "root@example.test")
    url = f"{server.url}/api/v1/admin/customers"
    assert httpx.get(f"{url}/export", params={"visitor_id": "v-ada"}).status_code == 401
    assert httpx.get(f"{url}/export", params={"visitor_id": "v-ada"}, headers=agent).status_code == 403
    assert httpx.post(f"{url}/erase", json={"visitor_id": "v-ada"}, headers=agent).status_code == 403
    for params in ({}, {"visitor_id": "v-ada", "email": "ada@example.com"}, {"email": "not-an-address"}):
        resp = httpx.get(f"{url}/export", params=params, headers=admin)
        assert (resp.status_code, resp.json()["error"]["code"]) == (400, "invalid_request"), params
    for body in ({}, {"visitor_id": "v-ada", "email": "ada@example.com"}, {"visitor_id": ""}):
        resp = httpx.post(f"{url}/erase", json=body, headers=admin)
        assert (resp.status_code, resp.json()["error"]["code"]) == (400, "invalid_request"), body
    # Nobody by that name: 200 and every kind empty (so "a later export finds nothing" is checkable).
    assert empty_export(export(server, admin, visitor_id="v-nobody")) == NOTHING


async def test_a_widget_renewing_the_token_of_an_erased_conversation_gets_a_fresh_one(
    server: ServerProcess, redis_client: aioredis.Redis
) -> None:
    admin = login(server, "root@example.test")
    session = open_session(server, ADA)
    async for client in customer(server, session["token"]):
        await client.send({"type": "message", "client_id": "q1", "text": "Where is my order 5521?"})
        await client.until(lambda f: f["type"] == "message" and f["role"] == "assistant")
        erased = httpx.post(
            f"{server.url}/api/v1/admin/customers/erase", json={"visitor_id": "v-ada"}, headers=admin
        )
        assert erased.json()["conversations"] == 1
        # still connected to the erased conversation: its next message is refused, and stored nowhere
        await client.send({"type": "message", "client_id": "q2", "text": "hello?"})
        refused = await client.until(lambda f: f["type"] == "error")
        assert (refused[-1]["code"], refused[-1]["client_id"]) == ("not_found", "q2")
    assert await conversation_keys(redis_client, session["conversation_id"]) == []
    # The widget renews with the token it kept: a new conversation, not the erased one.
    renewed = httpx.post(
        f"{server.url}/api/v1/widget/sessions",
        json={"widget_key": "pk_test", "visitor": ADA, "token": session["token"]}, headers={"Origin": ORIGIN},
    )  # fmt: skip
    assert renewed.status_code == 201
    assert renewed.json()["conversation_id"] != session["conversation_id"]
    assert [c["id"] for c in export(server, admin, visitor_id="v-ada")["conversations"]] == [
        renewed.json()["conversation_id"]
    ]


# --- the service under the API: races, the command line, retention ------------------------------------

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def customer_data(redis_client: aioredis.Redis, sessions: Any, *, unlink: bool = True) -> CustomerDataService:
    store = ConversationStore(redis_client)
    examples = ExampleService(sessions, redis_client)
    handoff = HandoffService(store, HandoffQueue(redis_client), redis_client, HandoffRecords(sessions))
    return CustomerDataService(
        store, sessions, handoff, default_sources(sessions, examples, retention_deletes_examples=not unlink)
    )


async def seed_conversation(
    store: ConversationStore, cid: str, visitor: dict[str, str], at: datetime, *texts: str
) -> None:
    await store.create_conversation(cid, widget_key="pk_test", visitor=visitor, now=at)
    for i, text in enumerate(texts):
        await store.append_customer_message(cid, f"m{i}", text, now=at)


async def test_an_archive_pass_racing_an_erasure_does_not_resurrect_the_conversation(
    redis_client: aioredis.Redis, db_engine: Any
) -> None:
    sessions = session_factory(db_engine)
    service = customer_data(redis_client, sessions)
    store = ConversationStore(redis_client)
    await seed_conversation(store, "c-race", ADA, T0, "my card is 4111 1111 1111 1111")
    # The erasure has tombstoned the conversation and not yet deleted it when an archive pass reads it
    # and writes it to SQL: the archiver finds the tombstone after its commit and removes what it wrote.
    await store.mark_erased(["c-race"])
    await archive_idle(store, sessions, idle_s=0, ttl_s=3600, now=T0 + timedelta(hours=1))
    assert await sql_rows_of(sessions, ["c-race"]) == {
        "conversation": 0, "conversation_event": 0, "rating": 0, "handoff_record": 0, "example": 0
    }  # fmt: skip
    counts = await service.erase(CustomerRef.parse("v-ada", None))
    assert (counts["conversations"], counts["messages"]) == (1, 1)
    # A turn or an agent finishing after the erasure writes its triage verdict or note: no key comes back.
    await store.record_triage("c-race", 1, {"intent": "payments_billing"})
    await store.add_note("c-race", {"text": "card declined"})
    assert await conversation_keys(redis_client, "c-race") == []
    assert empty_export(await service.export(CustomerRef.parse("v-ada", None))) == NOTHING


async def test_the_command_line_exports_and_erases_one_customer(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis, db_url: str
) -> None:
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    store = ConversationStore(redis_client)
    try:
        await seed_conversation(store, "c-old", ADA, T0, "I ordered a tent", "order 5521")
        await archive_idle(store, sessions, idle_s=0, ttl_s=1, now=T0 + timedelta(hours=1))
        await asyncio.sleep(1.5)  # its Redis keys expire: c-old lives only in SQL now
        await seed_conversation(store, "c-new", {"id": "v-ada"}, datetime.now(UTC), "where is it?")
        await seed_conversation(store, "c-bob", BOB, datetime.now(UTC), "hello from Bob")
        await ExampleService(sessions, redis_client).record(
            conversation_id="c-old", seq=2, customer_message="order 5521", context="", bot_draft=None,
            agent_text="It ships Monday.", intent="orders", agent_id=None, policy_version=None,
        )  # fmt: skip
    finally:
        await engine.dispose()
    env = {"SWITCHBOARD_REDIS_URL": redis_url, "SWITCHBOARD_DATABASE_URL": db_url, "PATH": ""}
    env["SWITCHBOARD_DATA_DIR"] = str(tmp_path / "data")
    out = tmp_path / "ada.json"

    exported = servers.run_cli(["export-customer", "--visitor-id", "v-ada", "--out", str(out)], env, tmp_path)
    assert exported.returncode == 0, exported.stdout
    assert out.stat().st_mode & 0o777 == 0o600
    body = json.loads(out.read_text())
    assert [(c["id"], [m["text"] for m in c["messages"]]) for c in body["conversations"]] == [
        ("c-new", ["where is it?"]), ("c-old", ["I ordered a tent", "order 5521"])
    ]  # fmt: skip
    assert [e["agent_text"] for e in body["examples"]] == ["It ships Monday."]

    erased = servers.run_cli(["erase-customer", "--visitor-id", "v-ada"], env, tmp_path)
    assert erased.returncode == 0, erased.stdout
    assert json.loads(erased.stdout.strip().splitlines()[-1]) == {
        "conversations": 2, "messages": 3, "ratings": 0, "handoffs": 0, "examples": 1, "tickets": 0,
        "attachments": 0, "webhook_deliveries": 0, "facts": 0, "notes": 0, "labels": 0,
        "redis_keys": len(keys.conversation_keys("c-new")) - 2,  # no triage, no notes
    }  # fmt: skip
    again = servers.run_cli(
        ["export-customer", "--email", "ada@example.com", "--out", str(out)], env, tmp_path
    )
    assert again.returncode == 0, again.stdout
    assert empty_export(json.loads(out.read_text())) == NOTHING
    bob = servers.run_cli(["export-customer", "--email", "BOB@example.com", "--out", str(out)], env, tmp_path)
    assert bob.returncode == 0, bob.stdout
    assert [c["id"] for c in json.loads(out.read_text())["conversations"]] == ["c-bob"]

    both = servers.run_cli(
        ["erase-customer", "--visitor-id", "v-bob", "--email", "bob@example.com"], env, tmp_path
    )
    neither = servers.run_cli(["erase-customer"], env, tmp_path)
    assert (both.returncode, neither.returncode) == (2, 2)
    assert await conversation_keys(redis_client, "c-bob") != [], "a refused command erased nothing"


async def test_erasing_a_customer_deletes_their_report_facts_and_a_racing_refresh_leaves_none(
    redis_client: aioredis.Redis, db_engine: Any
) -> None:
    sessions = session_factory(db_engine)
    service = customer_data(redis_client, sessions)
    store = ConversationStore(redis_client)
    refresher = FactRefresher(store, sessions, redis_client)
    await seed_conversation(store, "c-ada", ADA, T0, "my tent leaks")
    await seed_conversation(store, "c-bob", BOB, T0, "my stove leaks")
    assert await refresher.refresh(["c-ada", "c-bob"]) == 2
    counts = await service.erase(CustomerRef.parse("v-ada", None))
    assert counts["facts"] == 1
    # A refresh that read the conversation before the erasure writes after it: the tombstone undoes it.
    await seed_conversation(store, "c-ada2", ADA, T0, "hello")
    await store.mark_erased(["c-ada2"])
    await refresher.refresh(["c-ada2"])
    async with sessions() as session:
        left = (await session.execute(select(ConversationFact.conversation_id))).scalars().all()
    assert left == ["c-bob"]


async def test_retention_erases_conversations_past_their_days_a_bounded_batch_at_a_time(
    redis_client: aioredis.Redis, db_engine: Any
) -> None:
    sessions = session_factory(db_engine)
    service = customer_data(redis_client, sessions)
    store = ConversationStore(redis_client)
    now = T0 + timedelta(days=10)
    # Archived 5 days before `now`, rated, with an agent's example; hot but idle for 3 days; active today;
    # archived 6 days ago and active again today.
    await seed_conversation(store, "c-revived", BOB, now - timedelta(days=6), "my order 5521?")
    await seed_conversation(store, "c-archived", ADA, now - timedelta(days=5), "my tent leaks")
    await archive_idle(store, sessions, idle_s=60, ttl_s=3600, now=now - timedelta(days=5, hours=-1))
    # archived 6 days ago, and back today: its archive row is stale until it goes idle again
    await store.append_customer_message("c-revived", "again", "any news?", now=now - timedelta(hours=1))
    await seed_conversation(store, "c-idle", BOB, now - timedelta(days=3), "still waiting")
    await seed_conversation(store, "c-recent", BOB, now - timedelta(hours=2), "thanks!")
    async with sessions() as session:
        session.add(Rating(conversation_id="c-archived", resolved_seq=1, score=2))
        await session.commit()
    await ExampleService(sessions, redis_client).record(
        conversation_id="c-archived", seq=2, customer_message="my tent leaks", context="",
        bot_draft=None, agent_text="Seam sealer is free.", intent="warranty_repairs", agent_id=None,
        policy_version=None,
    )  # fmt: skip

    assert await FactRefresher(store, sessions, redis_client).refresh(["c-archived", "c-idle"]) == 2

    settings = RetentionSettings(days=1, batch=1)
    swept = [(await sweep_once(service, settings, now=now))["conversations"] for _ in range(3)]
    assert swept == [1, 1, 0]
    async with sessions() as session:
        facts = (await session.execute(select(ConversationFact.conversation_id))).scalars().all()
    assert sorted(facts) == ["c-archived", "c-idle"], "retention keeps the report facts (no customer text)"
    for cid in ("c-archived", "c-idle"):
        assert await conversation_keys(redis_client, cid) == []
    assert await sql_rows_of(sessions, ["c-archived", "c-idle"]) == {
        "conversation": 0, "conversation_event": 0, "rating": 0, "handoff_record": 0, "example": 0
    }  # fmt: skip
    async with sessions() as session:
        kept = (await session.execute(select(Example))).scalars().all()
    assert [(e.agent_text, e.conversation_id, e.seq) for e in kept] == [("Seam sealer is free.", None, None)]
    assert [c["id"] for c in (await service.export(CustomerRef.parse("v-bob", None)))["conversations"]] == [
        "c-recent", "c-revived"
    ]  # fmt: skip


async def test_the_retention_setting_erases_old_conversations_in_the_background(
    tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: aioredis.Redis
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"
    # 0.00002 days is 1.7 s: a conversation idle that long is past retention.
    env = server_env(
        fake_api,
        redis_url,
        db_url,
        SWITCHBOARD_RETENTION_DAYS="0.00002",
        SWITCHBOARD_RETENTION_INTERVAL_S="0.3",
    )
    servers.create_agent(env, tmp_path, "root@example.test", PASSWORD, "Root", "admin")
    proc = ServerProcess(tmp_path / "srv", env=env).start()
    try:
        admin = login(proc, "root@example.test")
        cid = await ask_bot(proc, ADA, "Where is my order 5521?")
        assert [c["id"] for c in export(proc, admin, visitor_id="v-ada")["conversations"]] == [cid]
        await wait_for(lambda: export(proc, admin, visitor_id="v-ada")["conversations"] == [])
        assert await conversation_keys(redis_client, cid) == []
    finally:
        proc.kill()
