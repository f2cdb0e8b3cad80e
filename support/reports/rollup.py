"""Daily rollups: what the overview, handoff reasons, usage and operations reports read for whole days.

Tables (migration 0014): ``fact_rollup`` (per UTC day, cut and key: every count and sum of the overview),
``fact_reason_rollup`` (handed-off conversations per first handoff reason), ``fact_hist_rollup`` (per-day
histograms of the four durations in log-spaced buckets, for percentiles over long ranges),
``usage_rollup`` (the ledger per day, purpose and model) and ``activity_rollup`` (which conversations had a
model call or a handoff on a day: the operations report's distinct count).

Freshness does not depend on the writers: database triggers on ``conversation_fact``, ``model_usage`` and
``handoff_record`` mark every day a statement touched in ``rollup_dirty`` (kind ``fact`` or ``usage``, a
version bumped on every mark). :func:`refresh` recomputes each marked day (delete and insert of the day's
rollup rows in one transaction that first locks the mark, then removes it only if nobody re-marked it);
reports call it before they read, the report-facts job after each pass. A range is split by
:func:`split_range` into whole UTC days (read from the rollup) and partial days at either end (read live
with the same aggregates), so totals are exactly the live ones.

*Assumed* resolutions depend on the report's ``now``: the rollup counts assumed *candidates*, and the
report subtracts, live, the candidates whose last bot reply is newer than ``now - 24 h`` (an indexed, small
set). ``resolved`` and the resolution-time histogram take the same correction.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Float,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    union,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from support.db.models import HandoffRecord, ModelUsage
from support.reports.conversations import (
    DURATIONS,
    FACT,
    RESOLUTION_TYPES,
    C,
    conditions,
    day_key,
    group_key,
    key_text,
    percentiles,
    tune,
    utc,
)

metadata = MetaData()  # the tables are created by migration 0014; these are their descriptions for queries
COUNTS = (
    "conversations", "r_bot", "r_handed_off", "r_unanswered", "r_human", "bot_confirmed",
    "assumed_candidates", "person_resolved", "reopened", "handed_off", "rated", "satisfied", "asked",
    "asked_rated", "predicted", "predicted_satisfied", "rating_sum", "predicted_sum",
)  # fmt: skip
USAGE_SUMS = ("calls", "errors", "input_tokens", "cache_write_tokens", "cache_read_tokens", "output_tokens")

DIRTY = Table(
    "rollup_dirty", metadata,
    Column("kind", String(8), primary_key=True), Column("day", Date, primary_key=True),
    Column("version", Integer, nullable=False),
)  # fmt: skip
FACT_ROLLUP = Table(
    "fact_rollup", metadata,
    Column("day", Date), Column("cut", String(16)), Column("key", String(64)),
    *(Column(name, BigInteger) for name in COUNTS), Column("cost_usd", Numeric(24, 10)),
    *(Column(f"{d}_{q}", Float) for d in DURATIONS for q in ("p50", "p90")),
)  # fmt: skip
REASON_ROLLUP = Table(
    "fact_reason_rollup", metadata,
    Column("day", Date), Column("cut", String(16)), Column("key", String(64)), Column("reason", String(32)),
    Column("n", BigInteger),
)  # fmt: skip
HIST_ROLLUP = Table(
    "fact_hist_rollup", metadata,
    Column("day", Date), Column("cut", String(16)), Column("key", String(64)),
    Column("duration", SmallInteger), Column("bucket", Integer), Column("n", BigInteger),
)  # fmt: skip
HIST_MONTH = Table(
    "fact_hist_month", metadata,
    Column("month", Date), Column("cut", String(16)), Column("key", String(64)),
    Column("duration", SmallInteger), Column("bucket", Integer), Column("n", BigInteger),
)  # fmt: skip
HIST_WEEK = Table(
    "fact_hist_week", metadata,
    Column("week", Date), Column("duration", SmallInteger), Column("bucket", Integer),
    Column("n", BigInteger),
)  # fmt: skip
USAGE_ROLLUP = Table(
    "usage_rollup", metadata,
    Column("day", Date), Column("purpose", String(32)), Column("model", String(64)),
    *(Column(name, BigInteger) for name in USAGE_SUMS), Column("cost_usd", Numeric(24, 10)),
)  # fmt: skip
ACTIVITY_ROLLUP = Table(
    "activity_rollup", metadata,
    Column("day", Date, primary_key=True), Column("conversation_id", String(64), primary_key=True),
)  # fmt: skip

USAGE: Any = ModelUsage.__table__  # type: ignore[attr-defined]
U: Any = USAGE.c
HANDOFF: Any = HandoffRecord.__table__  # type: ignore[attr-defined]

# The cuts the fact rollup is kept for (day and week are read from ``none`` by its day).
CUT_COLUMNS: dict[str, str | None] = {
    "none": None, "resolution": "resolution_type", "intent": "intent", "agent": "agent_id",
    "channel": "channel", "policy_version": "policy_version",
}  # fmt: skip
# Histogram buckets: bucket b holds the values in [GAMMA**b, GAMMA**(b+1)); it stands for GAMMA**(b + 1/2),
# within a factor sqrt(GAMMA) of every value in it. Values <= 0 share one bucket that stands for 0.
GAMMA = 1.05
LOG_GAMMA = math.log(GAMMA)
NON_POSITIVE = -1_000_000
PERCENTILE_ERROR = round(math.sqrt(GAMMA) - 1, 4)  # the relative error bound of an approximate percentile
EXACT_PERCENTILE_DAYS = 31  # ranges up to this long get exact percentiles (percentile_cont), read live
MAX_REFRESH_ATTEMPTS = 3


# -- ranges -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Split:
    """A range as whole UTC days ``[first, end)`` (None: open; ``whole`` False: none) and live parts."""

    whole: bool
    first: date | None
    end: date | None
    live: tuple[tuple[datetime | None, datetime | None], ...] = field(default=())


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def split_range(start: datetime | None, end: datetime | None) -> Split:
    """Whole days of ``[start, end)`` and the partial days at either end (read live)."""
    s = utc(start) if start is not None else None
    e = utc(end) if end is not None else None
    first = None if s is None else (s.date() if s == _midnight(s.date()) else s.date() + timedelta(days=1))
    last = None if e is None else e.date()
    if first is not None and last is not None and first >= last:
        return Split(whole=False, first=None, end=None, live=((s, e),))
    live: list[tuple[datetime | None, datetime | None]] = []
    if s is not None and first is not None and s < _midnight(first):
        live.append((s, _midnight(first)))
    if e is not None and last is not None and e > _midnight(last):
        live.append((_midnight(last), e))
    return Split(whole=True, first=first, end=last, live=tuple(live))


def exact_percentiles(start: datetime | None, end: datetime | None, now: datetime) -> bool:
    """Whether a range is short enough for exact percentiles: at most 31 days from its start to its end
    (an open end: to ``now``, when the last conversations started); an open start never is."""
    if start is None:
        return False
    return utc(end if end is not None else now) - utc(start) <= timedelta(EXACT_PERCENTILE_DAYS)


def _days(table: Any, split: Split) -> list[Any]:
    out = []
    if split.first is not None:
        out.append(table.c.day >= split.first)
    if split.end is not None:
        out.append(table.c.day < split.end)
    return out


def _between(column: Any, lower: datetime | None, upper: datetime | None) -> list[Any]:
    out = []
    if lower is not None:
        out.append(column >= lower)
    if upper is not None:
        out.append(column < upper)
    return out


# -- keeping the rollup ------------------------------------------------------------------------------------


def bucket_of(expr: Any) -> Any:
    """The histogram bucket of a duration, in SQL (``ln`` exists on PostgreSQL and SQLite >= 3.35)."""
    return case((expr <= 0, NON_POSITIVE), else_=cast(func.floor(func.ln(expr) / LOG_GAMMA), Integer))


def bucket_value(bucket: int) -> float:
    """The value a bucket stands for."""
    return 0.0 if bucket == NON_POSITIVE else GAMMA ** (bucket + 0.5)


def fact_sums(cond: dict[str, ColumnElement[bool]]) -> list[Any]:
    """The rollup's aggregates over fact rows (none depends on the report's ``now``)."""

    def count(condition: Any) -> Any:
        return func.count().filter(condition)

    return [
        func.count().label("conversations"),
        *(count(C.resolution_type == r).label(f"r_{r}") for r in RESOLUTION_TYPES),
        count(cond["bot_confirmed"]).label("bot_confirmed"),
        count(cond["assumed_candidate"]).label("assumed_candidates"),
        count(cond["person_resolved"]).label("person_resolved"),
        *(count(cond[n]).label(n) for n in ("reopened", "handed_off", "rated", "satisfied", "asked",
                                             "asked_rated", "predicted", "predicted_satisfied")),
        func.coalesce(func.sum(C.rating), 0).label("rating_sum"),
        func.coalesce(func.sum(C.predicted_score).filter(cond["predicted"]), 0).label("predicted_sum"),
        func.coalesce(func.sum(C.cost_usd), 0).label("cost_usd"),
    ]  # fmt: skip


def duration_values(cond: dict[str, ColumnElement[bool]]) -> list[tuple[Any, Any]]:
    """Per duration (in :data:`DURATIONS` order): its column and which rows have a value. Time to
    resolution counts resolved conversations; here every *candidate* counts, the report subtracts the
    not-yet-assumed ones."""
    resolvable = cond["bot_confirmed"] | cond["assumed_candidate"] | cond["person_resolved"]
    return [
        (C.bot_first_response_s, C.bot_first_response_s.is_not(None)),
        (C.human_first_response_s, C.human_first_response_s.is_not(None)),
        (C.queue_wait_s, C.queue_wait_s.is_not(None)),
        (C.resolution_s, C.resolution_s.is_not(None) & resolvable),
    ]


def _cut_key(cut: str) -> Any:
    column = CUT_COLUMNS[cut]
    return None if column is None else C[column]


async def _recompute_facts(session: AsyncSession, day: date) -> None:
    """The day's rollup rows of every cut, from its facts: three INSERT ... SELECT (UNION ALL of the cuts)."""
    cond = conditions(_midnight(day))  # ``now`` is irrelevant to everything the rollup stores
    where = _between(C.started_at, _midnight(day), _midnight(day + timedelta(days=1)))
    for table in (FACT_ROLLUP, REASON_ROLLUP, HIST_ROLLUP):
        await session.execute(delete(table).where(table.c.day == day))
    stamp = [literal(day, Date).label("day")]
    counts, reasons, hists = [], [], []
    for cut in CUT_COLUMNS:
        key = _cut_key(cut)
        keyed = [literal(cut).label("cut"), (key if key is not None else literal(None, String)).label("key")]
        grouped = [key] if key is not None else []
        query = select(*stamp, *keyed, *fact_sums(cond)).select_from(FACT).where(*where)
        counts.append(query.group_by(key) if key is not None else query.having(func.count() > 0))
        reasons.append(
            select(*stamp, *keyed, C.handoff_reason.label("reason"), func.count().label("n"))
            .select_from(FACT)
            .where(*where, C.handoff_count > 0)
            .group_by(*grouped, C.handoff_reason)
        )
        for index, (expr, has) in enumerate(duration_values(cond)):
            bucket = bucket_of(expr)
            hists.append(
                select(*stamp, *keyed, literal(index, SmallInteger).label("duration"), bucket.label("bucket"),
                       func.count().label("n"))
                .select_from(FACT)
                .where(*where, has)
                .group_by(*grouped, bucket)
            )  # fmt: skip
    for table, columns, parts in (
        (FACT_ROLLUP, ["day", "cut", "key", *COUNTS, "cost_usd"], counts),
        (REASON_ROLLUP, ["day", "cut", "key", "reason", "n"], reasons),
        (HIST_ROLLUP, ["day", "cut", "key", "duration", "bucket", "n"], hists),
    ):
        await session.execute(insert(table).from_select(columns, union_all(*parts)))
    exact = await _day_percentiles(session, where, cond)
    await session.execute(
        update(FACT_ROLLUP)
        .where(FACT_ROLLUP.c.day == day, FACT_ROLLUP.c.cut == "none")
        .values(**{f"{name}_{q}": exact[name][q] for name in DURATIONS for q in ("p50", "p90")})
    )
    await _mark(session, "month", day.replace(day=1))
    await _mark(session, "week", _monday(day))


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


async def _recompute_week(session: AsyncSession, week: date) -> None:
    """A week's histograms of cut ``none``, summed from its days' (the overview by week reads these)."""
    await session.execute(delete(HIST_WEEK).where(HIST_WEEK.c.week == week))
    H = HIST_ROLLUP.c
    sums = (
        select(literal(week, Date), H.duration, H.bucket, func.sum(H.n))
        .where(H.cut == "none", H.day >= week, H.day < week + timedelta(days=7))
        .group_by(H.duration, H.bucket)
    )
    await session.execute(insert(HIST_WEEK).from_select(["week", "duration", "bucket", "n"], sums))


async def _day_percentiles(
    session: AsyncSession, where: list[Any], cond: dict[str, ColumnElement[bool]]
) -> dict[str, dict[str, float | None]]:
    """The exact p50/p90 of a day's durations (time to resolution: every candidate counted), computed
    as the live overview computes them: ``percentile_cont`` on PostgreSQL, :func:`percentiles` else."""
    columns = duration_values(cond)
    if session.get_bind().dialect.name == "postgresql":
        wanted: Any = literal_column("ARRAY[0.5, 0.9]")
        query = select(
            *(func.percentile_cont(wanted).within_group(expr).filter(has) for expr, has in columns)
        ).select_from(FACT)
        row = (await session.execute(query.where(*where))).one()
        return {
            name: {q: (None if not v else float(v[i])) for i, q in enumerate(("p50", "p90"))}
            for name, v in zip(DURATIONS, row, strict=True)
        }
    query = select(*(case((has, expr), else_=None) for expr, has in columns)).select_from(FACT).where(*where)
    values: list[list[float]] = [[] for _ in DURATIONS]
    for row in (await session.execute(query)).all():
        for i, v in enumerate(row):
            if v is not None:
                values[i].append(float(v))
    return {name: percentiles(values[i]) for i, name in enumerate(DURATIONS)}


async def _mark(session: AsyncSession, kind: str, day: date) -> None:
    """Mark a day (a month: its first day) dirty, as the triggers do."""
    dialect = session.get_bind().dialect.name
    upsert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(DIRTY)
    await session.execute(
        upsert.values(kind=kind, day=day, version=1).on_conflict_do_update(
            index_elements=["kind", "day"], set_={"version": DIRTY.c.version + 1}
        )
    )


def _next_month(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


async def _recompute_month(session: AsyncSession, month: date) -> None:
    """A month's histograms, summed from its days' (long ranges read whole months from these)."""
    await session.execute(delete(HIST_MONTH).where(HIST_MONTH.c.month == month))
    H = HIST_ROLLUP.c
    sums = (
        select(literal(month, Date), H.cut, H.key, H.duration, H.bucket, func.sum(H.n))
        .where(H.day >= month, H.day < _next_month(month))
        .group_by(H.cut, H.key, H.duration, H.bucket)
    )
    await session.execute(
        insert(HIST_MONTH).from_select(["month", "cut", "key", "duration", "bucket", "n"], sums)
    )


def usage_sums() -> list[Any]:
    """The usage rollup's aggregates over ledger rows."""
    return [
        func.count().label("calls"),
        func.count().filter(U.outcome != "ok").label("errors"),
        func.coalesce(func.sum(U.input_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(U.cache_write_5m_tokens + U.cache_write_1h_tokens), 0).label(
            "cache_write_tokens"
        ),
        func.coalesce(func.sum(U.cache_read_tokens), 0).label("cache_read_tokens"),
        func.coalesce(func.sum(U.output_tokens), 0).label("output_tokens"),
        func.coalesce(func.sum(U.cost_usd), 0).label("cost_usd"),
    ]


def _activity(lower: datetime | None, upper: datetime | None) -> Any:
    """Conversations with a model call or a handoff in ``[lower, upper)`` (the operations report's)."""
    return union(
        select(U.conversation_id.label("cid")).where(
            *_between(U.created_at, lower, upper), U.conversation_id.is_not(None)
        ),
        select(HANDOFF.c.conversation_id.label("cid")).where(*_between(HANDOFF.c.queued_at, lower, upper)),
    )


async def _recompute_usage(session: AsyncSession, day: date) -> None:
    lower, upper = _midnight(day), _midnight(day + timedelta(days=1))
    for table in (USAGE_ROLLUP, ACTIVITY_ROLLUP):
        await session.execute(delete(table).where(table.c.day == day))
    stamp = literal(day, Date).label("day")
    sums = (
        select(stamp, U.purpose, U.model, *usage_sums())
        .where(*_between(U.created_at, lower, upper))
        .group_by(U.purpose, U.model)
    )
    await session.execute(
        insert(USAGE_ROLLUP).from_select(["day", "purpose", "model", *USAGE_SUMS, "cost_usd"], sums)
    )
    seen = _activity(lower, upper).subquery()
    await session.execute(
        insert(ACTIVITY_ROLLUP).from_select(["day", "conversation_id"], select(stamp, seen.c.cid))
    )


RECOMPUTE = {
    "fact": _recompute_facts, "usage": _recompute_usage, "month": _recompute_month, "week": _recompute_week,
}  # fmt: skip
PERIODS = ("month", "week")  # recomputed from the days, after them


def _kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    """The kinds a refresh covers: the fact days' month and week histograms come with them."""
    kinds = tuple(kinds)
    return (*kinds, *(p for p in PERIODS if p not in kinds)) if "fact" in kinds else kinds


async def refresh(
    sessions: async_sessionmaker[AsyncSession], kinds: Iterable[str] = ("fact", "usage")
) -> int:
    """Recompute every day marked dirty (of the given kinds); returns how many days were recomputed.

    Each day is one transaction: it first touches the day's mark (a row lock on PostgreSQL, the write lock
    on SQLite), so two refreshes of one day run one after the other and the second finds the mark gone;
    the mark is removed only if its version is still the one read, so a write that re-marked the day
    while it was recomputed leaves it marked."""
    done = 0
    # months after days: recomputing a fact day marks its month
    for phase in ([k for k in _kinds(kinds) if k not in PERIODS], [k for k in _kinds(kinds) if k in PERIODS]):
        if phase:
            done += await _refresh_kinds(sessions, phase)
    return done


async def _refresh_kinds(sessions: async_sessionmaker[AsyncSession], kinds: Sequence[str]) -> int:
    async with sessions() as session:
        marks = (
            await session.execute(select(DIRTY.c.kind, DIRTY.c.day).where(DIRTY.c.kind.in_(kinds)))
        ).all()
    done = 0
    for kind, day in sorted(marks, key=lambda m: (m.day, m.kind)):
        mark = (DIRTY.c.kind == kind) & (DIRTY.c.day == day)
        async with sessions() as session, session.begin():
            touched = await session.execute(update(DIRTY).where(mark).values(version=DIRTY.c.version))
            if not getattr(touched, "rowcount", 0):
                continue  # another refresh did it
            version = (await session.execute(select(DIRTY.c.version).where(mark))).scalar_one()
            await tune(session)
            await RECOMPUTE[kind](session, day)
            await session.execute(delete(DIRTY).where(mark, DIRTY.c.version == version))
            done += 1
    return done


async def fresh_session(
    sessions: async_sessionmaker[AsyncSession], kinds: Sequence[str], split: Split
) -> AsyncSession | None:
    """A session (the caller closes it) whose snapshot has no dirty day of ``kinds`` in the split's whole
    days, after refreshing them; None if writers kept re-marking them (then the caller reads live)."""
    for _ in range(MAX_REFRESH_ATTEMPTS):
        await refresh(sessions, kinds)
        session = sessions()
        try:
            if session.get_bind().dialect.name == "postgresql":
                # one snapshot for the rollup and the live parts, so a fact written meanwhile is in neither
                await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            await tune(session)
            marked = and_(DIRTY.c.kind.in_(kinds), *_days(DIRTY, split))
            if "fact" in kinds:
                marked = or_(marked, DIRTY.c.kind.in_(PERIODS))  # few: any month or week counts
            dirty = select(func.count()).select_from(DIRTY).where(marked)
            if not (await session.execute(dirty)).scalar_one():
                return session
        except BaseException:
            await session.close()
            raise
        await session.close()
    return None


# -- reading: the overview and handoff reasons -------------------------------------------------------------


def _week_of(day: Any, dialect: str) -> Any:
    """The Monday of a ``date`` column's ISO week, as a date (PostgreSQL: date arithmetic, no time zone)."""
    if dialect == "postgresql":
        return day - (cast(func.extract("isodow", day), Integer) - 1)
    return day_key(day, dialect, "week")


def _rollup_key(group_by: str, dialect: str, table: Any) -> tuple[str, Any]:
    """The rollup cut a report's ``group_by`` reads and the key expression over ``table``."""
    if group_by == "day":
        return "none", table.c.day
    if group_by == "week":
        return "none", _week_of(table.c.day, dialect)
    if group_by == "none":
        return "none", None
    return group_by, table.c.key


def _keyed(key: Any) -> list[Any]:
    return [key.label("k")] if key is not None else []


def _add(into: dict[str, Any], row: Any, names: Sequence[str], sign: int = 1) -> None:
    for name in names:
        value = getattr(row, name)
        if value is None:
            continue
        into[name] = into.get(name, 0) + sign * (Decimal(value) if name == "cost_usd" else int(value))


async def overview_counts(
    session: AsyncSession, split: Split, start: datetime | None, end: datetime | None, group_by: str,
    now: datetime,
) -> dict[str | None, SimpleNamespace]:  # fmt: skip
    """Per group key (as text; None: no key / the total when ``group_by`` is none) the overview's counts,
    exactly as the live aggregates count them."""
    dialect = session.get_bind().dialect.name
    cond = conditions(now)
    names = (*COUNTS, "cost_usd")
    sums: dict[str | None, dict[str, Any]] = {}
    if split.whole:
        cut, key = _rollup_key(group_by, dialect, FACT_ROLLUP)
        query = select(*_keyed(key), *(func.sum(FACT_ROLLUP.c[n]).label(n) for n in names)).where(
            FACT_ROLLUP.c.cut == cut, *_days(FACT_ROLLUP, split)
        )
        query = query.group_by(key) if key is not None else query.having(func.count() > 0)
        for r in (await session.execute(query)).all():
            _add(sums.setdefault(key_text(r.k) if key is not None else None, {}), r, names)
    live_key = group_key(group_by, dialect)
    for lower, upper in split.live:
        query = (
            select(*_keyed(live_key), *fact_sums(cond))
            .select_from(FACT)
            .where(*_between(C.started_at, lower, upper))
        )
        query = query.group_by(live_key) if live_key is not None else query.having(func.count() > 0)
        for r in (await session.execute(query)).all():
            _add(sums.setdefault(key_text(r.k) if live_key is not None else None, {}), r, names)
    recent = select(*_keyed(live_key), func.count().label("n")).select_from(FACT)
    recent = recent.where(
        *_between(C.started_at, start and utc(start), end and utc(end)), cond["not_yet_assumed"]
    )
    recent = recent.group_by(live_key) if live_key is not None else recent
    pending = {
        (key_text(r.k) if live_key is not None else None): int(r.n)
        for r in (await session.execute(recent)).all()
    }
    out = {}
    for k, s in sums.items():
        assumed = s.get("assumed_candidates", 0) - pending.get(k, 0)
        confirmed = s.get("bot_confirmed", 0)
        out[k] = SimpleNamespace(
            **{n: s.get(n, 0) for n in names},
            bot_assumed=assumed,
            resolved=confirmed + assumed + s.get("person_resolved", 0),
            cost=s.get("cost_usd", Decimal(0)),
        )
    return out


def total_of(groups: Iterable[SimpleNamespace]) -> SimpleNamespace:
    """The sum of groups (every fact is in exactly one group of a cut)."""
    total: dict[str, Any] = {}
    for g in groups:
        for name, value in vars(g).items():
            total[name] = total.get(name, 0) + value
    if not total:
        total = dict.fromkeys((*COUNTS, "bot_assumed", "resolved"), 0) | {
            "cost": Decimal(0),
            "cost_usd": Decimal(0),
        }
    return SimpleNamespace(**total)


Histograms = dict[str | None, list[dict[int, int]]]
TOTAL = "\x00total"  # the histograms' key of the total (None is a group: no intent, no agent...)


async def overview_histograms(
    session: AsyncSession, split: Split, start: datetime | None, end: datetime | None, group_by: str,
    now: datetime,
) -> Histograms:  # fmt: skip
    """Per group key, the four durations' histograms over the range (rollup + live parts - not yet
    assumed); the key :data:`TOTAL` holds the total."""
    dialect = session.get_bind().dialect.name
    cond = conditions(now)
    hist: Histograms = {}

    def add(k: str | None, duration: int, bucket: int, n: int) -> None:
        for target in {k, TOTAL}:
            counts = hist.setdefault(target, [{} for _ in DURATIONS])[duration]
            counts[bucket] = counts.get(bucket, 0) + n

    if split.whole:
        cut, key = _rollup_key(group_by, dialect, HIST_ROLLUP)
        months, days = _months(split) if group_by not in ("day", "week") else (None, [split])
        if group_by == "week":
            weeks, days = _weeks(split)
            if weeks is not None:
                W = HIST_WEEK.c
                weekly: Any = select(W.week.label("k"), W.duration, W.bucket, W.n.label("n"))
                weekly = weekly.where(*([W.week >= weeks[0]] if weeks[0] is not None else []))
                weekly = weekly.where(*([W.week < weeks[1]] if weeks[1] is not None else []))
                for w in (await session.execute(weekly)).all():
                    add(key_text(w.k), int(w.duration), int(w.bucket), int(w.n))
        parts: list[Any] = []
        H = HIST_ROLLUP.c
        for part in days:
            query = select(*_keyed(key), H.duration, H.bucket, func.sum(H.n).label("n"))
            parts.append(query.where(H.cut == cut, *_days(HIST_ROLLUP, part)))
        if months is not None:
            M = HIST_MONTH.c
            month_first, month_end = months
            query = select(
                *_keyed(M.key if key is not None else None), M.duration, M.bucket, func.sum(M.n).label("n")
            )
            where = [M.cut == cut]
            where += [M.month >= month_first] if month_first is not None else []
            where += [M.month < month_end] if month_end is not None else []
            parts.append(query.where(*where))
        for query in parts:
            grouped_by = list(query.selected_columns)[:-1]
            for r in (await session.execute(query.group_by(*grouped_by))).all():
                add(key_text(r.k) if key is not None else None, int(r.duration), int(r.bucket), int(r.n))
    live_key = group_key(group_by, dialect)
    grouped = [live_key] if live_key is not None else []
    for lower, upper in split.live:
        for index, (expr, has) in enumerate(duration_values(cond)):
            bucket = bucket_of(expr)
            query = (
                select(*_keyed(live_key), bucket.label("b"), func.count().label("n"))
                .select_from(FACT)
                .where(*_between(C.started_at, lower, upper), has)
                .group_by(*grouped, bucket)
            )
            for r in (await session.execute(query)).all():
                add(key_text(r.k) if live_key is not None else None, index, int(r.b), int(r.n))
    bucket = bucket_of(C.resolution_s)
    recent = (
        select(*_keyed(live_key), bucket.label("b"), func.count().label("n"))
        .select_from(FACT)
        .where(
            *_between(C.started_at, start and utc(start), end and utc(end)),
            cond["not_yet_assumed"],
            C.resolution_s.is_not(None),
        )
        .group_by(*grouped, bucket)
    )
    for r in (await session.execute(recent)).all():
        add(
            key_text(r.k) if live_key is not None else None,
            DURATIONS.index("resolution_s"),
            int(r.b),
            -int(r.n),
        )
    return hist


def _months(split: Split) -> tuple[tuple[date | None, date | None] | None, list[Split]]:
    """The whole months ``[first, end)`` inside a split's whole days (None: none) and the whole days
    outside them (read day by day)."""
    first = split.first if split.first is None or split.first.day == 1 else _next_month(split.first)
    end = split.end.replace(day=1) if split.end is not None else None
    if first is not None and end is not None and first >= end:
        return None, [split]
    days = []
    if split.first is not None and first is not None and split.first < first:
        days.append(Split(whole=True, first=split.first, end=first))
    if split.end is not None and end is not None and end < split.end:
        days.append(Split(whole=True, first=end, end=split.end))
    return (first, end), days


def _weeks(split: Split) -> tuple[tuple[date | None, date | None] | None, list[Split]]:
    """The whole ISO weeks ``[first, end)`` (their Mondays) inside a split's whole days (None: none) and
    the whole days outside them."""
    first = (
        split.first
        if split.first is None or split.first.weekday() == 0
        else _monday(split.first) + timedelta(7)
    )
    end = _monday(split.end) if split.end is not None else None
    if first is not None and end is not None and first >= end:
        return None, [split]
    days = []
    if split.first is not None and first is not None and split.first < first:
        days.append(Split(whole=True, first=split.first, end=first))
    if split.end is not None and end is not None and end < split.end:
        days.append(Split(whole=True, first=end, end=split.end))
    return (first, end), days


async def day_durations(
    session: AsyncSession, split: Split, start: datetime | None, end: datetime | None, now: datetime
) -> tuple[
    dict[str | None, dict[str, dict[str, float | None]]], list[tuple[datetime | None, datetime | None]]
]:
    """Exact per-day percentiles of whole days from the rollup, and the ranges to compute live: the days
    with not-yet-assumed candidates (their time to resolution depends on ``now``)."""
    out: dict[str | None, dict[str, dict[str, float | None]]] = {}
    if split.whole:
        R = FACT_ROLLUP.c
        names = [f"{d}_{q}" for d in DURATIONS for q in ("p50", "p90")]
        query = select(R.day, *(R[n] for n in names)).where(R.cut == "none", *_days(FACT_ROLLUP, split))
        for r in (await session.execute(query)).all():
            out[str(key_text(r.day))] = {
                d: {
                    q: (None if (v := getattr(r, f"{d}_{q}")) is None else round(float(v), 3))
                    for q in ("p50", "p90")
                }
                for d in DURATIONS
            }
    cond = conditions(now)
    day = day_key(C.started_at, session.get_bind().dialect.name)
    pending = select(day.label("k")).select_from(FACT).distinct()
    pending = pending.where(
        *_between(C.started_at, start and utc(start), end and utc(end)), cond["not_yet_assumed"]
    )
    live: list[tuple[datetime | None, datetime | None]] = []
    for r in (await session.execute(pending)).all():
        first = _midnight(date.fromisoformat(str(key_text(r.k))))
        live.append(
            (
                max(first, utc(start)) if start else first,
                min(first + timedelta(days=1), utc(end)) if end else first + timedelta(days=1),
            )
        )
    return out, live


def hist_percentiles(counts: dict[int, int]) -> dict[str, float | None]:
    """p50/p90 of a histogram the way ``percentile_cont`` interpolates, each value its bucket's
    representative: within a factor ``sqrt(GAMMA)`` of the exact percentile."""
    items = sorted((b, n) for b, n in counts.items() if n > 0)
    total = sum(n for _, n in items)
    if not total:
        return {"p50": None, "p90": None}

    def at(rank: int) -> float:
        seen = 0
        for b, n in items:
            seen += n
            if rank < seen:
                return bucket_value(b)
        return bucket_value(items[-1][0])

    out: dict[str, float | None] = {}
    for name, q in (("p50", 0.5), ("p90", 0.9)):
        position = q * (total - 1)
        lower = math.floor(position)
        value = at(lower)
        if position > lower:
            value += (position - lower) * (at(lower + 1) - value)
        out[name] = round(value, 3)
    return out


async def reasons_counts(
    session: AsyncSession, split: Split, group_by: str
) -> tuple[dict[str | None, tuple[int, int]], dict[str | None, dict[str | None, int]]]:
    """Per group key: (conversations, handed off), and per key and first handoff reason the count."""
    dialect = session.get_bind().dialect.name
    counts: dict[str | None, list[int]] = {}
    reasons: dict[str | None, dict[str | None, int]] = {}

    def add_reason(k: str | None, reason: str | None, n: int) -> None:
        per = reasons.setdefault(k, {})
        per[reason] = per.get(reason, 0) + n

    def add_count(k: str | None, n: int, h: int) -> None:
        pair = counts.setdefault(k, [0, 0])
        pair[0] += n
        pair[1] += h

    if split.whole:
        cut, key = _rollup_key(group_by, dialect, FACT_ROLLUP)
        R = FACT_ROLLUP.c
        query = select(*_keyed(key), func.sum(R.conversations).label("n"), func.sum(R.handed_off).label("h"))
        query = query.where(R.cut == cut, *_days(FACT_ROLLUP, split))
        query = query.group_by(key) if key is not None else query.having(func.count() > 0)
        for r in (await session.execute(query)).all():
            add_count(key_text(r.k) if key is not None else None, int(r.n), int(r.h))
        cut, key = _rollup_key(group_by, dialect, REASON_ROLLUP)
        Q = REASON_ROLLUP.c
        query = select(*_keyed(key), Q.reason, func.sum(Q.n).label("n")).where(
            Q.cut == cut, *_days(REASON_ROLLUP, split)
        )
        query = query.group_by(*([key] if key is not None else []), Q.reason)
        for r in (await session.execute(query)).all():
            add_reason(key_text(r.k) if key is not None else None, r.reason, int(r.n))
    live_key = group_key(group_by, dialect)
    grouped = [live_key] if live_key is not None else []
    for lower, upper in split.live:
        where = _between(C.started_at, lower, upper)
        query = select(
            *_keyed(live_key), func.count().label("n"), func.count().filter(C.handoff_count > 0).label("h")
        )
        query = query.select_from(FACT).where(*where)
        query = query.group_by(live_key) if live_key is not None else query.having(func.count() > 0)
        for r in (await session.execute(query)).all():
            add_count(key_text(r.k) if live_key is not None else None, int(r.n), int(r.h))
        query = select(*_keyed(live_key), C.handoff_reason, func.count().label("n")).select_from(FACT)
        query = query.where(*where, C.handoff_count > 0).group_by(*grouped, C.handoff_reason)
        for r in (await session.execute(query)).all():
            add_reason(key_text(r.k) if live_key is not None else None, r.handoff_reason, int(r.n))
    return {k: (v[0], v[1]) for k, v in counts.items()}, reasons


# -- reading: the ledger -----------------------------------------------------------------------------------


async def usage_days(session: AsyncSession, split: Split) -> list[SimpleNamespace]:
    """The ledger's sums per (day as text, purpose, model) over the range: rollup + live parts."""
    dialect = session.get_bind().dialect.name
    names = (*USAGE_SUMS, "cost_usd")
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    if split.whole:
        R = USAGE_ROLLUP.c
        query = select(R.day.label("k"), R.purpose, R.model, *(R[n].label(n) for n in names)).where(
            *_days(USAGE_ROLLUP, split)
        )
        for r in (await session.execute(query)).all():
            _add(rows.setdefault((str(key_text(r.k)), r.purpose, r.model), {}), r, names)
    day = day_key(U.created_at, dialect)
    for lower, upper in split.live:
        query = (
            select(day.label("k"), U.purpose, U.model, *usage_sums())
            .where(*_between(U.created_at, lower, upper))
            .group_by(day, U.purpose, U.model)
        )
        for r in (await session.execute(query)).all():
            _add(rows.setdefault((str(key_text(r.k)), r.purpose, r.model), {}), r, names)
    return [
        SimpleNamespace(day=d, purpose=p, model=m, **{n: s.get(n, 0) for n in names})
        for (d, p, m), s in sorted(rows.items())
    ]


async def activity(session: AsyncSession, split: Split) -> tuple[int, dict[str, int]]:
    """Conversations with a model call or a handoff in the range (distinct), and per day. Whole days'
    rows are distinct per day already: they are counted per day with no sort, and the total is a hashed
    ``GROUP BY`` (PostgreSQL's ``count(DISTINCT)`` always sorts)."""
    dialect = session.get_bind().dialect.name
    cids = []
    per_day: dict[str, int] = {}
    if split.whole:
        A = ACTIVITY_ROLLUP.c
        cids.append(select(A.conversation_id.label("cid")).where(*_days(ACTIVITY_ROLLUP, split)))
        daily = select(A.day, func.count()).where(*_days(ACTIVITY_ROLLUP, split)).group_by(A.day)
        per_day.update({str(key_text(d)): int(n) for d, n in (await session.execute(daily)).all()})
    for lower, upper in split.live:
        seen = _activity(lower, upper).subquery()
        cids.append(select(seen.c.cid))
        day_of = [
            select(day_key(U.created_at, dialect).label("day"), U.conversation_id.label("cid")).where(
                *_between(U.created_at, lower, upper), U.conversation_id.is_not(None)
            ),
            select(
                day_key(HANDOFF.c.queued_at, dialect).label("day"), HANDOFF.c.conversation_id.label("cid")
            ).where(*_between(HANDOFF.c.queued_at, lower, upper)),
        ]
        days = union(*day_of).subquery()
        daily = select(days.c.day, func.count()).group_by(days.c.day)
        per_day.update({str(key_text(d)): int(n) for d, n in (await session.execute(daily)).all()})
    if not cids:
        return 0, per_day
    every = union_all(*cids).subquery() if len(cids) > 1 else cids[0].subquery()
    distinct = select(every.c.cid).group_by(every.c.cid).subquery()
    total = (await session.execute(select(func.count()).select_from(distinct))).scalar_one()
    return int(total or 0), per_day


def as_row(values: dict[str, Any]) -> SimpleNamespace:
    """Usage sums as the row :func:`support.reports.usage._usage_row` reads."""
    return SimpleNamespace(cost=values.get("cost_usd", Decimal(0)), **values)


def sum_usage(rows: Iterable[SimpleNamespace]) -> dict[str, Any]:
    """Summed usage rows, with the answer calls' input and cache reads (the cache hit ratio's)."""
    out: dict[str, Any] = dict.fromkeys(USAGE_SUMS, 0) | {
        "cost_usd": Decimal(0),
        "answer_in": 0,
        "answer_read": 0,
    }
    for r in rows:
        for n in USAGE_SUMS:
            out[n] += int(getattr(r, n))
        out["cost_usd"] += Decimal(r.cost_usd)
        if r.purpose == "answer":
            out["answer_in"] += int(r.input_tokens) + int(r.cache_write_tokens) + int(r.cache_read_tokens)
            out["answer_read"] += int(r.cache_read_tokens)
    return out
