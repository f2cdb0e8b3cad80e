"""compute_fact on hand-built event logs: every value below is worked out by hand from the log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from support.conversation.store import Event
from support.db.models import HandoffRecord, Rating
from support.reports.facts import LedgerSummary, compute_fact

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
NO_LEDGER = LedgerSummary()


class Log:
    """An event log written in order, each event ``at`` seconds after T0."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def _add(self, type_: str, role: str, at: float, text: str = "", **kw: Any) -> int:
        seq = len(self.events) + 1
        created = (T0 + timedelta(seconds=at)).isoformat(timespec="milliseconds")
        self.events.append(
            Event(seq=seq, id=f"e{seq}", type=type_, role=role, text=text, created_at=created, **kw)
        )
        return seq

    def customer(self, at: float) -> int:
        return self._add("message", "customer", at, "hi")

    def bot(self, at: float) -> int:
        return self._add("message", "assistant", at, "answer")

    def agent(self, at: float, agent_id: str) -> int:
        return self._add(
            "message", "agent", at, "a person", author={"name": agent_id}, extra={"agent_id": agent_id}
        )

    def system(self, at: float) -> int:
        return self._add("message", "system", at, "note")

    def status(self, at: float, state: str, **extra: Any) -> int:
        return self._add("status", "system", at, extra={"state": state, **extra})


def rating(score: int, at: float) -> Rating:
    return Rating(conversation_id="c", score=score, created_at=T0 + timedelta(seconds=at))


def test_a_bot_conversation_with_times_intent_and_ledger() -> None:
    log = Log()
    first = log.customer(0)
    log.system(1)  # a system message counts for nothing
    log.bot(4)
    second = log.customer(60)
    log.bot(66)
    ledger = LedgerSummary(cost_usd=Decimal("0.0123400000"), calls=4, policy_version="pv1")
    triages: dict[int, dict[str, Any]] = {
        second: {"intent": "returns_refunds"},
        first: {"intent": "shipping"},
    }
    fact = compute_fact("c", log.events, triages, [], [], ledger)
    assert fact is not None
    assert (fact.channel, fact.resolution_type, fact.intent, fact.policy_version) == (
        "chat",
        "bot",
        "shipping",
        "pv1",
    )
    assert (fact.customer_messages, fact.bot_messages, fact.agent_messages) == (2, 2, 0)
    assert fact.started_at == T0
    assert fact.last_customer_at == T0 + timedelta(seconds=60)
    assert (fact.first_bot_reply_at, fact.last_bot_reply_at) == (
        T0 + timedelta(seconds=4),
        T0 + timedelta(seconds=66),
    )
    assert (fact.bot_first_response_s, fact.resolution_s) == (4.0, 66.0)
    assert (fact.handoff_count, fact.handed_off_at, fact.queue_wait_s, fact.human_first_response_s) == (
        0,
        None,
        None,
        None,
    )
    assert (fact.confirmed, fact.reopened, fact.rating, fact.resolved_at, fact.agent_id) == (
        False,
        False,
        None,
        None,
        None,
    )
    assert (fact.cost_usd, fact.model_calls) == (Decimal("0.0123400000"), 4)


def test_no_customer_message_no_row() -> None:
    log = Log()
    log.bot(0)
    assert compute_fact("c", log.events, {}, [], [], NO_LEDGER) is None


def test_handed_off_with_queue_wait_first_response_resolution_and_last_person() -> None:
    log = Log()
    log.customer(0)
    log.bot(5)
    log.customer(20)
    log.status(30, "queued", reason="not_helped")
    log.status(90, "agent", agent={"name": "Ada"})
    log.agent(150, "ada")
    log.status(200, "agent", agent={"name": "Bo"})  # a transfer is no new handoff
    log.agent(260, "bo")
    log.status(300, "resolved")
    records = [
        HandoffRecord(
            conversation_id="c", reason="not_helped", priority="normal", queued_at=T0 + timedelta(seconds=30),
            claimed_at=T0 + timedelta(seconds=90), ended_at=T0 + timedelta(seconds=300), outcome="resolved",
        )
    ]  # fmt: skip
    fact = compute_fact("c", log.events, {}, records, [rating(5, 400)], NO_LEDGER)
    assert fact is not None
    assert fact.resolution_type == "handed_off"
    assert (fact.handoff_count, fact.handed_off_at, fact.handoff_reason) == (
        1,
        T0 + timedelta(seconds=30),
        "not_helped",
    )
    assert (fact.queue_wait_s, fact.human_first_response_s) == (60.0, 120.0)
    assert (fact.agent_id, fact.agent_messages, fact.bot_messages) == ("bo", 2, 1)
    assert (fact.resolved_at, fact.resolved_by, fact.resolution_s) == (
        T0 + timedelta(seconds=300),
        "agent",
        300.0,
    )
    assert (fact.confirmed, fact.rating, fact.rated_at) == (True, 5, T0 + timedelta(seconds=400))


def test_human_only_and_a_second_handoff_after_return_to_bot() -> None:
    log = Log()
    log.customer(0)
    log.status(10, "queued", reason="wants_human")
    log.status(40, "agent")
    log.agent(100, "ada")
    log.status(110, "bot")  # returned to the bot
    log.customer(120)
    log.status(130, "queued", reason="urgent")
    fact = compute_fact("c", log.events, {}, [], [], NO_LEDGER)
    assert fact is not None
    assert (fact.resolution_type, fact.handoff_count, fact.handoff_reason) == ("human", 2, "wants_human")
    assert (fact.queue_wait_s, fact.human_first_response_s, fact.bot_first_response_s) == (30.0, 90.0, None)
    assert (fact.resolved_at, fact.resolution_s) == (None, None)


def test_unanswered_handoff_rated_low_is_not_confirmed_and_the_customer_closed_it() -> None:
    log = Log()
    log.customer(0)
    log.status(2, "queued", reason="low_confidence")
    log.status(500, "resolved")  # the customer gave up
    records = [
        HandoffRecord(conversation_id="c", reason="low_confidence", priority="normal", queued_at=T0,
                      ended_at=T0 + timedelta(seconds=500), outcome="closed_by_customer")
    ]  # fmt: skip
    fact = compute_fact("c", log.events, {}, records, [rating(5, 600), rating(1, 700)], NO_LEDGER)
    assert fact is not None
    assert (fact.resolution_type, fact.handoff_count, fact.queue_wait_s, fact.human_first_response_s) == (
        "unanswered", 1, None, None,
    )  # fmt: skip
    assert (fact.resolved_by, fact.resolution_s) == ("customer", 500.0)
    assert (fact.rating, fact.confirmed) == (1, False), "the latest rating counts"


def test_handoff_from_records_when_the_log_has_none() -> None:
    log = Log()
    log.customer(0)
    records = [
        HandoffRecord(
            conversation_id="c", reason="urgent", priority="high", queued_at=T0 + timedelta(seconds=3),
            claimed_at=T0 + timedelta(seconds=13), first_response_at=T0 + timedelta(seconds=33),
        )
    ]  # fmt: skip
    fact = compute_fact("c", log.events, {}, records, [], NO_LEDGER)
    assert fact is not None
    assert (fact.resolution_type, fact.handoff_count, fact.handoff_reason) == ("unanswered", 1, "urgent")
    assert (fact.queue_wait_s, fact.human_first_response_s) == (10.0, 30.0)


def test_confirmed_by_a_solved_verdict_on_a_customer_message_only() -> None:
    log = Log()
    first = log.customer(0)
    bot = log.bot(3)
    second = log.customer(30)
    # a verdict stored against a seq that is no customer message does not count
    assert not compute_fact("c", log.events, {bot: {"solved": True}}, [], [], NO_LEDGER).confirmed  # type: ignore[union-attr]
    fact = compute_fact(
        "c", log.events, {first: {"intent": "orders"}, second: {"solved": True}}, [], [], NO_LEDGER
    )
    assert fact is not None
    assert fact.confirmed
    assert fact.intent == "orders"
    rated = compute_fact("c", log.events, {}, [], [rating(4, 40)], NO_LEDGER)
    assert rated is not None
    assert rated.confirmed
    low = compute_fact("c", log.events, {}, [], [rating(3, 40)], NO_LEDGER)
    assert low is not None
    assert not low.confirmed
    assert low.rating == 3


def test_reopened_within_seven_days_of_a_resolution_not_after() -> None:
    week = 7 * 24 * 3600
    log = Log()
    log.customer(0)
    log.bot(2)
    log.status(10, "resolved")
    log.customer(10 + week)  # exactly seven days later: within
    within = compute_fact("c", log.events, {}, [], [], NO_LEDGER)
    assert within is not None
    assert within.reopened

    log = Log()
    log.customer(0)
    log.bot(2)
    log.status(10, "resolved")
    log.customer(11 + week)
    after = compute_fact("c", log.events, {}, [], [], NO_LEDGER)
    assert after is not None
    assert not after.reopened
    assert (after.resolved_by, after.resolution_type, after.last_customer_at) == (
        "customer", "bot", T0 + timedelta(seconds=11 + week),
    )  # fmt: skip


def test_a_ticket_starts_when_filed_and_its_bot_reply_counts() -> None:
    filed = T0 - timedelta(seconds=5)
    log = Log()
    log.customer(0)
    log.bot(40)
    fact = compute_fact(
        "ticket-t1", log.events, {1: {"intent": "orders"}}, [], [], NO_LEDGER, ticket_filed_at=filed
    )
    assert fact is not None
    assert (fact.channel, fact.started_at, fact.bot_first_response_s, fact.intent) == (
        "ticket",
        filed,
        45.0,
        "orders",
    )
    by_id = compute_fact("ticket-t1", log.events, {}, [], [], NO_LEDGER)
    assert by_id is not None
    assert (by_id.channel, by_id.started_at) == ("ticket", T0), "a ticket's conversation id says it is one"
