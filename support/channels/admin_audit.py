"""``GET /api/v1/admin/audit``: the audit log, newest first, a page at a time, as JSON or CSV (admins only).

Read-only: the log has no route that writes, changes or removes an entry (docs/console.md, "Audit log").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from litestar import Controller, MediaType, Response, get
from litestar.params import Parameter, QueryParameter

from support.audit import PAGE_DEFAULT, PAGE_MAX, AuditQuery, as_csv, entry_json
from support.channels.staff import admin_guard
from support.openapi_errors import ADMIN_SECURITY, errors
from support.reports.api import JsonOrCsvOperation, csv_response
from support.runtime import Runtime

# The query's ``from`` and ``to`` (Python keywords, so named otherwise here).
Since = Annotated[datetime | None, QueryParameter(name="from", description="at or after (ISO 8601)")]
Until = Annotated[datetime | None, QueryParameter(name="to", description="before (ISO 8601)")]


class AuditController(Controller):
    """The audit log of admin and agent actions."""

    path = "/api/v1/admin/audit"
    tags = ["admin"]  # noqa: RUF012 - Litestar reads it as a class attribute
    guards = [admin_guard]  # noqa: RUF012
    security = ADMIN_SECURITY

    @get(
        "/", summary="Who did what: the audit log, newest first",
        responses=errors(400, 503, s400="A bad filter or limit (`invalid_request`)"),
        operation_class=JsonOrCsvOperation,  # the 200 is JSON, or CSV with format=csv
    )  # fmt: skip
    async def entries(
        self,
        runtime: Runtime,
        actor: str | None = Parameter(default=None, max_length=32, description="an agent id"),
        action: str | None = Parameter(
            default=None, max_length=48, description="an action, or an area with its dot: `conversation.`"
        ),
        since: Since = None,
        until: Until = None,
        limit: int = Parameter(default=PAGE_DEFAULT, ge=1, le=PAGE_MAX),
        before: int | None = Parameter(default=None, ge=1, description="the previous page's `next_before`"),
        format: Literal["json", "csv"] = "json",
    ) -> Response[Any]:
        """``{"entries": [...], "next_before"}`` (null on the last page), or the page as CSV."""
        query = AuditQuery(actor=actor, action=action, since=since, until=until, limit=limit, before=before)
        entries, next_before = await runtime.audit.find(query)
        if format == "csv":
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            return csv_response(as_csv(entries), f"audit-{stamp}")
        return Response(
            {"entries": [entry_json(e) for e in entries], "next_before": next_before},
            media_type=MediaType.JSON,
        )
