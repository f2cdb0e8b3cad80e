"""The operations report: what the service did and cost, and how handoffs went, over a date range.

From the SQL ledger (``model_usage``: every model call with tokens, cost, latency, TTFT, outcome) and the
handoff trail (``handoff_record``). Sums and counts are SQL aggregates; percentiles (TTFT, latency, wait
times) are computed here over the range's values, because SQLite has no percentile function.
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, select, union
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from support.db.models import ConversationFact, HandoffRecord, ModelUsage
from support.reports import rollup
from support.reports.conversations import tune


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def money(amount: Decimal) -> str:
    """Exact dollars without trailing zeros (``0.0405``, never ``4.05E-2``)."""
    return format(amount.normalize(), "f") if amount else "0"


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1, inclusive method), or None without values."""
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    index = min(98, max(0, round(q * 100) - 1))
    return round(cuts[index], 3)


@dataclass
class OperationsReport:
    """Totals for the range, per purpose/model rows, handoff figures and a per-day series."""

    start: datetime | None
    end: datetime | None
    conversations: int = 0
    customer_turns: int = 0
    model_calls: int = 0
    model_errors: int = 0
    cost_usd: Decimal = Decimal(0)
    cost_per_conversation_usd: Decimal | None = None
    cache_hit_ratio: float | None = None
    answer_ttft_ms_p50: float | None = None
    answer_ttft_ms_p95: float | None = None
    by_model: list[dict[str, Any]] = field(default_factory=list)
    handoffs: int = 0
    # Conversations started in the range (conversation_fact), and those of them that were handed off: the
    # handoff rate's denominator and numerator, one population (docs/metrics.md).
    started_conversations: int = 0
    handed_off_conversations: int = 0
    handoff_rate: float | None = None
    handoff_reasons: dict[str, int] = field(default_factory=dict)
    handoff_outcomes: dict[str, int] = field(default_factory=dict)
    claim_wait_s_p50: float | None = None
    claim_wait_s_p90: float | None = None
    first_response_s_p50: float | None = None
    days: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """As the API returns it (money as strings: exact decimals)."""
        data = {k: v for k, v in vars(self).items() if k not in ("start", "end")}
        data["from"] = self.start.isoformat() if self.start else None
        data["to"] = self.end.isoformat() if self.end else None
        data["cost_usd"] = money(self.cost_usd)
        if self.cost_per_conversation_usd is not None:
            data["cost_per_conversation_usd"] = money(self.cost_per_conversation_usd)
        data["by_model"] = [{**row, "cost_usd": money(row["cost_usd"])} for row in self.by_model]
        data["days"] = [{**row, "cost_usd": money(row["cost_usd"])} for row in self.days]
        return data


def _from_days(days: list[Any]) -> tuple[list[Any], list[Any]]:
    """The by-model rows and the per-day cost, as the live queries return them, from the usage rollup."""
    per_model: dict[tuple[str, str], list[Any]] = {}
    per_day: dict[str, Decimal] = {}
    for d in days:
        per_model.setdefault((d.purpose, d.model), []).append(d)
        per_day[d.day] = per_day.get(d.day, Decimal(0)) + Decimal(d.cost_usd)
    rows = []
    for (purpose, model), group in sorted(per_model.items()):
        s = rollup.sum_usage(group)
        rows.append((purpose, model, s["calls"], s["input_tokens"], s["cache_write_tokens"],
                     s["cache_read_tokens"], s["output_tokens"], s["cost_usd"], s["errors"]))  # fmt: skip
    return rows, sorted(per_day.items())


async def _live_sums(
    session: AsyncSession, usage_range: list[Any], handoff_range: list[Any]
) -> tuple[list[Any], int, list[Any], list[Any]]:
    """The by-model rows, the distinct conversations (in total and per day) and the per-day cost, live."""
    rows = (
        await session.execute(
            select(
                col(ModelUsage.purpose), col(ModelUsage.model), func.count(),
                func.sum(col(ModelUsage.input_tokens)),
                func.sum(col(ModelUsage.cache_write_5m_tokens) + col(ModelUsage.cache_write_1h_tokens)),
                func.sum(col(ModelUsage.cache_read_tokens)), func.sum(col(ModelUsage.output_tokens)),
                func.sum(col(ModelUsage.cost_usd)),
                func.sum(case((col(ModelUsage.outcome) != "ok", 1), else_=0)),
            )
            .where(*usage_range)
            .group_by(col(ModelUsage.purpose), col(ModelUsage.model))
            .order_by(col(ModelUsage.purpose), col(ModelUsage.model))
        )
    ).all()  # fmt: skip
    seen = union(
        select(
            func.date(col(ModelUsage.created_at)).label("day"),
            col(ModelUsage.conversation_id).label("cid"),
        ).where(*usage_range, col(ModelUsage.conversation_id).is_not(None)),
        select(
            func.date(col(HandoffRecord.queued_at)).label("day"),
            col(HandoffRecord.conversation_id).label("cid"),
        ).where(*handoff_range),
    ).subquery()
    conversations = (await session.execute(select(func.count(func.distinct(seen.c.cid))))).scalar_one()
    conversations_per_day = (
        await session.execute(select(seen.c.day, func.count(func.distinct(seen.c.cid))).group_by(seen.c.day))
    ).all()
    day = func.date(col(ModelUsage.created_at))
    daily = (
        await session.execute(
            select(day, func.sum(col(ModelUsage.cost_usd))).where(*usage_range).group_by(day).order_by(day)
        )
    ).all()
    return list(rows), int(conversations), list(conversations_per_day), list(daily)


async def operations_report(
    sessions: async_sessionmaker[AsyncSession],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    live: bool = False,
) -> OperationsReport:
    """The report for ``[start, end)`` (either open). The ledger's sums and the distinct conversations of
    whole days are read from the daily rollup unless ``live``."""
    start, end = _utc(start), _utc(end)
    report = OperationsReport(start=start, end=end)

    def in_range(column: Any) -> list[Any]:
        conditions = []
        if start is not None:
            conditions.append(column >= start)
        if end is not None:
            conditions.append(column < end)
        return conditions

    usage_range = in_range(col(ModelUsage.created_at))
    # A conversation counts if it used the model or was handed off in the range: a handoff with no
    # model call (the model API offline, a "talk to a person" before any answer) is a conversation
    # too, so every handed-off conversation is in the denominator of the handoff rate.
    handoff_range = in_range(col(HandoffRecord.queued_at))
    fresh = None
    if not live:
        split = rollup.split_range(start, end)
        fresh = await rollup.fresh_session(sessions, ("usage", "fact"), split)
    if fresh is not None:
        async with fresh:
            rows, daily = _from_days(await rollup.usage_days(fresh, split))
            conversations, per_day = await rollup.activity(fresh, split)
            started, handed_off = (await rollup.reasons_counts(fresh, split, "none"))[0].get(None, (0, 0))
        conversations_per_day: list[Any] = sorted(per_day.items())
    async with sessions() as session:
        await tune(session)
        if fresh is None:
            rows, conversations, conversations_per_day, daily = await _live_sums(
                session, usage_range, handoff_range
            )
        answered = [*usage_range, col(ModelUsage.purpose) == "answer", col(ModelUsage.ttft_ms).is_not(None)]
        ttfts: list[Any] = []
        if session.get_bind().dialect.name == "postgresql":
            # The same inclusive percentiles, sorted in the database: no need to fetch every answer's TTFT.
            ttft = col(ModelUsage.ttft_ms)
            p50, p95 = (
                await session.execute(
                    select(
                        func.percentile_cont(0.5).within_group(ttft),
                        func.percentile_cont(0.95).within_group(ttft),
                    ).where(*answered)
                )
            ).one()
            ttft_sql = (
                None if p50 is None else round(float(p50), 3),
                None if p95 is None else round(float(p95), 3),
            )
        else:
            ttfts = list((await session.execute(select(col(ModelUsage.ttft_ms)).where(*answered))).scalars())
            ttft_sql = None
        records = (await session.execute(select(HandoffRecord).where(*handoff_range))).scalars().all()
        if fresh is None:
            fact_range = in_range(col(ConversationFact.started_at))
            started, handed_off = (
                await session.execute(
                    select(
                        func.count(), func.sum(case((col(ConversationFact.handoff_count) > 0, 1), else_=0))
                    )
                    .select_from(ConversationFact)
                    .where(*fact_range)
                )
            ).one()

    input_total = read_total = 0
    for purpose, model, calls, inp, write, read, out, cost, errors in rows:
        inp, write, read, out = int(inp or 0), int(write or 0), int(read or 0), int(out or 0)
        cost = Decimal(cost or 0)
        report.model_calls += int(calls)
        report.model_errors += int(errors or 0)
        report.cost_usd += cost
        if purpose == "triage":
            report.customer_turns += int(calls)
        if purpose == "answer":
            input_total += inp + write + read
            read_total += read
        report.by_model.append(
            {
                "purpose": purpose, "model": model, "calls": int(calls), "errors": int(errors or 0),
                "input_tokens": inp, "cache_write_tokens": write, "cache_read_tokens": read,
                "output_tokens": out, "cost_usd": cost,
            }
        )  # fmt: skip
    report.conversations = int(conversations)
    if report.conversations:
        report.cost_per_conversation_usd = (report.cost_usd / report.conversations).quantize(
            Decimal("0.000001")
        )
    if input_total:
        report.cache_hit_ratio = round(read_total / input_total, 4)
    if ttft_sql is not None:
        report.answer_ttft_ms_p50, report.answer_ttft_ms_p95 = ttft_sql
    else:
        values = [float(v) for v in ttfts if v is not None]
        report.answer_ttft_ms_p50 = percentile(values, 0.5)
        report.answer_ttft_ms_p95 = percentile(values, 0.95)

    report.handoffs = len(records)
    # The rate counts conversations of one population: those started in the range (conversation_fact),
    # and which of them were handed off (docs/metrics.md). Before the facts of the range exist (a fresh
    # install, before their first refresh) it falls back to the handoff trail: conversations handed off in
    # the range / conversations with a model call or a handoff in it.
    report.started_conversations = int(started or 0)
    report.handed_off_conversations = int(handed_off or 0)
    if report.started_conversations:
        report.handoff_rate = round(report.handed_off_conversations / report.started_conversations, 4)
    elif report.conversations:
        report.handoff_rate = round(len({r.conversation_id for r in records}) / report.conversations, 4)
    waits, firsts = [], []
    for r in records:
        report.handoff_reasons[r.reason] = report.handoff_reasons.get(r.reason, 0) + 1
        outcome = r.outcome or "open"
        report.handoff_outcomes[outcome] = report.handoff_outcomes.get(outcome, 0) + 1
        queued = _utc(r.queued_at)
        claimed, first = _utc(r.claimed_at), _utc(r.first_response_at)
        if queued is not None and claimed is not None:
            waits.append((claimed - queued).total_seconds())
        if queued is not None and first is not None:
            firsts.append((first - queued).total_seconds())
    report.claim_wait_s_p50 = percentile(waits, 0.5)
    report.claim_wait_s_p90 = percentile(waits, 0.9)
    report.first_response_s_p50 = percentile(firsts, 0.5)

    handoffs_per_day: dict[str, int] = {}
    for r in records:
        key = (_utc(r.queued_at) or r.queued_at).date().isoformat()
        handoffs_per_day[key] = handoffs_per_day.get(key, 0) + 1
    series: dict[str, dict[str, Any]] = {}

    def day_row(key: str) -> dict[str, Any]:
        return series.setdefault(key, {"day": key, "conversations": 0, "cost_usd": Decimal(0), "handoffs": 0})

    for day_value, cost in daily:
        day_row(str(day_value)[:10])["cost_usd"] = Decimal(cost or 0)
    for day_value, convs in conversations_per_day:
        day_row(str(day_value)[:10])["conversations"] = int(convs)
    for key, count in handoffs_per_day.items():
        day_row(key)["handoffs"] = count
    report.days = [series[k] for k in sorted(series)]
    return report


def operations_csv(data: dict[str, Any]) -> str:
    """The operations report (as the API returns it) as CSV, one number a row: ``section,key,field,value``.

    Sections: ``total`` (the scalar figures), ``model`` (key ``purpose/model``), ``day`` (key the day),
    ``handoff_reason`` and ``handoff_outcome`` (key the code).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "key", "field", "value"])

    def value(v: Any) -> Any:
        return "" if v is None else v

    for name, v in data.items():
        if not isinstance(v, dict | list):
            writer.writerow(["total", "", name, value(v)])
    for row in data.get("by_model", []):
        key = f"{row['purpose']}/{row['model']}"
        for name, v in row.items():
            if name not in ("purpose", "model"):
                writer.writerow(["model", key, name, value(v)])
    for row in data.get("days", []):
        for name, v in row.items():
            if name != "day":
                writer.writerow(["day", row["day"], name, value(v)])
    labels = data.get("handoff_reason_labels", {})
    for code, count in data.get("handoff_reasons", {}).items():
        writer.writerow(["handoff_reason", code, "count", count])
        writer.writerow(["handoff_reason", code, "label", labels.get(code, code)])
    for code, count in data.get("handoff_outcomes", {}).items():
        writer.writerow(["handoff_outcome", code, "count", count])
    return out.getvalue()
