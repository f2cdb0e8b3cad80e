"""Model usage and agent edits, from the ledger (``model_usage``) and the examples (``example``).

Usage: calls, errors, tokens and cost by model and purpose (or by day), and the cache hit ratio as the
operations report defines it: cache reads / all input tokens (uncached + cache writes + cache reads) of
*answer* calls. Edits: how agents change the bot's drafts, per intent or agent. One query per report.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from support.db.models import Example, ModelUsage
from support.reports import rollup
from support.reports.conversations import (
    agent_names,
    check_group_by,
    check_range,
    day_key,
    group_label,
    iso,
    key_text,
    money,
    ratio,
    tune,
    utc,
)

USAGE: Any = ModelUsage.__table__  # type: ignore[attr-defined]
U: Any = USAGE.c
EXAMPLE: Any = Example.__table__  # type: ignore[attr-defined]
E: Any = EXAMPLE.c
USAGE_GROUP_BYS = ("model_purpose", "day")
EDIT_GROUP_BYS = ("intent", "agent")


def _in_range(column: Any, start: datetime | None, end: datetime | None) -> list[Any]:
    out = []
    if start is not None:
        out.append(column >= utc(start))
    if end is not None:
        out.append(column < utc(end))
    return out


def _usage_aggregates() -> list[Any]:
    writes = U.cache_write_5m_tokens + U.cache_write_1h_tokens
    answer = U.purpose == "answer"
    return [
        func.count().label("calls"),
        func.count().filter(U.outcome != "ok").label("errors"),
        func.sum(U.input_tokens).label("input_tokens"),
        func.sum(writes).label("cache_write_tokens"),
        func.sum(U.cache_read_tokens).label("cache_read_tokens"),
        func.sum(U.output_tokens).label("output_tokens"),
        func.sum(U.cost_usd).label("cost"),
        func.sum(U.input_tokens + writes + U.cache_read_tokens).filter(answer).label("answer_in"),
        func.sum(U.cache_read_tokens).filter(answer).label("answer_read"),
    ]


def _usage_row(key: str | None, label: str, r: Any, **extra: Any) -> dict[str, Any]:
    answer_in = int(r.answer_in or 0)
    return {
        "key": key,
        "label": label,
        **extra,
        "calls": int(r.calls or 0),
        "errors": int(r.errors or 0),
        "input_tokens": int(r.input_tokens or 0),
        "cache_write_tokens": int(r.cache_write_tokens or 0),
        "cache_read_tokens": int(r.cache_read_tokens or 0),
        "output_tokens": int(r.output_tokens or 0),
        "cost_usd": money(Decimal(r.cost or 0)),
        "cache_hit_ratio": ratio(int(r.answer_read or 0), answer_in),
    }


async def usage_report(
    sessions: async_sessionmaker[AsyncSession],
    *,
    start: datetime | None,
    end: datetime | None,
    group_by: str = "model_purpose",
    live: bool = False,
) -> dict[str, Any]:
    """``{"from", "to", "group_by", "total": Row, "groups": [Row]}`` over ledger rows created in
    ``[start, end)``; a ``model_purpose`` row also carries ``purpose`` and ``model``. Whole days are read
    from the daily rollup unless ``live``."""
    check_group_by(group_by, USAGE_GROUP_BYS)
    check_range(start, end)
    if not live:
        split = rollup.split_range(start, end)
        session = await rollup.fresh_session(sessions, ("usage",), split)
        if session is not None:
            async with session:
                days = await rollup.usage_days(session, split)
            return _usage_from_days(start, end, group_by, days)
    where = _in_range(U.created_at, start, end)
    async with sessions() as session:
        dialect = session.get_bind().dialect.name
        await tune(session)
        total = (await session.execute(select(*_usage_aggregates()).select_from(USAGE).where(*where))).one()
        if group_by == "model_purpose":
            keys = [U.purpose.label("purpose"), U.model.label("model")]
            query = select(*keys, *_usage_aggregates()).select_from(USAGE).where(*where)
            rows = (
                await session.execute(query.group_by(U.purpose, U.model).order_by(U.purpose, U.model))
            ).all()
            groups = [
                _usage_row(f"{r.purpose}/{r.model}", f"{r.purpose} · {r.model}", r, purpose=r.purpose,
                           model=r.model)
                for r in rows
            ]  # fmt: skip
        else:
            day = day_key(U.created_at, dialect)
            query = select(day.label("k"), *_usage_aggregates()).select_from(USAGE).where(*where)
            rows = (await session.execute(query.group_by(day).order_by(day))).all()
            groups = [_usage_row(key_text(r.k), str(key_text(r.k)), r) for r in rows]
    return {
        "from": iso(start),
        "to": iso(end),
        "group_by": group_by,
        "total": _usage_row(None, "All model calls", total),
        "groups": groups,
    }


def _usage_from_days(
    start: datetime | None, end: datetime | None, group_by: str, days: list[Any]
) -> dict[str, Any]:
    """The usage report from the ledger's sums per (day, purpose, model)."""
    by: dict[Any, list[Any]] = {}
    for d in days:
        by.setdefault((d.purpose, d.model) if group_by == "model_purpose" else d.day, []).append(d)
    groups = []
    for k in sorted(by):
        row = rollup.as_row(rollup.sum_usage(by[k]))
        if group_by == "model_purpose":
            purpose, model = k
            groups.append(
                _usage_row(f"{purpose}/{model}", f"{purpose} · {model}", row, purpose=purpose, model=model)
            )
        else:
            groups.append(_usage_row(k, str(k), row))
    return {
        "from": iso(start),
        "to": iso(end),
        "group_by": group_by,
        "total": _usage_row(None, "All model calls", rollup.as_row(rollup.sum_usage(days))),
        "groups": groups,
    }


def _edit_row(key: str | None, label: str, r: Any) -> dict[str, Any]:
    drafted = int(r.from_draft or 0)
    edited = int(r.edited or 0)
    mean = r.ratio_sum / r.ratio_n if r.ratio_n else None
    return {
        "key": key,
        "label": label,
        "agent_replies": int(r.replies or 0),
        "from_draft": drafted,
        "edited": edited,
        "edited_share": ratio(edited, drafted),
        "mean_edit_ratio": round(float(mean), 4) if mean is not None else None,
    }


async def edits_report(
    sessions: async_sessionmaker[AsyncSession],
    *,
    start: datetime | None,
    end: datetime | None,
    group_by: str = "intent",
) -> dict[str, Any]:
    """Agent replies (``example`` rows created in ``[start, end)``), those sent from a bot draft, the share
    of those the agent changed, and the mean edit ratio of replies from a draft, in total and per group."""
    check_group_by(group_by, EDIT_GROUP_BYS)
    check_range(start, end)
    where = _in_range(E.created_at, start, end)
    drafted = E.bot_draft.is_not(None)
    measured = drafted & E.edit_ratio.is_not(None)
    aggregates = [
        func.count().label("replies"),
        func.count().filter(drafted).label("from_draft"),
        func.count().filter(drafted & (E.edit_ratio > 0)).label("edited"),
        func.sum(E.edit_ratio).filter(measured).label("ratio_sum"),
        func.count().filter(measured).label("ratio_n"),
    ]
    key = E.intent if group_by == "intent" else E.agent_id
    async with sessions() as session:
        await tune(session)
        total = (await session.execute(select(*aggregates).select_from(EXAMPLE).where(*where))).one()
        query = select(key.label("k"), *aggregates).select_from(EXAMPLE).where(*where).group_by(key)
        rows = (await session.execute(query)).all()
        names = await agent_names(session, {r.k for r in rows if r.k}) if group_by == "agent" else {}
    ordered = sorted(rows, key=lambda r: (r.k is None, r.k or ""))
    return {
        "from": iso(start),
        "to": iso(end),
        "group_by": group_by,
        "total": _edit_row(None, "All agent replies", total),
        "groups": [_edit_row(r.k, group_label(group_by, r.k, names), r) for r in ordered],
    }
