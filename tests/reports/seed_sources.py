"""Known conversations from their sources, for the reports end to end: messages, status changes and triage
verdicts in the (real) Redis store, ratings, tickets, handoff records and ledger rows in SQL; then the fact
writer (``FactRefresher``) derives the ``conversation_fact`` rows the reports aggregate. The tests in
test_every_cut.py work every report value out by hand from what is written here.

Times are UTC; ``MON`` is Monday 2026-11-16, the range is 11-16 up to 11-25, and ``NOW`` (11-24 12:00) decides
which bot conversations are *assumed* resolved (the bot's last reply older than 24 h: before 11-23 12:00).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from support.conversation.store import ConversationStore
from support.db.engine import session_factory
from support.db.models import Agent, ConversationFact, HandoffRecord, ModelUsage, Rating, Ticket
from support.reports.facts import FactRefresher
from tests.reports.seed import usage

MON = datetime(2026, 11, 16, tzinfo=UTC)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
FROM, TO = MON, datetime(2026, 11, 25, tzinfo=UTC)
IDS = ["s0", "s1", "s2", "s3", "s4", "ticket-t5", "ticket-t6", "s7", "s9"]


def at(day: int, hour: int, seconds: float = 0) -> datetime:
    """``day`` days after MON, at ``hour`` o'clock plus ``seconds``."""
    return MON + timedelta(days=day, hours=hour, seconds=seconds)


class Chat:
    """Writes one conversation's events into the store, as the widget, the bot and the desk would."""

    def __init__(self, store: ConversationStore, cid: str) -> None:
        self.store, self.cid = store, cid

    async def open(self, when: datetime) -> Chat:
        await self.store.create_conversation(self.cid, widget_key="w", visitor={}, now=when)
        return self

    async def customer(self, when: datetime, triage: dict[str, Any] | None = None) -> None:
        event, _ = await self.store.append_customer_message(self.cid, f"m{when.timestamp()}", "hi", now=when)
        if triage is not None:
            await self.store.record_triage(self.cid, event.seq, triage)

    async def bot(self, when: datetime) -> None:
        await self.store.append_event(self.cid, type="message", role="assistant", text="answer", now=when)

    async def agent(self, when: datetime, agent_id: str) -> None:
        await self.store.append_event(
            self.cid, type="message", role="agent", text="a person", author={"id": agent_id},
            extra={"agent_id": agent_id}, now=when,
        )  # fmt: skip

    async def status(self, when: datetime, state: str, **extra: Any) -> None:
        await self.store.append_event(
            self.cid, type="status", role="system", text="", extra={"state": state, **extra}, now=when
        )


def triage(intent: str, *, solved: bool = False) -> dict[str, Any]:
    return {"intent": intent, "urgency": "normal", "solved": solved}


async def write_conversations(store: ConversationStore) -> None:
    """The events. What each conversation is, for the tables in the tests:

    - s0: a chat that started one second before the range (its ledger row is in the range: usage only).
    - s1: bot; the customer's second message is triaged ``solved``: confirmed, unrated, never closed.
    - s2: bot, closed, rated 4: confirmed (by the rating), asked.
    - s3: bot, closed, unrated; the bot had the last word over 24 h before NOW: assumed, asked.
    - s4: handed off (wants_human), claimed by ag1, transferred to ag2 (the last to reply), resolved; the
      customer wrote again two days later (reopened); rated 1.
    - ticket-t5: a ticket, queued as urgent, nobody replied, closed; rated 2: unanswered, not resolved.
    - ticket-t6: a ticket taken straight by ag1 (low_confidence) without a bot reply: person only; rated 5.
    - s7: bot, within 24 h of NOW, never triaged; rated 3 without being asked.
    - s9: opened, no customer message: no fact row.
    """
    s0 = await Chat(store, "s0").open(at(-1, 23, 3599))
    await s0.customer(at(-1, 23, 3599))
    await s0.bot(at(0, 0, 1))

    s1 = await Chat(store, "s1").open(at(0, 9))
    await s1.customer(at(0, 9), triage("payments_billing"))
    await s1.bot(at(0, 9, 4))
    await s1.customer(at(0, 9, 60), triage("payments_billing", solved=True))
    await s1.bot(at(0, 9, 63))

    s2 = await Chat(store, "s2").open(at(0, 14))
    await s2.customer(at(0, 14), triage("payments_billing"))
    await s2.bot(at(0, 14, 3))
    await s2.status(at(0, 14, 120), "resolved")

    s3 = await Chat(store, "s3").open(at(1, 10))
    await s3.customer(at(1, 10), triage("shipping"))
    await s3.bot(at(1, 10, 2))
    await s3.status(at(1, 10, 300), "resolved")

    s4 = await Chat(store, "s4").open(at(1, 16))
    await s4.customer(at(1, 16), triage("shipping"))
    await s4.bot(at(1, 16, 5))
    await s4.status(at(1, 16, 30), "queued", reason="wants_human")
    await s4.status(at(1, 16, 90), "agent", agent={"name": "Sam"})
    await s4.agent(at(1, 16, 150), "ag1")
    await s4.status(at(1, 16, 200), "agent", agent={"name": "Kim"})  # a transfer: no new handoff
    await s4.agent(at(1, 16, 260), "ag2")
    await s4.status(at(1, 16, 400), "resolved")
    await s4.customer(at(3, 16))  # two days later: reopened

    t5 = await Chat(store, "ticket-t5").open(at(2, 8))
    await t5.customer(at(2, 8, 1), triage("shipping"))  # the ticket was filed a second earlier
    await t5.status(at(2, 8, 10), "queued", reason="urgent")
    await t5.status(at(2, 9), "resolved")

    t6 = await Chat(store, "ticket-t6").open(at(7, 10))
    await t6.customer(at(7, 10), triage("payments_billing"))
    await t6.status(at(7, 10, 600), "agent", reason="low_confidence", agent={"name": "Sam"})
    await t6.agent(at(7, 10, 900), "ag1")
    await t6.status(at(7, 10, 1200), "resolved")

    s7 = await Chat(store, "s7").open(at(8, 11))
    await s7.customer(at(8, 11))
    await s7.bot(at(8, 11, 2))

    await Chat(store, "s9").open(at(8, 11))


def ledger_row(purpose: str, cid: str, when: datetime, cost: str, **kw: Any) -> dict[str, Any]:
    return usage(purpose, when, conversation_id=cid, cost_usd=Decimal(cost), **kw)


# In id order (each inserted on its own, so ids follow this order): a conversation's policy version is the
# one of its first answer call. Triage calls are Haiku, answers Sonnet (tests/reports/seed.py: usage).
LEDGER = [
    ledger_row("answer", "s0", at(0, 0), "1", input_tokens=100, output_tokens=10, policy_version="v3"),
    ledger_row("triage", "s1", at(0, 9, 1), "0.0004", input_tokens=200, output_tokens=20),
    ledger_row("answer", "s1", at(0, 9, 2), "0.012", input_tokens=50, cache_write_5m_tokens=4000,
               output_tokens=60, policy_version="v3"),
    ledger_row("triage", "s1", at(0, 9, 61), "0.0004", input_tokens=200, output_tokens=20),
    ledger_row("answer", "s1", at(0, 9, 62), "0.011", input_tokens=50, cache_read_tokens=4000,
               output_tokens=60, policy_version="v4"),  # a later answer: s1 stays v3
    ledger_row("answer", "s2", at(0, 14, 1), "0.02", input_tokens=50, cache_read_tokens=4000,
               output_tokens=70, policy_version="v3"),
    ledger_row("triage", "s3", at(1, 10, 1), "0.0005", input_tokens=200, output_tokens=20),
    ledger_row("answer", "s3", at(1, 10, 1), "0.005", input_tokens=50, cache_write_1h_tokens=4000,
               output_tokens=60, policy_version="v4"),
    ledger_row("answer", "s4", at(1, 16, 1), "0.03", input_tokens=50, cache_read_tokens=4000,
               output_tokens=80, policy_version="v4"),
    ledger_row("answer", "s4", at(1, 16, 25), "0", outcome="error:overloaded", policy_version="v4"),
    ledger_row("triage", "ticket-t5", at(2, 8, 5), "0.001", input_tokens=300, output_tokens=20),
    ledger_row("triage", "ticket-t6", at(7, 10, 1), "0.0005", input_tokens=200, output_tokens=20),
    ledger_row("answer", "ticket-t6", at(7, 10, 2), "0.0045", input_tokens=50, cache_read_tokens=4000,
               output_tokens=90, policy_version="v4"),  # a draft nobody sent: still its cost and policy
    ledger_row("answer", "s7", at(8, 11, 1), "0.002", input_tokens=50, cache_write_5m_tokens=4000,
               output_tokens=40, policy_version="v3"),
]  # fmt: skip


def sql_rows() -> list[Any]:
    """Agents, tickets, ratings and handoff records."""

    def ticket(tid: str, filed: datetime) -> Ticket:
        return Ticket(
            id=tid, conversation_id=f"ticket-{tid}", subject="help", body="hi",
            customer_email="a@example.test", created_at=filed, updated_at=filed,
        )  # fmt: skip

    def rating(cid: str, score: int, when: datetime) -> Rating:
        return Rating(conversation_id=cid, score=score, created_at=when)

    def agent(aid: str, name: str) -> Agent:
        return Agent(id=aid, email=f"{aid}@example.test", name=name, role="agent", password_hash="x",
                     created_at=MON)  # fmt: skip

    return [
        agent("ag1", "Sam"),
        agent("ag2", "Kim"),
        ticket("t5", at(2, 8)),
        ticket("t6", at(7, 10)),
        rating("s0", 5, at(0, 0, 10)),
        rating("s2", 4, at(0, 14, 200)),
        rating("s4", 1, at(1, 16, 500)),
        rating("ticket-t5", 2, at(2, 9, 60)),
        rating("ticket-t6", 5, at(7, 10, 1300)),
        rating("s7", 3, at(8, 11, 30)),
        HandoffRecord(
            conversation_id="s4", reason="wants_human", priority="normal", queued_at=at(1, 16, 30),
            claimed_at=at(1, 16, 90), agent_id="ag1", first_response_at=at(1, 16, 150),
            ended_at=at(1, 16, 400), outcome="resolved",
        ),
        HandoffRecord(
            conversation_id="ticket-t5", reason="urgent", priority="high", queued_at=at(2, 8, 10),
            ended_at=at(2, 9), outcome="closed_by_customer",
        ),
        HandoffRecord(
            conversation_id="ticket-t6", reason="low_confidence", priority="normal", queued_at=at(7, 10, 600),
            claimed_at=at(7, 10, 600), agent_id="ag1", first_response_at=at(7, 10, 900),
            ended_at=at(7, 10, 1200), outcome="resolved",
        ),
    ]  # fmt: skip


# What the predicted-satisfaction job wrote: s1 and s3 (unrated) count; s2 was rated, so its does not.
PREDICTED = {"s1": 2, "s2": 1, "s3": 5}


async def seed_sources(engine: AsyncEngine, redis: Any) -> None:
    """Write the sources, derive the facts, add the predictions, and derive the facts again (a refresh
    leaves the predicted-satisfaction job's columns alone)."""
    store = ConversationStore(redis)
    await write_conversations(store)
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        session.add_all(sql_rows())
    async with engine.begin() as conn:
        for row in LEDGER:
            await conn.execute(insert(ModelUsage.__table__), row)  # type: ignore[attr-defined]
    refresher = FactRefresher(store, sessions, redis)
    assert await refresher.refresh(IDS) == len(IDS) - 1  # s9 has no customer message: no row
    facts: Any = ConversationFact.__table__  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        for cid, score in PREDICTED.items():
            await conn.execute(
                update(facts)
                .where(facts.c.conversation_id == cid)
                .values(predicted_score=score, predicted_reason="guess", predicted_at=NOW)
            )
    await refresher.refresh(IDS)
