"""The daily rollup against the live computation, on SQLite and PostgreSQL: varied facts, ledger rows and
handoffs over seven weeks; every report and cut over whole-day, partial-day, open and short ranges at
several ``now`` values must be exactly the live one (percentiles of ranges over 31 days within the stated
bound), also after facts and ledger rows are updated and deleted behind the reports' back."""

from __future__ import annotations

import asyncio
import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from support.db.engine import session_factory
from support.db.models import ConversationFact, HandoffRecord, ModelUsage
from support.reports import rollup
from support.reports.conversations import (
    DURATIONS,
    GROUP_BYS,
    handoff_reasons_report,
    overview_report,
)
from support.reports.facts import delete_facts
from support.reports.operations import operations_report
from support.reports.usage import USAGE_GROUP_BYS, usage_report

FACT: Any = ConversationFact.__table__  # type: ignore[attr-defined]
USAGE: Any = ModelUsage.__table__  # type: ignore[attr-defined]
HANDOFF: Any = HandoffRecord.__table__  # type: ignore[attr-defined]
BASE = datetime(2026, 9, 1, tzinfo=UTC)
DAYS = 48
INTENTS = ("returns_refunds", "warranty_repairs", "payments_billing", None)
NOWS = (
    BASE + timedelta(days=30, hours=7),
    BASE + timedelta(days=DAYS - 1, hours=13),
    BASE + timedelta(days=90),
)
RANGES = (
    (None, None),  # open: approximate percentiles
    (BASE + timedelta(days=3), BASE + timedelta(days=44)),  # whole days, 41 days: approximate
    (BASE + timedelta(days=2, hours=5), BASE + timedelta(days=40, hours=17, minutes=3)),  # partial ends
    (BASE + timedelta(days=20, hours=6), None),  # open end: exact percentiles up to 31 days before now
    (BASE + timedelta(days=5, hours=1), BASE + timedelta(days=5, hours=23)),  # within one day: all live
)


def _seconds(rng: random.Random) -> float | None:
    if rng.random() < 0.2:
        return None
    return 0.0 if rng.random() < 0.03 else round(rng.lognormvariate(3, 1.5), 3)


def facts(rng: random.Random, n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        started = BASE + timedelta(seconds=rng.uniform(0, DAYS * 86400))
        kind = rng.choice(("bot", "bot", "bot", "handed_off", "unanswered", "human"))
        bot_reply = started + timedelta(seconds=rng.uniform(1, 3 * 86400)) if rng.random() < 0.9 else None
        customer = started + timedelta(seconds=rng.uniform(0, 3 * 86400))
        resolved = started + timedelta(hours=rng.uniform(0, 30)) if rng.random() < 0.6 else None
        handoffs = 0 if kind == "bot" else rng.choice((1, 1, 2))
        rows.append(
            {
                "conversation_id": f"r{i:04d}", "channel": rng.choice(("chat", "chat", "ticket")),
                "started_at": started, "intent": rng.choice(INTENTS),
                "policy_version": rng.choice(("v1", "v2", None)),
                "agent_id": rng.choice(("ag1", "ag2", "ag3")) if kind in ("handed_off", "human") else None,
                "resolution_type": kind, "customer_messages": 1, "bot_messages": 1, "agent_messages": 0,
                "last_customer_at": customer if rng.random() < 0.7 else None, "first_bot_reply_at": None,
                "last_bot_reply_at": bot_reply, "bot_first_response_s": _seconds(rng),
                "handoff_count": handoffs, "handed_off_at": None,
                "handoff_reason": rng.choice(("low_confidence", "wants_human", None)) if handoffs else None,
                "queue_wait_s": _seconds(rng), "human_first_response_s": _seconds(rng),
                "resolved_at": resolved, "resolved_by": None, "resolution_s": _seconds(rng),
                "confirmed": kind == "bot" and rng.random() < 0.3, "reopened": rng.random() < 0.1,
                "rating": rng.choice((None, None, 1, 2, 3, 4, 5)), "rated_at": None,
                "predicted_score": rng.choice((None, 2, 4, 5)), "predicted_reason": None,
                "predicted_at": None,
                "cost_usd": Decimal(rng.randint(0, 90000)) / Decimal(10**6), "model_calls": 2,
                "updated_at": started,
            }
        )  # fmt: skip
    return rows


def ledger(rng: random.Random, fact_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for f in fact_rows:
        for _ in range(rng.randint(0, 3)):
            rows.append(  # noqa: PERF401 (one random draw after another, in order)
                {
                    "purpose": rng.choice(("triage", "answer", "answer", "summary")),
                    "model": rng.choice(("claude-haiku-4-5", "claude-sonnet-4-6")),
                    "conversation_id": f["conversation_id"] if rng.random() < 0.9 else None,
                    "input_tokens": rng.randint(0, 900), "cache_write_5m_tokens": rng.randint(0, 50),
                    "cache_write_1h_tokens": rng.randint(0, 50), "cache_read_tokens": rng.randint(0, 5000),
                    "output_tokens": rng.randint(0, 300),
                    "cost_usd": Decimal(rng.randint(0, 40000)) / Decimal(10**7),
                    "ttft_ms": rng.uniform(200, 900),
                    "outcome": rng.choice(("ok", "ok", "ok", "error:overloaded")),
                    "created_at": f["started_at"] + timedelta(seconds=rng.uniform(0, 2 * 86400)),
                }
            )  # fmt: skip
    return rows


def handoffs(rng: random.Random, fact_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": f"h{i:04d}",
            "conversation_id": f["conversation_id"],
            "reason": f["handoff_reason"] or "other",
            "priority": "normal",
            "queued_at": f["started_at"] + timedelta(minutes=rng.uniform(0, 3000)),
        }
        for i, f in enumerate(fact_rows)
        if f["handoff_count"]
    ]


def _without_percentiles(report: dict[str, Any]) -> dict[str, Any]:
    def strip(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k not in DURATIONS}

    rest = {
        k: v for k, v in report.items() if k not in ("total", "groups", "percentiles", "percentile_error")
    }
    return {**rest, "total": strip(report["total"]), "groups": [strip(g) for g in report["groups"]]}


def _close(approx: float | None, exact: float | None) -> bool:
    if approx is None or exact is None:
        return approx is exact
    return abs(approx - exact) <= rollup.PERCENTILE_ERROR * abs(exact) + 0.0015


async def compare_all(
    sessions: async_sessionmaker[AsyncSession], *, cuts: tuple[str, ...] = GROUP_BYS
) -> int:
    """Every report, rollup against live; returns how many comparisons were made."""
    made = 0
    for start, end in RANGES:
        for group_by in cuts:
            for now in NOWS if group_by == "none" else NOWS[1:2]:
                fast = await overview_report(sessions, start=start, end=end, group_by=group_by, now=now)
                slow = await overview_report(
                    sessions, start=start, end=end, group_by=group_by, now=now, live=True
                )
                where = (start, end, group_by, now)
                exact = rollup.exact_percentiles(start, end, now)
                assert fast["percentiles"] == ("exact" if exact else "approximate"), where
                if exact:
                    assert {**fast, "percentiles": "exact"} == slow, where
                else:
                    assert _without_percentiles(fast) == _without_percentiles(slow), where
                    rows = zip(
                        [fast["total"], *fast["groups"]], [slow["total"], *slow["groups"]], strict=True
                    )
                    for f_row, s_row in rows:
                        for name in DURATIONS:
                            for q in ("p50", "p90"):
                                assert _close(f_row[name][q], s_row[name][q]), (where, f_row["key"], name, q)
                made += 1
            fast = await handoff_reasons_report(sessions, start=start, end=end, group_by=group_by)
            assert fast == await handoff_reasons_report(
                sessions, start=start, end=end, group_by=group_by, live=True
            )
            made += 1
        for group_by in USAGE_GROUP_BYS:
            fast = await usage_report(sessions, start=start, end=end, group_by=group_by)
            assert fast == await usage_report(sessions, start=start, end=end, group_by=group_by, live=True)
            made += 1
        fast_ops = (await operations_report(sessions, start=start, end=end)).to_json()
        assert fast_ops == (await operations_report(sessions, start=start, end=end, live=True)).to_json()
        made += 1
    return made


async def _dirty(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int((await session.execute(select(func.count()).select_from(rollup.DIRTY))).scalar_one())


@pytest.mark.timeout(240)  # about 250 report calls; 20-40 s on a loaded 2-core machine
async def test_rollup_equals_live_through_writes(db_engine: AsyncEngine) -> None:
    rng = random.Random(19)
    fact_rows = facts(rng, 300)
    async with db_engine.begin() as conn:
        await conn.execute(insert(FACT), fact_rows)
        await conn.execute(insert(USAGE), ledger(rng, fact_rows))
        await conn.execute(insert(HANDOFF), handoffs(rng, fact_rows))
    sessions = session_factory(db_engine)
    assert await _dirty(sessions) >= DAYS  # the triggers marked every day written
    # two refreshes at once recompute each day once: no double count
    await asyncio.gather(rollup.refresh(sessions), rollup.refresh(sessions))
    assert await _dirty(sessions) == 0
    assert await compare_all(sessions) > 100

    # writers that do not know about the rollup: the fact refresher's upsert shape (update), a day moved,
    # the predicted-satisfaction job's columns, erasure, new and deleted ledger rows
    async with db_engine.begin() as conn:
        for r in fact_rows[:30]:  # moved to another day (SQLite has no datetime arithmetic: one by one)
            await conn.execute(
                update(FACT)
                .where(FACT.c.conversation_id == r["conversation_id"])
                .values(started_at=r["started_at"] + timedelta(days=1, hours=3), intent="account_privacy")
            )
        await conn.execute(
            update(FACT)
            .where(FACT.c.conversation_id.in_([r["conversation_id"] for r in fact_rows[30:80]]))
            .values(resolution_type="bot", confirmed=False, rating=None, predicted_score=5, resolution_s=42.0)
        )
        await conn.execute(delete(USAGE).where(USAGE.c.id % 3 == 0))
        await conn.execute(insert(USAGE), ledger(random.Random(7), fact_rows[100:160]))
    async with session_factory(db_engine)() as session, session.begin():
        await delete_facts(session, [r["conversation_id"] for r in fact_rows[200:260]])
    assert await _dirty(sessions) > 0
    await compare_all(sessions, cuts=("none", "intent"))
    assert await _dirty(sessions) == 0


async def test_refresh_keeps_a_day_marked_when_it_is_written_again(db_engine: AsyncEngine) -> None:
    """A write that marks a day again while the day is recomputed leaves the mark (the version moved)."""
    rng = random.Random(3)
    rows = facts(rng, 20)
    async with db_engine.begin() as conn:
        await conn.execute(insert(FACT), rows)
    sessions = session_factory(db_engine)
    day = rows[0]["started_at"].date()
    mark = (rollup.DIRTY.c.kind == "fact") & (rollup.DIRTY.c.day == day)
    async with sessions() as session, session.begin():
        version = (await session.execute(select(rollup.DIRTY.c.version).where(mark))).scalar_one()
    # the same day written again: the version moves, so a refresh that read the old one keeps the mark
    async with db_engine.begin() as conn:
        await conn.execute(
            update(FACT).where(FACT.c.conversation_id == rows[0]["conversation_id"]).values(rating=5)
        )
    async with sessions() as session, session.begin():
        assert (await session.execute(select(rollup.DIRTY.c.version).where(mark))).scalar_one() > version
        gone = await session.execute(delete(rollup.DIRTY).where(mark, rollup.DIRTY.c.version == version))
        assert gone.rowcount == 0  # type: ignore[attr-defined]
    assert await rollup.refresh(sessions) >= 1
    assert await _dirty(sessions) == 0


def test_split_range_and_percentile_bound() -> None:
    at = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
    split = rollup.split_range(at, at + timedelta(days=3))
    assert (split.first, split.end) == (at.date() + timedelta(days=1), at.date() + timedelta(days=3))
    assert split.live == (
        (at, datetime(2026, 3, 5, tzinfo=UTC)),
        (datetime(2026, 3, 7, tzinfo=UTC), at + timedelta(days=3)),
    )
    assert not rollup.split_range(at, at + timedelta(hours=20)).whole
    assert rollup.split_range(None, None) == rollup.Split(whole=True, first=None, end=None)
    for value in (0.0012, 0.7, 3.0, 59.9, 86400.0):
        b = math.floor(math.log(value) / rollup.LOG_GAMMA)
        assert abs(rollup.bucket_value(b) - value) <= rollup.PERCENTILE_ERROR * value
    assert rollup.hist_percentiles({}) == {"p50": None, "p90": None}
    assert rollup.hist_percentiles({rollup.NON_POSITIVE: 3}) == {"p50": 0.0, "p90": 0.0}


@pytest.mark.parametrize("days", [31, 32])
def test_exact_percentiles_up_to_31_days(days: int) -> None:
    now = BASE + timedelta(days=days)
    assert rollup.exact_percentiles(BASE, now, BASE + timedelta(days=90)) is (days <= 31)
    assert rollup.exact_percentiles(BASE, None, now) is (days <= 31)  # open end: up to now
    assert not rollup.exact_percentiles(None, now, now)
