"""``/api/v1/reports``: admin-only report endpoints (thin: parse, call the report service, serialize)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from litestar import Controller, Response, get
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import Parameter, QueryParameter

from support.channels.staff import admin_guard
from support.conversation.reasons import REASON_TEXT
from support.errors import ValidationFailed
from support.openapi_errors import ADMIN_SECURITY, errors
from support.reports.operations import operations_report
from support.reports.satisfaction import SCORES, SatisfactionReport, satisfaction_report
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


# The reporting period of every report: `?from=...&to=...` (`from` is a Python keyword, hence the alias).
FromParam = Annotated[str | None, QueryParameter(name="from", description="ISO date/datetime, inclusive")]
ToParam = Annotated[
    str | None, QueryParameter(name="to", description="ISO date/datetime; a date includes it")
]


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

    @get("/operations", summary="Operations: model cost, cache, latency, handoffs", responses=errors(503))
    async def operations(
        self,
        runtime: Runtime,
        start: FromParam = None,
        end: ToParam = None,
    ) -> dict[str, Any]:
        """Conversations, model calls and cost (per conversation too), cache hit ratio, answer TTFT,
        handoff rate, reasons (codes and their words), outcomes and waits, and a per-day series, from the
        ledger and handoff trail."""
        lower, upper = parse_bound(start, "from", end=False), parse_bound(end, "to", end=True)
        if lower is not None and upper is not None and lower >= upper:
            raise ValidationFailed("`from` must be before `to`")
        report = await operations_report(runtime.sessions, start=lower, end=upper)
        data = report.to_json()
        # Words for each reason code in the range, as agents read them in the console.
        data["handoff_reason_labels"] = {code: REASON_TEXT.get(code, code) for code in report.handoff_reasons}
        data["queue_waiting"] = len(await runtime.queue.waiting())
        return data
