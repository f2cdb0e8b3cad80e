"""``GET /api/v1/reports/sla``: the SLA report (admins only; JSON, or CSV with ``format=csv``)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get

from support.channels.staff import admin_guard
from support.openapi_errors import ADMIN_SECURITY, errors
from support.reports.api import (
    FormatParam,
    FromParam,
    JsonOrCsvOperation,
    ToParam,
    bounds,
    check_format,
    csv_response,
)
from support.reports.sla import sla_csv, sla_report
from support.runtime import Runtime


class SlaReportController(Controller):
    """The SLA section of the reports."""

    path = "/api/v1/reports"
    tags = ["reports"]  # noqa: RUF012
    guards = [admin_guard]  # noqa: RUF012
    security = ADMIN_SECURITY

    @get(
        "/sla", summary="SLA: first-reply and resolution targets met and breached, per team",
        responses=errors(400, 503), operation_class=JsonOrCsvOperation,
    )  # fmt: skip
    async def sla(
        self, runtime: Runtime, start: FromParam = None, end: ToParam = None, fmt: FormatParam = "json"
    ) -> Response[Any]:
        """Handoffs queued in the range; each target ``met``, ``breached`` or ``pending``."""
        check_format(fmt)
        lower, upper = bounds(start, end)
        report = await sla_report(runtime.sessions, start=lower, end=upper)
        if fmt == "csv":
            return csv_response(sla_csv(report), "sla")
        return Response(report)
