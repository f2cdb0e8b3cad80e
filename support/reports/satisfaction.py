"""The satisfaction (CSAT) report: average, count and 1-5 distribution of ratings, grouped and date-bounded.

Aggregation happens in SQL (``GROUP BY key, score``), so the report costs one query however many ratings
there are; only the five-bucket rows per group come back. Times are UTC; days are UTC days.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from support.db.models import Agent, Rating
from support.errors import ValidationFailed

GroupBy = Literal["resolution", "intent", "agent", "day"]
GROUP_BYS: tuple[str, ...] = get_args(GroupBy)
SCORES = (1, 2, 3, 4, 5)

# The default taxonomy's intents in words; any other configured intent reads as its key in words
# (``refund_request`` -> "Refund request").
INTENT_WORDS: dict[str, str] = {
    "returns_refunds": "Returns and refunds",
    "warranty_repairs": "Warranty and repairs",
    "account_privacy": "Account and privacy",
    "payments_billing": "Payments and billing",
    "product_question": "Product question",
    "other": "Other",
}
RESOLUTION_WORDS: dict[str, str] = {"agent": "Resolved by an agent", "bot": "Resolved by the bot"}
# The group of ratings without a value for the grouping, in words: what the missing value means.
NO_VALUE_WORDS: dict[str, str] = {
    # No customer message before the resolution was triaged (offline answers, the model unavailable,
    # "talk to a person" or "end chat" before the first triage).
    "intent": "Not triaged",
    # No person was assigned in that episode: the bot had it until it was resolved (or the customer ended it).
    "agent": "No agent (the bot)",
}


def intent_words(intent: str) -> str:
    """An intent key as report readers read it."""
    return INTENT_WORDS.get(intent) or intent.replace("_", " ").strip().capitalize() or intent


def group_label(group_by: str, key: str | None, agent_names: dict[str, str]) -> str:
    """The words shown for one group's key."""
    if key is None:
        return NO_VALUE_WORDS.get(group_by, "None")
    if group_by == "intent":
        return intent_words(key)
    if group_by == "resolution":
        return RESOLUTION_WORDS.get(key, key)
    if group_by == "agent":
        return agent_names.get(key, key)
    return key


def as_utc(moment: datetime) -> datetime:
    """Range bounds in UTC; a naive bound is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class SatisfactionGroup:
    """Ratings sharing one key (``None``: ratings without one, e.g. no intent was triaged) and its words."""

    key: str | None
    label: str
    count: int
    average: float | None
    distribution: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SatisfactionReport:
    """The whole range's totals and the per-group rows, groups ordered by key (``None`` last)."""

    group_by: str
    start: datetime | None
    end: datetime | None
    count: int
    average: float | None
    distribution: dict[int, int]
    groups: list[SatisfactionGroup]


def _summary(counts: dict[int, int]) -> tuple[int, float | None, dict[int, int]]:
    distribution = {score: counts.get(score, 0) for score in SCORES}
    total = sum(distribution.values())
    average = round(sum(s * n for s, n in distribution.items()) / total, 3) if total else None
    return total, average, distribution


def _key_column(group_by: str, dialect: str) -> Any:
    if group_by == "resolution":
        return col(Rating.resolution)
    if group_by == "intent":
        return col(Rating.intent)
    if group_by == "agent":
        return col(Rating.agent_id)
    if dialect == "postgresql":
        return func.to_char(Rating.created_at, "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", Rating.created_at)


async def satisfaction_report(
    sessions: async_sessionmaker[AsyncSession],
    *,
    group_by: str = "resolution",
    start: datetime | None = None,
    end: datetime | None = None,
) -> SatisfactionReport:
    """CSAT over ratings with ``start <= created_at < end`` (either bound optional), grouped by ``group_by``.

    Raises ValidationFailed for an unknown ``group_by`` or an empty range.
    """
    if group_by not in GROUP_BYS:
        raise ValidationFailed(f"group_by must be one of {', '.join(GROUP_BYS)}")
    if start is not None and end is not None and as_utc(start) >= as_utc(end):
        raise ValidationFailed("`from` must be before `to`")
    async with sessions() as session:
        dialect = session.get_bind().dialect.name
        key = _key_column(group_by, dialect).label("key")
        query = select(key, col(Rating.score), func.count().label("n")).group_by(key, col(Rating.score))
        if start is not None:
            query = query.where(col(Rating.created_at) >= as_utc(start))
        if end is not None:
            query = query.where(col(Rating.created_at) < as_utc(end))
        rows = (await session.execute(query)).all()
        names: dict[str, str] = {}
        if group_by == "agent":
            ids = {r.key for r in rows if r.key is not None}
            if ids:
                query_names = select(col(Agent.id), col(Agent.name)).where(col(Agent.id).in_(ids))
                names = {str(agent_id): str(name) for agent_id, name in (await session.execute(query_names))}
    per_key: dict[str | None, dict[int, int]] = {}
    overall: dict[int, int] = {}
    for row in rows:
        per_key.setdefault(row.key, {})[row.score] = row.n
        overall[row.score] = overall.get(row.score, 0) + row.n
    groups = []
    for k in sorted(per_key, key=lambda v: (v is None, v or "")):
        count, average, distribution = _summary(per_key[k])
        label = group_label(group_by, k, names)
        groups.append(SatisfactionGroup(k, label, count, average, distribution))
    count, average, distribution = _summary(overall)
    return SatisfactionReport(group_by, start, end, count, average, distribution, groups)
