"""Conversation facts from real conversations: a chat through a served widget socket and agent desk, then
the refresh; a conversation archived and gone from Redis; a rating picked up by the changed-since pass.
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from support import keys
from support.conversation.archive import archive_idle
from support.conversation.store import ConversationStore
from support.db.engine import make_engine, session_factory
from support.db.migrate import upgrade_to_head
from support.db.models import ConversationFact, HandoffRecord, ModelUsage, Rating, Ticket
from support.reports.facts import FactRefresher
from support.testing.fake_anthropic import SOLVED_PATTERN, FakeAnthropic, Reply, new_message_of
from support.tickets.service import TicketIn
from tests import servers
from tests.integration.test_widget_ws import connect, is_answer, is_triage, open_session, start_server
from tests.servers import ServerProcess, agent_auth
from tests.ticket_filing import ticket_runtime, until


def triage_reply(body: dict[str, Any]) -> Reply | None:
    if not is_triage(body):
        return None
    message = new_message_of(body["messages"][-1]["content"])
    verdict = {
        "intent": "returns_refunds", "urgency": "normal", "sentiment": "neutral", "language": "en",
        "wants_human": False, "confidence": 0.95, "reason": "test",
        "solved": bool(SOLVED_PATTERN.search(message)),
    }  # fmt: skip
    return Reply(tool_use={"name": "record_triage", "input": verdict})


@pytest.fixture
def served(
    tmp_path: Path, fake: FakeAnthropic, redis_url: str, redis_client: Any, db_url: str
) -> Iterator[Any]:
    fake.reset()
    fake.add_rule(triage_reply)
    fake.add_rule(lambda body: Reply(text="Returns are free for 30 days.") if is_answer(body) else None)
    env = {"SWITCHBOARD_DATABASE_URL": db_url, "SWITCHBOARD_DATA_DIR": str(tmp_path), "PATH": ""}
    servers.create_agent(env, tmp_path, "ada@example.com", "s3cret-pass", "Ada")
    # Every ticket drafted at once (not through a Message Batch): the ticket test waits for its answer.
    server = start_server(
        tmp_path / "a", fake, redis_url, SWITCHBOARD_DATABASE_URL=db_url,
        SWITCHBOARD_TICKETS_URGENT_URGENCIES='["normal", "high", "urgent"]',
    )  # fmt: skip
    try:
        yield server
    finally:
        server.kill()


async def facts_of(engine: AsyncEngine) -> dict[str, ConversationFact]:
    async with session_factory(engine)() as session:
        rows = (await session.execute(select(ConversationFact))).scalars()
        return {row.conversation_id: row for row in rows}


async def test_a_served_chat_a_handoff_and_a_ticket_become_rows_that_match(
    tmp_path: Path,
    served: ServerProcess,
    fake: FakeAnthropic,
    redis_url: str,
    redis_client: Any,
    db_url: str,
    db_engine: AsyncEngine,
) -> None:
    # A chat the bot answers; the customer says it worked, closes and rates it 5.
    bot_session = open_session(served)
    async for customer in connect(served, bot_session["token"]):
        await customer.send({"type": "message", "client_id": "m1", "text": "How do returns work?"})
        await customer.until(lambda f: f["type"] == "message" and f["role"] == "assistant")
        await customer.send({"type": "message", "client_id": "m2", "text": "Thanks, that worked!"})
        await customer.until(lambda f: f["type"] == "message" and f["role"] == "assistant")
        await customer.send({"type": "close"})
        await customer.until(lambda f: f["type"] == "rating_request")
        await customer.send({"type": "rating", "score": 5})
    # A chat handed to a person: claimed, answered, resolved, rated 4.
    human_session = open_session(served)
    cid = human_session["conversation_id"]
    ada = agent_auth(served, "ada@example.com", "s3cret-pass")
    async for customer in connect(served, human_session["token"]):
        await customer.send({"type": "message", "client_id": "m1", "text": "My return label is wrong"})
        await customer.until(lambda f: f["type"] == "message" and f["role"] == "assistant")
        await customer.send({"type": "request_human"})
        await customer.until(lambda f: f["type"] == "status" and f["state"] == "queued")
        claim = httpx.post(f"{served.url}/api/v1/agent/conversations/{cid}/claim", headers=ada)
        assert claim.status_code == 200, claim.text
        sent = httpx.post(
            f"{served.url}/api/v1/agent/conversations/{cid}/messages", json={"text": "Fixed."}, headers=ada
        )
        assert sent.status_code == 201, sent.text
        await customer.until(lambda f: f["type"] == "message" and f["role"] == "agent")
        resolved = httpx.post(f"{served.url}/api/v1/agent/conversations/{cid}/resolve", headers=ada)
        assert resolved.status_code == 200, resolved.text
        await customer.until(lambda f: f["type"] == "rating_request")
        await customer.send({"type": "rating", "score": 4})

    sessions = session_factory(db_engine)
    ids = [bot_session["conversation_id"], cid]

    for _ in range(100):  # the last rating frame is stored after the socket closed
        async with sessions() as session:
            if len((await session.execute(select(Rating))).all()) == 2:
                break
        await asyncio.sleep(0.1)
    refresher = FactRefresher(ConversationStore(redis_client), sessions, redis_client)
    assert await refresher.refresh(ids) == 2
    facts = await facts_of(db_engine)
    async with sessions() as session:
        ledger = list((await session.execute(select(ModelUsage))).scalars())
        record = (await session.execute(select(HandoffRecord))).scalar_one()

    bot = facts[bot_session["conversation_id"]]
    calls = [u for u in ledger if u.conversation_id == bot.conversation_id]
    assert (bot.channel, bot.resolution_type, bot.intent, bot.confirmed, bot.rating) == (
        "chat", "bot", "returns_refunds", True, 5,
    )  # fmt: skip
    assert (bot.customer_messages, bot.bot_messages, bot.agent_messages, bot.handoff_count) == (2, 2, 0, 0)
    assert (bot.resolved_by, bot.agent_id, bot.reopened) == ("customer", None, False)
    assert bot.model_calls == len(calls) == 4  # two triages, two answers
    assert bot.cost_usd == sum((u.cost_usd for u in calls), Decimal(0)) > 0
    assert bot.policy_version is not None
    assert bot.policy_version == next(u.policy_version for u in calls if u.purpose == "answer")
    assert bot.bot_first_response_s is not None
    assert bot.bot_first_response_s > 0
    assert bot.resolution_s is not None
    assert bot.resolution_s >= bot.bot_first_response_s

    human = facts[cid]
    agent_id = httpx.get(f"{served.url}/api/v1/agent/me", headers=ada).json()["id"]
    assert (human.resolution_type, human.handoff_count, human.handoff_reason) == (
        "handed_off", 1, "customer_request",
    )  # fmt: skip
    assert (human.agent_id, human.resolved_by, human.rating, human.confirmed) == (agent_id, "agent", 4, True)
    assert (human.customer_messages, human.bot_messages, human.agent_messages) == (1, 1, 1)
    assert record.claimed_at is not None
    assert human.queue_wait_s == pytest.approx(
        (record.claimed_at - record.queued_at).total_seconds(), abs=0.5
    )
    assert human.human_first_response_s is not None
    assert human.queue_wait_s is not None
    assert human.queue_wait_s <= human.human_first_response_s
    assert human.resolution_s is not None
    assert human.resolution_s >= human.human_first_response_s

    # A ticket the bot answers: a ticket row, from its filing time.
    ticket = TicketIn(subject="Refund", body="How long does a refund take?", customer_email="ana@example.com")
    async with ticket_runtime(tmp_path / "t", fake, redis_url, db_url) as runtime:
        filed, _ = await runtime.tickets.create(ticket, key_id=None, idempotency_key=None)

        async def answered() -> Ticket | None:
            row = await runtime.tickets.get(filed.id)
            return row if row.status == "answered" and row.settled_at is not None else None

        settled = await until(answered)
    assert await refresher.refresh([filed.conversation_id]) == 1
    fact = (await facts_of(db_engine))[filed.conversation_id]
    assert (fact.channel, fact.resolution_type, fact.intent) == ("ticket", "bot", "returns_refunds")
    assert (fact.customer_messages, fact.bot_messages) == (1, 1)
    assert fact.started_at.replace(tzinfo=None) == settled.created_at.replace(tzinfo=None)
    assert fact.model_calls == 2  # its triage and its draft


async def test_archived_and_expired_conversations_refresh_from_sql_and_late_ratings_are_picked_up(
    redis_client: Any, db_engine: AsyncEngine
) -> None:
    store = ConversationStore(redis_client)
    sessions = session_factory(db_engine)
    refresher = FactRefresher(store, sessions, redis_client)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    await store.create_conversation("c1", widget_key="pk_test", visitor={}, now=t0)
    first, _ = await store.append_customer_message("c1", "m1", "Where is my parcel?", now=t0)
    await store.record_triage("c1", first.seq, {"intent": "shipping", "solved": False})
    await store.append_event(
        "c1", type="message", role="assistant", text="On its way.", now=t0 + timedelta(seconds=3)
    )
    second, _ = await store.append_customer_message(
        "c1", "m2", "It came, thanks!", now=t0 + timedelta(seconds=60)
    )
    await store.record_triage("c1", second.seq, {"intent": "shipping", "solved": True})
    await store.append_event(
        "c1", type="message", role="assistant", text="Glad to hear.", now=t0 + timedelta(seconds=62)
    )

    assert await refresher.refresh_changed() == 1, "the active set names it"
    assert await refresher.refresh_changed() == 0, "nothing changed since"
    # Archived (refreshed first), then gone from Redis.
    assert await archive_idle(store, sessions, idle_s=600, ttl_s=60, before_archive=refresher.refresh) == 1
    await redis_client.delete(*keys.conversation_keys("c1"))
    assert not await store.exists("c1")
    before = (await facts_of(db_engine))["c1"]

    # A rating after the last pass; nothing else names the conversation any more.
    async with sessions() as session:
        session.add(Rating(conversation_id="c1", resolved_seq=5, score=2))
        await session.commit()
    assert await refresher.refresh_changed() == 1
    after = (await facts_of(db_engine))["c1"]
    assert (after.rating, after.confirmed, after.intent) == (2, True, "shipping"), "solved carried over"
    unchanged = (
        "started_at",
        "last_customer_at",
        "last_bot_reply_at",
        "bot_first_response_s",
        "resolution_s",
    )
    assert [getattr(after, c) for c in unchanged] == [getattr(before, c) for c in unchanged]
    assert (after.bot_first_response_s, after.resolution_s, after.customer_messages) == (3.0, 62.0, 2)
    assert (after.resolution_type, after.bot_messages) == ("bot", 2)


async def test_the_backfill_command_refreshes_archived_and_live_conversations(
    tmp_path: Path, redis_url: str, redis_client: Any
) -> None:
    # SQLite only: the command's SQL is the refresh's, which the tests above run on both databases.
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'cli.sqlite3'}"
    await upgrade_to_head(db_url)
    db_engine = make_engine(db_url)
    store = ConversationStore(redis_client)
    t0 = datetime.now(UTC) - timedelta(days=3)
    for cid in ("old", "live"):
        await store.create_conversation(cid, widget_key="pk_test", visitor={}, now=t0)
        await store.append_customer_message(cid, "m1", "hello", now=t0)
    sessions = session_factory(db_engine)
    await archive_idle(store, sessions, idle_s=60, ttl_s=60, now=t0 + timedelta(hours=1))
    await redis_client.delete(*keys.conversation_keys("old"))
    await store.append_customer_message("live", "m2", "still there?", now=datetime.now(UTC))
    env = {
        "SWITCHBOARD_REDIS_URL": redis_url, "SWITCHBOARD_DATABASE_URL": db_url,
        "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"), "PATH": "",
    }  # fmt: skip
    done = servers.run_cli(["refresh-report-facts", "--all"], env, tmp_path)
    assert done.returncode == 0, done.stdout
    assert "2/2 conversations" in done.stdout
    assert "refreshed 2 conversation facts" in done.stdout
    try:
        facts = await facts_of(db_engine)
    finally:
        await db_engine.dispose()
    assert (facts["old"].customer_messages, facts["live"].customer_messages) == (1, 2)
