"""The operations report over real SQLite and PostgreSQL: ledger sums, cache hit ratio, TTFT percentiles,
handoff rate, reasons, outcomes and wait times, the per-day series, and the date range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from handoff.records import HandoffRecords
from support.db.engine import session_factory
from support.db.models import ConversationFact, HandoffRecord, ModelUsage
from support.reports.operations import operations_report
from tests.reports.seed import fact

DAY1 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
DAY2 = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)


async def facts(engine: AsyncEngine, *rows: tuple[str, datetime, int]) -> None:
    """Conversation facts (id, started, handoff count): the handoff rate's population."""
    async with engine.begin() as conn:
        await conn.execute(
            insert(ConversationFact.__table__),  # type: ignore[attr-defined]
            [fact(cid, started, handoff_count=handoffs) for cid, started, handoffs in rows],
        )


def usage(cid: str, purpose: str, at: datetime, **kw: object) -> ModelUsage:
    model = "claude-haiku-4-5" if purpose == "triage" else "claude-sonnet-4-6"
    fields: dict[str, object] = {"outcome": "ok", **kw}
    return ModelUsage(purpose=purpose, model=model, conversation_id=cid, created_at=at, **fields)  # type: ignore[arg-type]


async def test_operations_report(db_engine: AsyncEngine) -> None:
    sessions = session_factory(db_engine)
    async with sessions() as session:
        session.add_all(
            [
                usage("c1", "triage", DAY1, input_tokens=300, output_tokens=40, cost_usd=Decimal("0.0005")),
                usage("c1", "answer", DAY1, input_tokens=100, cache_write_5m_tokens=9000, output_tokens=80,
                      cost_usd=Decimal("0.0353"), ttft_ms=800.0),
                usage("c2", "triage", DAY2, input_tokens=300, output_tokens=40, cost_usd=Decimal("0.0005")),
                usage("c2", "answer", DAY2, input_tokens=100, cache_read_tokens=9000, output_tokens=80,
                      cost_usd=Decimal("0.0042"), ttft_ms=600.0),
                usage("c3", "answer", DAY2, outcome="error:overloaded", cost_usd=Decimal(0)),
            ]
        )  # fmt: skip
        session.add(usage("old", "answer", DAY1 - timedelta(days=30), cost_usd=Decimal(5)))
        await session.commit()
    records = HandoffRecords(sessions)
    await records.opened("c2", reason="low_confidence", priority="normal", intent="shipping")
    await records.claimed("c2", "agent-1")
    await records.responded("c2")
    await records.responded("c2")  # only the first response counts
    await records.ended("c2", "resolved")
    await records.opened("c3", reason="draft_failed", priority="normal", intent=None)
    async with sessions() as session:  # place the handoffs on DAY2 with known waits
        for row in (await session.execute(HandoffRecord.__table__.select())).all():  # type: ignore[attr-defined]
            waited = timedelta(seconds=30 if row.conversation_id == "c2" else 0)
            rec = await session.get(HandoffRecord, row.id)
            assert rec is not None
            rec.queued_at = DAY2
            if rec.claimed_at is not None:
                rec.claimed_at = DAY2 + waited
                rec.first_response_at = DAY2 + waited + timedelta(seconds=15)
        await session.commit()

    await facts(db_engine, ("c1", DAY1, 0), ("c2", DAY2, 1), ("c3", DAY2, 1))
    report = await operations_report(sessions, start=DAY1 - timedelta(hours=1), end=DAY2 + timedelta(days=1))
    assert report.conversations == 3
    assert report.customer_turns == 2
    assert (report.model_calls, report.model_errors) == (5, 1)
    assert report.cost_usd == Decimal("0.0405")
    assert report.cost_per_conversation_usd == Decimal("0.013500")
    assert report.cache_hit_ratio == round(9000 / (100 + 9000 + 100 + 9000), 4)
    assert (report.answer_ttft_ms_p50, report.answer_ttft_ms_p95) == (700.0, 790.0)
    assert report.handoffs == 2
    assert report.handoff_rate == round(2 / 3, 4)
    assert report.handoff_reasons == {"low_confidence": 1, "draft_failed": 1}
    assert report.handoff_outcomes == {"resolved": 1, "open": 1}
    assert report.claim_wait_s_p50 == 30.0
    assert report.first_response_s_p50 == 45.0
    assert [d["day"] for d in report.days] == ["2026-11-02", "2026-11-03"]
    assert [(d["conversations"], d["handoffs"]) for d in report.days] == [(1, 0), (2, 2)]
    as_json = report.to_json()
    assert as_json["cost_usd"] == "0.0405"
    # the range bounds what is counted
    only_day1 = await operations_report(
        sessions, start=DAY1 - timedelta(hours=1), end=DAY2 - timedelta(hours=1)
    )
    assert (only_day1.conversations, only_day1.handoffs) == (1, 0)
    everything = await operations_report(sessions)
    assert everything.conversations == 4


async def test_handoff_rate_counts_conversations_handed_off_without_a_model_call(
    db_engine: AsyncEngine,
) -> None:
    """With the model API offline (or "talk to a person" before any answer) a conversation is handed off
    without a ledger row. It is still a conversation: the rate stays within 0..100 %."""
    sessions = session_factory(db_engine)
    async with sessions() as session:
        session.add(usage("answered", "triage", DAY1, cost_usd=Decimal("0.0005")))
        session.add(usage("answered", "answer", DAY1, cost_usd=Decimal("0.0040")))
        session.add(usage("online-handoff", "triage", DAY1, cost_usd=Decimal("0.0005")))
        await session.commit()
    records = HandoffRecords(sessions)
    await records.opened("online-handoff", reason="low_confidence", priority="normal", intent=None)
    for cid in ("offline-1", "offline-2", "offline-3"):  # the model API was offline: no ledger rows
        await records.opened(cid, reason="low_confidence", priority="normal", intent=None)
    await records.opened("offline-1", reason="wants_human", priority="normal", intent=None)  # twice
    async with sessions() as session:
        for row in (await session.execute(HandoffRecord.__table__.select())).all():  # type: ignore[attr-defined]
            rec = await session.get(HandoffRecord, row.id)
            assert rec is not None
            rec.queued_at = DAY1
        await session.commit()

    await facts(
        db_engine, ("answered", DAY1, 0), ("online-handoff", DAY1, 1), ("offline-1", DAY1, 2),
        ("offline-2", DAY1, 1), ("offline-3", DAY1, 1),
        # Started (and answered) the day before, handed off within the range: not in the range's population,
        # neither handed off in it nor a conversation of it.
        ("yesterday", DAY1 - timedelta(days=1), 1),
    )  # fmt: skip
    report = await operations_report(sessions, start=DAY1 - timedelta(hours=1), end=DAY1 + timedelta(days=1))
    assert report.conversations == 5  # two with model calls, three handed off while offline
    assert report.handoffs == 5
    assert report.handoff_rate == round(4 / 5, 4)
    assert (report.started_conversations, report.handed_off_conversations) == (5, 4)
    assert report.handoff_rate is not None
    assert 0 <= report.handoff_rate <= 1
    assert [(d["day"], d["conversations"], d["handoffs"]) for d in report.days] == [("2026-11-02", 5, 5)]
    assert report.cost_per_conversation_usd == Decimal("0.001000")
