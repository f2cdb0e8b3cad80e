"""``/api/v1/reports``: admin-only report endpoints (thin: parse, call the report service, serialize)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from litestar import Controller, Response, get
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import Parameter, QueryParameter
from litestar.response import Stream

from support.channels.staff import admin_guard
from support.conversation.reasons import REASON_TEXT
from support.errors import ValidationFailed
from support.openapi_errors import ADMIN_SECURITY, errors
from support.reports.conversations import (
    FIELDS,
    DrillDown,
    all_conversations,
    conversations_page,
    handoff_reasons_report,
    overview_report,
)
from support.reports.operations import operations_csv, operations_report
from support.reports.satisfaction import SCORES, SatisfactionReport, satisfaction_report
from support.reports.transcript import conversation_detail
from support.reports.usage import edits_report, usage_report
from support.runtime import Runtime


def parse_bound(value: str | None, name: str, *, end: bool) -> datetime | None:
    """An ISO 8601 date or datetime (UTC when it has no offset); a date-only ``to`` includes that day."""
    if value is None or value == "":
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day + timedelta(days=1) if end else day, time(), tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(value)
    except (ValueError, OverflowError) as exc:  # OverflowError: the day after 9999-12-31
        raise ValidationFailed(f"`{name}` must be an ISO 8601 date or datetime, got {value!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def report_json(report: SatisfactionReport) -> dict[str, Any]:
    """The report as the API returns it (distribution keys are the scores, as strings)."""
    return {
        "from": report.start.isoformat() if report.start else None,
        "to": report.end.isoformat() if report.end else None,
        "group_by": report.group_by,
        "count": report.count,
        "average": report.average,
        "distribution": {str(s): report.distribution[s] for s in SCORES},
        "groups": [
            {
                "key": g.key, "label": g.label, "count": g.count, "average": g.average,
                "distribution": {str(s): g.distribution[s] for s in SCORES},
            }
            for g in report.groups
        ],
    }  # fmt: skip


def report_csv(report: SatisfactionReport) -> str:
    """One row per group, then a ``total`` row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([report.group_by, "label", "count", "average", *(f"score_{s}" for s in SCORES)])
    for g in report.groups:
        row = [g.key or "", g.label or "", g.count, g.average if g.average is not None else ""]
        writer.writerow([*row, *(g.distribution[s] for s in SCORES)])
    average = report.average if report.average is not None else ""
    writer.writerow(["total", "", report.count, average, *(report.distribution[s] for s in SCORES)])
    return out.getvalue()


def flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A report row as CSV columns: nested objects become ``parent_child`` columns."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{name}_"))
        else:
            out[f"{prefix}{name}"] = value
    return out


def cell(value: Any) -> Any:
    """A CSV cell: empty for null, ``true``/``false`` for booleans."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def table_csv(report: Mapping[str, Any]) -> str:
    """A ``{"group_by", "total", "groups"}`` report as CSV: one row per group, then the ``total`` row (its key
    is ``total``); the first column is named after the cut."""
    rows = [flatten(g) for g in report["groups"]]
    total = {**flatten(report["total"]), "key": "total"}
    header = list(total)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([report["group_by"] if h == "key" else h for h in header])
    for row in [*rows, total]:
        writer.writerow([cell(row.get(h)) for h in header])
    return out.getvalue()


def reasons_csv(report: Mapping[str, Any]) -> str:
    """The handoff reasons as CSV: one row per group and reason, then the total's rows (group ``total``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([report["group_by"], "label", "conversations", "handed_off", "reason", "reason_label",
                     "count"])  # fmt: skip
    total = {**report["total"], "key": "total"}
    for g in [*report["groups"], total]:
        for r in g["reasons"]:
            group_cells = [cell(g["key"]), g["label"], g["conversations"], g["handed_off"]]
            writer.writerow([*group_cells, cell(r["reason"]), r["label"], r["count"]])
    return out.getvalue()


def rows_csv(rows: Iterable[Mapping[str, Any]], header: Iterable[str]) -> str:
    """Rows under a header, as CSV text (no trailing total)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = list(header)
    for row in rows:
        writer.writerow([cell(row.get(h)) for h in names])
    return out.getvalue()


def csv_response(body: str, name: str) -> Response[Any]:
    """A CSV download named ``name``.csv."""
    return Response(
        body, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}.csv"'}
    )


def check_format(fmt: str) -> None:
    """Raise ValidationFailed unless ``fmt`` is json or csv."""
    if fmt not in ("json", "csv"):
        raise ValidationFailed("format must be json or csv")


def bounds(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    """Parsed ``from``/``to``; ValidationFailed for a bad or empty range."""
    lower, upper = parse_bound(start, "from", end=False), parse_bound(end, "to", end=True)
    if lower is not None and upper is not None and lower >= upper:
        raise ValidationFailed("`from` must be before `to`")
    return lower, upper


def parse_limit(value: str | None) -> int:
    """The page size, 1..200 (50 when absent)."""
    if value is None or value == "":
        return 50
    try:
        return int(value)
    except ValueError as exc:
        raise ValidationFailed("limit must be a whole number 1..200") from exc


# The reporting period of every report: `?from=...&to=...` (`from` is a Python keyword, hence the alias).
FromParam = Annotated[str | None, QueryParameter(name="from", description="ISO date/datetime, inclusive")]
ToParam = Annotated[
    str | None, QueryParameter(name="to", description="ISO date/datetime; a date includes it")
]
FormatParam = Annotated[str, QueryParameter(name="format", description="json | csv")]
CUTS = "none | resolution | intent | agent | channel | day | week | policy_version"


def _filter(description: str) -> Any:
    return Parameter(default=None, description=f"{description}; `__none__` selects conversations without one")


@dataclass
class JsonOrCsvOperation(Operation):
    """The satisfaction report's 200 is JSON, or CSV with ``format=csv``: both media types documented."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            csv_body = OpenAPIMediaType(
                schema=Schema(type=OpenAPIType.STRING, description="CSV, a header row")
            )
            ok.content = {**(ok.content or {}), "text/csv": csv_body}


class ReportsController(Controller):
    """Reports for admins."""

    path = "/api/v1/reports"
    tags = ["reports"]  # noqa: RUF012 - Litestar reads it as a class attribute
    guards = [admin_guard]  # noqa: RUF012
    security = ADMIN_SECURITY

    @get(
        "/satisfaction", summary="Customer satisfaction (CSAT) ratings", responses=errors(503),
        operation_class=JsonOrCsvOperation,
    )  # fmt: skip
    async def satisfaction(
        self,
        runtime: Runtime,
        start: FromParam = None,
        end: ToParam = None,
        group_by: str = Parameter(default="resolution", description="resolution | intent | agent | day"),
        fmt: Annotated[str, QueryParameter(name="format", description="json | csv")] = "json",
    ) -> Response[Any]:
        """Average, count and 1-5 distribution of ratings, overall and per group."""
        if fmt not in ("json", "csv"):
            raise ValidationFailed("format must be json or csv")
        report = await satisfaction_report(
            runtime.sessions,
            group_by=group_by,
            start=parse_bound(start, "from", end=False),
            end=parse_bound(end, "to", end=True),
        )
        if fmt == "csv":
            return Response(
                report_csv(report),
                media_type="text/csv",
                headers={"Content-Disposition": 'attachment; filename="satisfaction.csv"'},
            )
        return Response(report_json(report))

    @get(
        "/operations", summary="Operations: model cost, cache, latency, handoffs", responses=errors(503),
        operation_class=JsonOrCsvOperation,
    )  # fmt: skip
    async def operations(
        self,
        runtime: Runtime,
        start: FromParam = None,
        end: ToParam = None,
        fmt: FormatParam = "json",
    ) -> Response[Any]:
        """Conversations, model calls and cost (per conversation too), cache hit ratio, answer TTFT,
        handoff rate (conversations started in the range that were handed off), reasons (codes and their
        words), outcomes and waits, and a per-day series. CSV: one ``section,key,field,value`` row per
        number."""
        check_format(fmt)
        lower, upper = bounds(start, end)
        report = await operations_report(runtime.sessions, start=lower, end=upper)
        data = report.to_json()
        # Words for each reason code in the range, as agents read them in the console.
        data["handoff_reason_labels"] = {code: REASON_TEXT.get(code, code) for code in report.handoff_reasons}
        data["queue_waiting"] = len(await runtime.queue.waiting())
        if fmt == "csv":
            return csv_response(operations_csv(data), "operations")
        return Response(data)

    @get(
        "/overview", summary="Conversations: resolution, handoffs, times, CSAT and cost, per cut",
        responses=errors(503), operation_class=JsonOrCsvOperation,
    )  # fmt: skip
    async def overview(
        self,
        runtime: Runtime,
        start: FromParam = None,
        end: ToParam = None,
        group_by: str = Parameter(default="none", description=CUTS),
        fmt: FormatParam = "json",
    ) -> Response[Any]:
        """Every conversation metric of docs/metrics.md for conversations started in the range: the total
        and one row per group. CSV: one row per group, then ``total``."""
        check_format(fmt)
        lower, upper = bounds(start, end)
        report = await overview_report(
            runtime.sessions, start=lower, end=upper, group_by=group_by, now=datetime.now(UTC)
        )
        if fmt == "csv":
            return csv_response(table_csv(report), "overview")
        return Response(report)

    @get(
        "/handoff-reasons", summary="Handed-off conversations by reason, per cut", responses=errors(503),
        operation_class=JsonOrCsvOperation,
    )  # fmt: skip
    async def handoff_reasons(
        self,
        runtime: Runtime,
        start: FromParam = None,
        end: ToParam = None,
        group_by: str = Parameter(default="none", description=CUTS),
        fmt: FormatParam = "json",
    ) -> Response[Any]:
        """Conversations handed off, counted by the reason of their first handoff (code and words)."""
        check_format(fmt)
        lower, upper = bounds(start, end)
        report = await handoff_reasons_report(runtime.sessions, start=lower, end=upper, group_by=group_by)
        if fmt == "csv":
            return csv_response(reasons_csv(report), "handoff-reasons")
        return Response(report)

    @get(
        "/usage", summary="Model calls, tokens, cost and cache hit ratio by model and purpose, or by day",
        responses=errors(503), operation_class=JsonOrCsvOperation,
    )  # fmt: skip
    async def usage(
        self,
        runtime: Runtime,
        start: FromParam = None,
        end: ToParam = None,
        group_by: str = Parameter(default="model_purpose", description="model_purpose | day"),
        fmt: FormatParam = "json",
    ) -> Response[Any]:
        """From the ledger: calls, errors, tokens (input, cache write, cache read, output), cost, and the
        cache hit ratio of answer calls."""
        check_format(fmt)
        lower, upper = bounds(start, end)
        report = await usage_report(runtime.sessions, start=lower, end=upper, group_by=group_by)
        if fmt == "csv":
            return csv_response(table_csv(report), "usage")
        return Response(report)

    @get(
        "/edits", summary="How agents edit the bot's drafts, per intent or agent", responses=errors(503),
        operation_class=JsonOrCsvOperation,
    )  # fmt: skip
    async def edits(
        self,
        runtime: Runtime,
        start: FromParam = None,
        end: ToParam = None,
        group_by: str = Parameter(default="intent", description="intent | agent"),
        fmt: FormatParam = "json",
    ) -> Response[Any]:
        """Agent replies, replies sent from a bot draft, the share edited and the mean edit ratio."""
        check_format(fmt)
        lower, upper = bounds(start, end)
        report = await edits_report(runtime.sessions, start=lower, end=upper, group_by=group_by)
        if fmt == "csv":
            return csv_response(table_csv(report), "edits")
        return Response(report)

    @get(
        "/conversations", summary="The conversations behind a number: one row per conversation",
        responses=errors(503), operation_class=JsonOrCsvOperation,
    )  # fmt: skip
    async def conversations(
        self,
        runtime: Runtime,
        start: FromParam = None,
        end: ToParam = None,
        resolution: str | None = _filter("bot | handed_off | unanswered | human"),
        intent: str | None = _filter("intent key"),
        agent: str | None = _filter("agent id"),
        channel: str | None = _filter("chat | ticket"),
        handoff_reason: str | None = _filter("the first handoff's reason code"),
        day: str | None = Parameter(default=None, description="YYYY-MM-DD (UTC)"),
        week: str | None = Parameter(default=None, description="the ISO week's Monday, YYYY-MM-DD"),
        policy_version: str | None = _filter("knowledge version"),
        only: str | None = Parameter(
            default=None,
            description="comma-separated: bot_resolved | bot_confirmed | bot_assumed | reopened | resolved | "
            "handed_off | unanswered | rated | satisfied | dissatisfied | asked | predicted | "
            "predicted_satisfied",
        ),
        limit: str | None = Parameter(default=None, description="page size, 1..200 (default 50)"),
        cursor: str | None = Parameter(default=None, description="`next_cursor` of the previous page"),
        fmt: FormatParam = "json",
    ) -> Response[Any]:
        """Matching conversations newest first, a page at a time (``next_cursor``); ``format=csv`` streams
        every matching conversation (the one-row-per-conversation export)."""
        check_format(fmt)
        lower, upper = bounds(start, end)
        given = {"resolution": resolution, "handoff_reason": handoff_reason, "intent": intent, "agent": agent,
                 "channel": channel, "policy_version": policy_version}  # fmt: skip
        spec = DrillDown(
            start=lower,
            end=upper,
            filters=tuple((k, v) for k, v in given.items() if v is not None and v != ""),
            day=day or None,
            week=week or None,
            only=tuple(o.strip() for o in (only or "").split(",") if o.strip()),
        )
        now = datetime.now(UTC)
        if fmt == "csv":
            rows = all_conversations(runtime.sessions, spec, now=now)
            first = await anext(rows, None)  # a bad parameter fails here, as a 400, not mid-stream

            async def body() -> AsyncIterator[str]:
                yield ",".join(FIELDS) + "\n"
                if first is None:
                    return
                yield rows_csv([first], FIELDS)
                batch = []
                async for row in rows:
                    batch.append(row)
                    if len(batch) >= 500:
                        yield rows_csv(batch, FIELDS)
                        batch = []
                if batch:
                    yield rows_csv(batch, FIELDS)

            return Stream(
                body(),
                media_type="text/csv",
                headers={"Content-Disposition": 'attachment; filename="conversations.csv"'},
            )
        page = await conversations_page(
            runtime.sessions, spec, now=now, limit=parse_limit(limit), cursor=cursor or None
        )
        return Response(page)

    @get(
        "/conversations/{conversation_id:str}", summary="One conversation, read-only: facts and transcript",
        responses=errors(404, 503),
    )  # fmt: skip
    async def conversation(self, runtime: Runtime, conversation_id: str) -> dict[str, Any]:
        """The conversation's drill-down row (``facts``), its messages and, for a ticket, the ticket."""
        return await conversation_detail(
            runtime.store, runtime.sessions, conversation_id, now=datetime.now(UTC)
        )
