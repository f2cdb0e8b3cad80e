"""Admin HTTP for customer data: export everything held about one customer, or erase it.

Thin handlers over :class:`~support.privacy.customer_data.CustomerDataService` (the CLI's
``export-customer`` / ``erase-customer`` use the same service). Admins only. The audit log line names the
admin and the counts, never the customer (an erasure must not leave the customer in the logs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get, post
from litestar.status_codes import HTTP_200_OK

from support.channels.staff import admin_guard, staff_id_of
from support.openapi_errors import ADMIN_SECURITY, errors
from support.privacy.customer_data import CustomerRef
from support.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class EraseIn:
    """Whom to erase: exactly one of the two."""

    visitor_id: str | None = None
    email: str | None = None


class CustomerDataController(Controller):
    """``/api/v1/admin/customers``: export and erasure."""

    path = "/api/v1/admin/customers"
    tags = ["admin"]  # noqa: RUF012 - Litestar reads it as a class attribute
    guards = [admin_guard]  # noqa: RUF012
    security = ADMIN_SECURITY

    @get(
        "/export", summary="Everything held about one customer (by visitor id or e-mail)",
        responses=errors(503),
    )  # fmt: skip
    async def export(
        self,
        request: Request[Any, Any, Any],
        runtime: Runtime,
        visitor_id: str | None = None,
        email: str | None = None,
    ) -> dict[str, Any]:
        """Conversations with their messages, ratings, handoffs, examples, tickets, attachments; every
        list empty when nothing is held. 400 unless exactly one of ``visitor_id`` / ``email`` is given."""
        return await runtime.customers.export(CustomerRef.parse(visitor_id, email), by=staff_id_of(request))

    @post(
        "/erase", status_code=HTTP_200_OK, summary="Erase everything held about one customer",
        responses=errors(503),
    )  # fmt: skip
    async def erase(self, data: EraseIn, request: Request[Any, Any, Any], runtime: Runtime) -> dict[str, int]:
        """Counts per kind of what was erased (all zero when run again)."""
        counts = await runtime.customers.erase(
            CustomerRef.parse(data.visitor_id, data.email), by=staff_id_of(request)
        )
        log.info("admin %s erased a customer's data: %s", staff_id_of(request), counts)
        return counts
