"""Conversation reports: the overview, handoff reasons and the drill-down, all over ``conversation_fact``.

docs/metrics.md defines every number; this module implements exactly those definitions, once, as SQL
conditions (:func:`conditions`) that both the overview's counts and the drill-down's ``only`` filters use,
so a number and the conversations behind it cannot disagree. Counts are aggregate queries grouped by the
cut (plus one for the total). Percentiles are ``percentile_cont`` on PostgreSQL (its overview runs the
counts and the four percentiles as concurrent queries) and the same inclusive (linear interpolation)
method in Python on SQLite, which has no percentile function.

Times are compared and returned in UTC; every time leaves as ISO 8601 with ``+00:00``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import statistics
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, Literal, get_args

from sqlalchemy import and_, case, false, func, literal_column, or_, select, text, true, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from support.conversation.reasons import REASON_TEXT
from support.db.models import Agent, ConversationFact
from support.errors import ValidationFailed
from support.reports.satisfaction import NO_VALUE_WORDS, intent_words

FACT: Any = ConversationFact.__table__  # type: ignore[attr-defined]
C: Any = FACT.c

GroupBy = Literal["none", "resolution", "intent", "agent", "channel", "day", "week", "policy_version"]
GROUP_BYS: tuple[str, ...] = get_args(GroupBy)
RESOLUTION_TYPES = ("bot", "handed_off", "unanswered", "human")
Only = Literal[
    "bot_resolved", "bot_confirmed", "bot_assumed", "reopened", "resolved", "handed_off", "unanswered",
    "rated", "satisfied", "dissatisfied", "asked", "predicted", "predicted_satisfied",
]  # fmt: skip
ONLY: tuple[str, ...] = get_args(Only)
NONE_VALUE = "__none__"  # a drill-down filter value selecting rows where the column is null
ASSUMED_AFTER = timedelta(hours=24)  # a bot reply with no customer message since: assumed resolved
MAX_PAGE = 200
DEFAULT_PAGE = 50
RESOLUTION_WORDS = {
    "bot": "Bot",
    "handed_off": "Handed off (a person replied)",
    "unanswered": "Handed off, no person replied",
    "human": "Person only",
}
CHANNEL_WORDS = {"chat": "Chat", "ticket": "Ticket"}
GROUP_NONE_WORDS = {**NO_VALUE_WORDS, "agent": "No agent", "policy_version": "No policy version"}
REPORT_WORK_MEM = "64MB"  # per report transaction on PostgreSQL: percentile sorts of a million rows in memory
CENT_FRACTION = Decimal("0.000001")  # per-conversation money is rounded to a millionth of a dollar


def utc(moment: datetime) -> datetime:
    """A moment in UTC (a naive one is taken to be UTC already): what the datetime columns compare with."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime | None) -> str | None:
    """A stored (naive UTC) or aware moment as ISO 8601 with ``+00:00``."""
    if moment is None:
        return None
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)).isoformat()


def money(amount: Decimal | None) -> str | None:
    """Exact dollars as a string without exponent or trailing zeros; None stays None."""
    if amount is None:
        return None
    return format(amount.normalize(), "f") if amount else "0"


def ratio(part: int, whole: int) -> float | None:
    """``part / whole`` rounded to 4 places; None when there is nothing to divide by."""
    return round(part / whole, 4) if whole else None


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50 and p90 by linear interpolation between closest ranks (inclusive; PostgreSQL percentile_cont)."""
    if not values:
        return {"p50": None, "p90": None}
    if len(values) == 1:
        return {"p50": round(values[0], 3), "p90": round(values[0], 3)}
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    return {"p50": round(deciles[4], 3), "p90": round(deciles[8], 3)}


# -- the definitions ---------------------------------------------------------------------------------------


def conditions(now: datetime) -> dict[str, ColumnElement[bool]]:
    """Each counted set of conversations as a SQL condition on a fact row (docs/metrics.md, "Definitions").

    ``now`` decides *assumed* (the bot's last reply is older than 24 h); it is a parameter so reports are
    deterministic in tests.
    """
    cutoff = utc(now) - ASSUMED_AFTER
    bot = C.resolution_type == "bot"
    confirmed = and_(bot, C.confirmed == true())
    # A candidate becomes *assumed* once its last bot reply is 24 h old: whether a row is a candidate
    # does not depend on ``now``, so the daily rollup counts candidates (support/reports/rollup.py).
    candidate = and_(
        bot,
        C.confirmed == false(),
        or_(C.rating.is_(None), C.rating >= 4),
        C.last_bot_reply_at.is_not(None),
        or_(C.last_customer_at.is_(None), C.last_customer_at <= C.last_bot_reply_at),
    )
    assumed = and_(candidate, C.last_bot_reply_at < cutoff)
    bot_resolved = or_(confirmed, assumed)
    person_resolved = and_(C.resolution_type.in_(("handed_off", "human")), C.resolved_at.is_not(None))
    return {
        "assumed_candidate": candidate,
        "not_yet_assumed": and_(candidate, C.last_bot_reply_at >= cutoff),
        "person_resolved": person_resolved,
        "bot_confirmed": confirmed,
        "bot_assumed": assumed,
        "bot_resolved": bot_resolved,
        "resolved": or_(bot_resolved, person_resolved),
        "reopened": C.reopened == true(),
        "handed_off": C.handoff_count > 0,
        "unanswered": C.resolution_type == "unanswered",
        "rated": C.rating.is_not(None),
        "satisfied": C.rating >= 4,
        "dissatisfied": C.rating <= 3,
        "asked": C.resolved_at.is_not(None),
        # the response rate's numerator: rated among the asked, so the rate cannot exceed 100 %
        "asked_rated": and_(C.resolved_at.is_not(None), C.rating.is_not(None)),
        # Predicted satisfaction counts only where nobody rated: it is shown beside CSAT, never mixed in.
        "predicted": and_(C.predicted_score.is_not(None), C.rating.is_(None)),
        "predicted_satisfied": and_(C.predicted_score >= 4, C.rating.is_(None)),
    }


def _count(condition: ColumnElement[bool]) -> Any:
    return func.count().filter(condition)  # FILTER: a third faster than SUM(CASE) on PostgreSQL


def check_group_by(group_by: str, allowed: tuple[str, ...] = GROUP_BYS) -> None:
    """Raise ValidationFailed unless ``group_by`` is one of ``allowed``."""
    if group_by not in allowed:
        raise ValidationFailed(f"group_by must be one of {' | '.join(allowed)}")


def check_range(start: datetime | None, end: datetime | None) -> None:
    """Raise ValidationFailed for an empty range."""
    if start is not None and end is not None and utc(start) >= utc(end):
        raise ValidationFailed("`from` must be before `to`")


def group_key(group_by: str, dialect: str) -> Any:
    """The SQL expression whose value is a fact row's group (``None`` for ``group_by=none``)."""
    if group_by == "none":
        return None
    if group_by in ("day", "week"):
        return day_key(C.started_at, dialect, group_by)
    column = {"resolution": "resolution_type", "agent": "agent_id"}.get(group_by, group_by)
    return C[column]


def day_key(column: Any, dialect: str, unit: str = "day") -> Any:
    """The UTC day (or the ISO week's Monday) of a datetime column. PostgreSQL: ``date_trunc`` (a timestamp,
    cheaper to group by than text; :func:`key_text` formats it); SQLite: the date as text."""
    if dialect == "postgresql":
        return func.date_trunc(literal_column(f"'{unit}'"), column)
    if unit == "week":
        return func.date(column, literal_column("'weekday 0'"), literal_column("'-6 days'"))
    return func.strftime(literal_column("'%Y-%m-%d'"), column)


def key_text(key: Any) -> str | None:
    """A group key as the API shows it (a day as ``YYYY-MM-DD``)."""
    if key is None:
        return None
    if isinstance(key, datetime | date):
        return key.isoformat()[:10]
    return str(key)


async def tune(session: AsyncSession) -> None:
    """For this report's transaction on PostgreSQL: raise ``work_mem`` so its sorts and hashes stay in
    memory, and turn JIT off (compiling a report's expressions took 1.8 of 2.8 s at a million rows, more
    than it saved). A no-op on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
        await session.execute(text("SET LOCAL jit = off"))


def group_label(group_by: str, key: str | None, agent_names: dict[str, str]) -> str:
    """The words shown for a group (intent words and agent names as the satisfaction report shows them)."""
    if key is None:
        return GROUP_NONE_WORDS.get(group_by, "None")
    if group_by == "intent":
        return intent_words(key)
    if group_by == "agent":
        return agent_names.get(key, key)
    if group_by == "resolution":
        return RESOLUTION_WORDS.get(key, key)
    if group_by == "channel":
        return CHANNEL_WORDS.get(key, key)
    return key


def _sort_key(group_by: str, key: str | None) -> tuple[Any, ...]:
    if group_by == "resolution" and key in RESOLUTION_TYPES:
        return (0, RESOLUTION_TYPES.index(key), "")
    return (key is None, 0, key or "")


def range_conditions(start: datetime | None, end: datetime | None) -> list[ColumnElement[bool]]:
    """``started_at`` in ``[start, end)`` (either bound open)."""
    out = []
    if start is not None:
        out.append(C.started_at >= utc(start))
    if end is not None:
        out.append(C.started_at < utc(end))
    return out


async def agent_names(session: AsyncSession, ids: set[str] | None = None) -> dict[str, str]:
    """Names of the given agents (every agent when ``ids`` is None)."""
    query = select(Agent.id, Agent.name)  # type: ignore[call-overload]
    if ids is not None:
        if not ids:
            return {}
        query = query.where(Agent.id.in_(ids))  # type: ignore[attr-defined]
    return {str(i): str(n) for i, n in (await session.execute(query)).all()}


# -- the overview -----------------------------------------------------------------------------------------

DURATIONS = ("first_response_bot_s", "first_response_human_s", "queue_wait_s", "resolution_s")


def _duration_columns(cond: dict[str, ColumnElement[bool]]) -> dict[str, Any]:
    # Time to resolution counts resolved conversations only.
    return {
        "first_response_bot_s": C.bot_first_response_s,
        "first_response_human_s": C.human_first_response_s,
        "queue_wait_s": C.queue_wait_s,
        "resolution_s": case((cond["resolved"], C.resolution_s), else_=None),
    }


def _aggregates(cond: dict[str, ColumnElement[bool]]) -> list[Any]:
    counted = ("bot_confirmed", "bot_assumed", "resolved", "reopened", "handed_off", "rated", "satisfied",
               "asked", "asked_rated", "predicted", "predicted_satisfied")  # fmt: skip
    return [
        func.count().label("conversations"),
        *(_count(C.resolution_type == r).label(f"r_{r}") for r in RESOLUTION_TYPES),
        *(_count(cond[name]).label(name) for name in counted),
        func.sum(C.rating).label("rating_sum"),
        func.sum(C.predicted_score).filter(cond["predicted"]).label("predicted_sum"),
        func.sum(C.cost_usd).label("cost"),
    ]


def _row(
    key: str | None, label: str, r: Any, durations: dict[str, dict[str, float | None]]
) -> dict[str, Any]:
    conversations = int(r.conversations or 0)
    resolved = int(r.resolved or 0)
    confirmed, assumed = int(r.bot_confirmed or 0), int(r.bot_assumed or 0)
    rated, predicted = int(r.rated or 0), int(r.predicted or 0)
    handed_off = int(r.handed_off or 0)
    cost = Decimal(r.cost or 0)
    empty = {"p50": None, "p90": None}
    return {
        "key": key,
        "label": label,
        "conversations": conversations,
        "resolution": {t: int(getattr(r, f"r_{t}") or 0) for t in RESOLUTION_TYPES},
        "bot_confirmed": confirmed,
        "bot_assumed": assumed,
        "bot_resolution_rate": ratio(confirmed + assumed, conversations),
        "reopened": int(r.reopened or 0),
        "resolved": resolved,
        "handed_off": handed_off,
        "handoff_rate": ratio(handed_off, conversations),
        **{name: durations.get(name, empty) for name in DURATIONS},
        "rated": rated,
        "csat": ratio(int(r.satisfied or 0), rated),
        "mean_rating": round(int(r.rating_sum or 0) / rated, 3) if rated else None,
        "response_rate": ratio(int(r.asked_rated or 0), int(r.asked or 0)),
        "predicted": {
            "count": predicted,
            "mean": round(int(r.predicted_sum or 0) / predicted, 3) if predicted else None,
            "csat": ratio(int(r.predicted_satisfied or 0), predicted),
        },
        "cost_usd": money(cost),
        "cost_per_conversation_usd": money((cost / conversations).quantize(CENT_FRACTION))
        if conversations
        else None,
        "cost_per_resolution_usd": money((cost / resolved).quantize(CENT_FRACTION)) if resolved else None,
    }


async def _durations(
    session: AsyncSession, dialect: str, key: Any, where: list[Any], cond: dict[str, ColumnElement[bool]]
) -> dict[str | None, dict[str, dict[str, float | None]]]:
    """p50/p90 of each duration per group key (``None`` key for the total when ``key`` is None), computed
    here: SQLite has no percentile function (PostgreSQL: :func:`_overview_postgres`)."""
    columns = _duration_columns(cond)
    keyed = [key.label("k")] if key is not None else []
    exprs = [expr.label(name) for name, expr in columns.items()]
    any_value = or_(*(expr.is_not(None) for expr in columns.values()))
    query = select(*keyed, *exprs).select_from(FACT).where(*where, any_value)
    values: dict[str | None, dict[str, list[float]]] = {}
    for row in (await session.execute(query)).all():
        k = row.k if key is not None else None
        bucket = values.setdefault(k, {name: [] for name in columns})
        for name in columns:
            value = getattr(row, name)
            if value is not None:
                bucket[name].append(float(value))
    return {k: {name: percentiles(v[name]) for name in columns} for k, v in values.items()}


Durations = dict[str, dict[str, float | None]]


def _pair(value: Any) -> dict[str, float | None]:
    if not value:
        return {"p50": None, "p90": None}
    return {q: None if v is None else round(float(v), 3) for q, v in zip(("p50", "p90"), value, strict=True)}


async def _nothing() -> list[Any]:
    return []


async def _overview_postgres(
    sessions: async_sessionmaker[AsyncSession],
    key: Any,
    where: list[Any],
    cond: dict[str, ColumnElement[bool]],
    *,
    with_counts: bool = True,
) -> tuple[Any, Durations, list[Any], dict[Any, Durations]]:
    """The counts (total, groups) and each duration's percentiles as up to six queries run at once, each on
    its own connection (``work_mem`` raised for each); a percentile query is grouped by ``GROUPING SETS
    ((key), ())``, so one sort gives the groups and the total. Apart, the counts can use a parallel plan and
    each percentile sorts only the rows that have its value; together they take as long as the slowest,
    not the sum."""
    grouped = key is not None
    keyed = [key.label("k"), func.grouping(key).label("is_total")] if grouped else []

    def query(*columns: Any, extra: Any = None) -> Any:
        q = select(*keyed, *columns).select_from(FACT).where(*where, *([] if extra is None else [extra]))
        return q.group_by(func.grouping_sets(key, literal_column("()"))) if grouped else q

    async def run(q: Any, *, sorted_input: bool = False) -> list[Any]:
        async with sessions() as session:
            await tune(session)
            if sorted_input:
                # A percentile reads most rows of the range; fed in key order by a plain index scan (of a
                # few-valued column such as agent_id) it reads the heap at random: 40 % slower at a million
                # rows than a scan and a sort. Bitmap scans (a short range on started_at) stay allowed.
                await session.execute(text("SET LOCAL enable_indexscan = off"))
            return list((await session.execute(q)).all())

    wanted: Any = literal_column("ARRAY[0.5, 0.9]")
    columns = {
        "first_response_bot_s": (C.bot_first_response_s, C.bot_first_response_s.is_not(None)),
        "first_response_human_s": (C.human_first_response_s, C.human_first_response_s.is_not(None)),
        "queue_wait_s": (C.queue_wait_s, C.queue_wait_s.is_not(None)),
        # time to resolution: resolved conversations only
        "resolution_s": (C.resolution_s, and_(C.resolution_s.is_not(None), cond["resolved"])),
    }
    counts = select(*_aggregates(cond)).select_from(FACT).where(*where)
    # Counts as two plain aggregates, the total and the groups: each can run as a parallel (hash) aggregate,
    # which GROUPING SETS cannot (4x slower at a million rows).
    total, groups, *percentile_rows = await asyncio.gather(
        run(counts) if with_counts else _nothing(),
        run(counts.add_columns(key.label("k")).group_by(key)) if grouped and with_counts else _nothing(),
        *(
            run(
                query(func.percentile_cont(wanted).within_group(expr).label("p"), extra=only),
                sorted_input=True,
            )
            for expr, only in columns.values()
        ),
    )
    empty = {name: _pair(None) for name in DURATIONS}
    total_durations = dict(empty)
    durations: dict[Any, Durations] = {}
    for name, rows in zip(columns, percentile_rows, strict=True):
        for r in rows:
            if not grouped or r.is_total:
                total_durations[name] = _pair(r.p)
            else:
                durations.setdefault(r.k, dict(empty))[name] = _pair(r.p)
    return (total[0] if total else None), total_durations, groups, durations


async def _exact_durations(
    sessions: async_sessionmaker[AsyncSession], group_by: str, where: list[Any], now: datetime
) -> tuple[Durations, dict[str | None, Durations]]:
    """Exact p50/p90 of the four durations, in total and per group key (as text), read live."""
    cond = conditions(now)
    async with sessions() as session:
        dialect = session.get_bind().dialect.name
        key = group_key(group_by, dialect)
        if dialect == "postgresql":
            _, total, _, per_key = await _overview_postgres(sessions, key, where, cond, with_counts=False)
            return total, {key_text(k): d for k, d in per_key.items()}
        total = (await _durations(session, dialect, None, where, cond)).get(None, {})
        per_key = await _durations(session, dialect, key, where, cond) if key is not None else {}
        return total, {key_text(k): d for k, d in per_key.items()}


async def _overview_rollup(
    sessions: async_sessionmaker[AsyncSession],
    *,
    start: datetime | None,
    end: datetime | None,
    group_by: str,
    now: datetime,
) -> dict[str, Any] | None:
    """The overview from the daily rollup (support/reports/rollup.py); None if it could not be read fresh."""
    from support.reports import rollup  # it builds on this module's definitions

    split = rollup.split_range(start, end)
    exact = rollup.exact_percentiles(start, end, now)
    session = await rollup.fresh_session(sessions, ("fact",), split)
    if session is None:
        return None
    by_day = group_by == "day" and not exact  # each day's exact percentiles are kept in the rollup
    days: dict[str | None, Durations] = {}
    live_days: list[tuple[datetime | None, datetime | None]] = []
    # exact percentiles (their own connections) while the counts are read from the rollup
    exact_task = (
        asyncio.ensure_future(_exact_durations(sessions, group_by, range_conditions(start, end), now))
        if exact
        else None
    )
    try:
        async with session:
            counts = await rollup.overview_counts(session, split, start, end, group_by, now)
            hist_cut = "none" if by_day else group_by
            hist = (
                {} if exact else await rollup.overview_histograms(session, split, start, end, hist_cut, now)
            )
            if by_day:
                days, live_days = await rollup.day_durations(session, split, start, end, now)
            keys = {k for k in counts if k}
            names = await agent_names(session, keys) if group_by == "agent" else {}
    except BaseException:
        if exact_task is not None:
            exact_task.cancel()
        raise

    def approx(k: str | None) -> Durations:
        per = hist.get(k)
        if per is None:
            return {}
        return {name: rollup.hist_percentiles(per[i]) for i, name in enumerate(DURATIONS)}

    if exact_task is not None:
        total_durations, durations = await exact_task
    elif by_day:
        total_durations = approx(rollup.TOTAL)
        durations = dict(days)
        for lower, upper in [*split.live, *live_days]:  # partial days, days still changing with ``now``
            if lower is not None:
                durations[lower.date().isoformat()] = {}  # no values left: no percentiles
            durations.update(
                (await _exact_durations(sessions, "day", range_conditions(lower, upper), now))[1]
            )
    else:
        total_durations = approx(rollup.TOTAL)
        durations = {k: approx(k) for k in counts if group_by != "none"}
    if group_by == "none":
        total = counts.get(None) or rollup.total_of([])
        groups = []
    else:
        total = rollup.total_of(counts.values())
        groups = [
            _row(k, group_label(group_by, k, names), counts[k], durations.get(k, {}))
            for k in sorted(counts, key=lambda k: _sort_key(group_by, k))
        ]
    return {
        "from": iso(start),
        "to": iso(end),
        "group_by": group_by,
        "now": iso(now),
        "percentiles": "exact" if exact else "approximate",
        "percentile_error": None if exact else rollup.PERCENTILE_ERROR,
        "total": _row(None, "All conversations", total, total_durations),
        "groups": groups,
    }


async def overview_report(
    sessions: async_sessionmaker[AsyncSession],
    *,
    start: datetime | None,
    end: datetime | None,
    group_by: str = "none",
    now: datetime,
    live: bool = False,
) -> dict[str, Any]:
    """``{"from", "to", "group_by", "now", "percentiles", "percentile_error", "total": Row, "groups": [Row]}``
    for conversations started in ``[start, end)``; ``groups`` is empty for ``group_by=none``.
    ValidationFailed for a bad cut or range. Whole days are read from the daily rollup unless ``live``;
    percentiles are exact for ranges up to 31 days, approximate (relative error at most
    ``percentile_error``) above."""
    check_group_by(group_by)
    check_range(start, end)
    if not live:
        report = await _overview_rollup(sessions, start=start, end=end, group_by=group_by, now=now)
        if report is not None:
            return report
    cond = conditions(now)
    where = range_conditions(start, end)
    groups: list[dict[str, Any]] = []
    async with sessions() as session:
        dialect = session.get_bind().dialect.name
        key = group_key(group_by, dialect)
        if dialect == "postgresql":
            total, total_durations, rows, durations = await _overview_postgres(sessions, key, where, cond)
        else:
            total = (await session.execute(select(*_aggregates(cond)).select_from(FACT).where(*where))).one()
            total_durations = (await _durations(session, dialect, None, where, cond)).get(None, {})
            rows, durations = [], {}
            if key is not None:
                query = (
                    select(key.label("k"), *_aggregates(cond)).select_from(FACT).where(*where).group_by(key)
                )
                rows = list((await session.execute(query)).all())
                durations = await _durations(session, dialect, key, where, cond)
        names = await agent_names(session, {r.k for r in rows if r.k}) if group_by == "agent" else {}
    for r in sorted(rows, key=lambda r: _sort_key(group_by, key_text(r.k))):
        k = key_text(r.k)
        groups.append(_row(k, group_label(group_by, k, names), r, durations.get(r.k, {})))
    return {
        "from": iso(start),
        "to": iso(end),
        "group_by": group_by,
        "now": iso(now),
        "percentiles": "exact",
        "percentile_error": None,
        "total": _row(None, "All conversations", total, total_durations),
        "groups": groups,
    }


# -- handoff reasons --------------------------------------------------------------------------------------


def reason_label(reason: str | None) -> str:
    """A handoff reason code in the words agents read."""
    return "Unknown" if reason is None else REASON_TEXT.get(reason, reason)


async def handoff_reasons_report(
    sessions: async_sessionmaker[AsyncSession],
    *,
    start: datetime | None,
    end: datetime | None,
    group_by: str = "none",
    live: bool = False,
) -> dict[str, Any]:
    """Handed-off conversations (``handoff_count > 0``) counted by their first handoff's reason, in total and
    per group: ``{"from", "to", "group_by", "total": G, "groups": [G]}``, ``G = {"key", "label",
    "conversations", "handed_off", "reasons": [{"reason", "label", "count"}]}`` (most frequent first).
    Whole days are read from the daily rollup unless ``live``."""
    check_group_by(group_by)
    check_range(start, end)
    if not live:
        from support.reports import rollup  # it builds on this module's definitions

        split = rollup.split_range(start, end)
        session = await rollup.fresh_session(sessions, ("fact",), split)
        if session is not None:
            async with session:
                per_group, per_key = await rollup.reasons_counts(session, split, group_by)
                keys = {k for k in per_group if k}
                names = await agent_names(session, keys) if group_by == "agent" else {}
            rolled: list[Any] = [SimpleNamespace(k=k, n=n, h=h) for k, (n, h) in per_group.items()]
            rolled_reasons: list[Any] = [
                SimpleNamespace(k=k, reason=reason, n=n)
                for k, per in per_key.items()
                for reason, n in per.items()
            ]
            return _reasons_report(start, end, group_by, rolled, rolled_reasons, names)
    where = range_conditions(start, end)
    handed = C.handoff_count > 0
    async with sessions() as session:
        dialect = session.get_bind().dialect.name
        key = group_key(group_by, dialect)
        keyed = [key.label("k")] if key is not None else []
        counts = select(*keyed, func.count().label("n"), _count(handed).label("h")).select_from(FACT)
        counts = counts.where(*where)
        reasons = select(*keyed, C.handoff_reason.label("reason"), func.count().label("n")).select_from(FACT)
        reasons = reasons.where(*where, handed)
        if key is not None:
            counts = counts.group_by(key)
            reasons = reasons.group_by(key, C.handoff_reason)
        else:
            reasons = reasons.group_by(C.handoff_reason)
        await tune(session)
        count_rows = (await session.execute(counts)).all()
        reason_rows = (await session.execute(reasons)).all()
        names = {}
        if group_by == "agent":
            names = await agent_names(session, {r.k for r in count_rows if r.k})
    return _reasons_report(start, end, group_by, count_rows, reason_rows, names)


def _reasons_report(
    start: datetime | None,
    end: datetime | None,
    group_by: str,
    count_rows: Sequence[Any],
    reason_rows: Sequence[Any],
    names: dict[str, str],
) -> dict[str, Any]:
    grouped = group_by != "none"

    def group(k: str | None, label: str, n: int, h: int, per_reason: dict[str | None, int]) -> dict[str, Any]:
        ordered = sorted(per_reason.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))
        return {
            "key": k, "label": label, "conversations": n, "handed_off": h,
            "reasons": [{"reason": r, "label": reason_label(r), "count": c} for r, c in ordered],
        }  # fmt: skip

    total_reasons: dict[str | None, int] = {}
    by_key: dict[Any, dict[str | None, int]] = {}
    for r in reason_rows:
        total_reasons[r.reason] = total_reasons.get(r.reason, 0) + int(r.n)
        if grouped:
            by_key.setdefault(r.k, {})[r.reason] = int(r.n)
    total_n = sum(int(r.n) for r in count_rows)
    total_h = sum(int(r.h or 0) for r in count_rows)
    groups = []
    if grouped:
        for r in sorted(count_rows, key=lambda r: _sort_key(group_by, key_text(r.k))):
            k = key_text(r.k)
            label = group_label(group_by, k, names)
            groups.append(group(k, label, int(r.n), int(r.h or 0), by_key.get(r.k, {})))
    return {
        "from": iso(start),
        "to": iso(end),
        "group_by": group_by,
        "total": group(None, "All conversations", total_n, total_h, total_reasons),
        "groups": groups,
    }


# -- the drill-down ---------------------------------------------------------------------------------------

FILTER_COLUMNS = {
    "resolution": "resolution_type",
    "handoff_reason": "handoff_reason",
    "intent": "intent",
    "agent": "agent_id",
    "channel": "channel",
    "policy_version": "policy_version",
}


@dataclass(frozen=True, slots=True)
class DrillDown:
    """Which conversations: the range, equality filters (``__none__``: null), a day or week, ``only``."""

    start: datetime | None = None
    end: datetime | None = None
    filters: tuple[tuple[str, str], ...] = ()  # (resolution|handoff_reason|intent|agent|..., value)
    day: str | None = None
    week: str | None = None
    only: tuple[str, ...] = ()


def _date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValidationFailed(f"`{name}` must be a date YYYY-MM-DD, got {value!r}") from exc


def drill_conditions(spec: DrillDown, now: datetime) -> list[ColumnElement[bool]]:
    """The SQL conditions selecting exactly the conversations a drill-down asks for (ValidationFailed for
    a bad value)."""
    check_range(spec.start, spec.end)
    cond = conditions(now)
    where = range_conditions(spec.start, spec.end)
    for name, value in spec.filters:
        column = C[FILTER_COLUMNS[name]]
        where.append(column.is_(None) if value == NONE_VALUE else column == value)
    if spec.day is not None:
        day = _date(spec.day, "day")
        first = datetime(day.year, day.month, day.day, tzinfo=UTC)
        where += [C.started_at >= first, C.started_at < first + timedelta(days=1)]
    if spec.week is not None:
        monday = _date(spec.week, "week")
        if monday.weekday() != 0:
            raise ValidationFailed("`week` is the week's Monday, YYYY-MM-DD")
        first = datetime(monday.year, monday.month, monday.day, tzinfo=UTC)
        where += [C.started_at >= first, C.started_at < first + timedelta(days=7)]
    for name in spec.only:
        if name not in ONLY:
            raise ValidationFailed(f"only must be one of {' | '.join(ONLY)}")
        where.append(cond[name])
    return where


ROW_COLUMNS = (
    "conversation_id", "channel", "started_at", "resolution_type", "intent", "agent_id", "handoff_reason",
    "rating", "predicted_score", "predicted_reason", "confirmed", "reopened", "resolved_at",
    "bot_first_response_s", "human_first_response_s", "queue_wait_s", "resolution_s", "cost_usd",
    "policy_version",
)  # fmt: skip
FIELDS = (
    "conversation_id", "channel", "started_at", "resolution_type", "bot_resolution", "intent", "intent_label",
    "agent_id", "agent_name", "handoff_reason", "rating", "predicted_score", "predicted_reason", "confirmed",
    "reopened", "resolved_at", "bot_first_response_s", "human_first_response_s", "queue_wait_s",
    "resolution_s", "cost_usd", "policy_version",
)  # fmt: skip


def _row_query(now: datetime) -> Any:
    cond = conditions(now)
    bot_resolution = case(
        (cond["bot_confirmed"], "confirmed"), (cond["bot_assumed"], "assumed"), else_=None
    ).label("bot_resolution")
    return select(*(C[name] for name in ROW_COLUMNS), bot_resolution).select_from(FACT)


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def fact_row(r: Any, names: dict[str, str]) -> dict[str, Any]:
    """One drill-down row (the fields of :data:`FIELDS`)."""
    return {
        "conversation_id": r.conversation_id,
        "channel": r.channel,
        "started_at": iso(r.started_at),
        "resolution_type": r.resolution_type,
        "bot_resolution": r.bot_resolution,
        "intent": r.intent,
        "intent_label": group_label("intent", r.intent, names),
        "agent_id": r.agent_id,
        "agent_name": names.get(r.agent_id) if r.agent_id else None,
        "handoff_reason": r.handoff_reason,
        "rating": r.rating,
        "predicted_score": r.predicted_score,
        "predicted_reason": r.predicted_reason,
        "confirmed": bool(r.confirmed),
        "reopened": bool(r.reopened),
        "resolved_at": iso(r.resolved_at),
        "bot_first_response_s": _seconds(r.bot_first_response_s),
        "human_first_response_s": _seconds(r.human_first_response_s),
        "queue_wait_s": _seconds(r.queue_wait_s),
        "resolution_s": _seconds(r.resolution_s),
        "cost_usd": money(Decimal(r.cost_usd or 0)),
        "policy_version": r.policy_version,
    }


def encode_cursor(started_at: datetime, conversation_id: str) -> str:
    """The keyset position after a row (opaque to clients)."""
    raw = json.dumps([started_at.isoformat(), conversation_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Inverse of :func:`encode_cursor`; ValidationFailed for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, cid = json.loads(raw)
        return utc(datetime.fromisoformat(moment)), str(cid)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationFailed("`cursor` is not a cursor this API returned") from exc


def after_cursor(started_at: datetime, conversation_id: str) -> list[ColumnElement[bool]]:
    """Rows after a keyset position in newest-first order; the plain ``started_at`` bound lets the index
    on ``started_at`` start there (a row comparison alone would not)."""
    return [
        C.started_at <= started_at,
        tuple_(C.started_at, C.conversation_id) < tuple_(started_at, conversation_id),
    ]


async def conversations_page(
    sessions: async_sessionmaker[AsyncSession],
    spec: DrillDown,
    *,
    now: datetime,
    limit: int = DEFAULT_PAGE,
    cursor: str | None = None,
) -> dict[str, Any]:
    """One page of matching conversations, newest first: ``{"conversations": [row], "next_cursor"}``."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be 1..{MAX_PAGE}")
    where = drill_conditions(spec, now)
    if cursor:
        at, cid = decode_cursor(cursor)
        where += after_cursor(at, cid)
    query = (
        _row_query(now).where(*where).order_by(C.started_at.desc(), C.conversation_id.desc()).limit(limit + 1)
    )
    async with sessions() as session:
        rows = (await session.execute(query)).all()
        names = await agent_names(session, {r.agent_id for r in rows if r.agent_id})
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].started_at, rows[-1].conversation_id) if more and rows else None
    return {"conversations": [fact_row(r, names) for r in rows], "next_cursor": next_cursor}


async def all_conversations(
    sessions: async_sessionmaker[AsyncSession], spec: DrillDown, *, now: datetime, chunk: int = 1000
) -> AsyncIterator[dict[str, Any]]:
    """Every matching conversation, newest first, read in keyset chunks (the CSV export streams these)."""
    where = drill_conditions(spec, now)
    async with sessions() as session:
        names = await agent_names(session)
    after: tuple[datetime, str] | None = None
    while True:
        page_where = list(where)
        if after is not None:
            page_where += after_cursor(*after)
        query = (
            _row_query(now)
            .where(*page_where)
            .order_by(C.started_at.desc(), C.conversation_id.desc())
            .limit(chunk)
        )
        async with sessions() as session:
            rows = (await session.execute(query)).all()
        for r in rows:
            yield fact_row(r, names)
        if len(rows) < chunk:
            return
        after = (rows[-1].started_at, rows[-1].conversation_id)


async def conversation_facts(
    sessions: async_sessionmaker[AsyncSession], conversation_id: str, *, now: datetime
) -> dict[str, Any] | None:
    """The drill-down row of one conversation, or None."""
    async with sessions() as session:
        row = (await session.execute(_row_query(now).where(C.conversation_id == conversation_id))).first()
        if row is None:
            return None
        names = await agent_names(session, {row.agent_id} if row.agent_id else set())
    return fact_row(row, names)
