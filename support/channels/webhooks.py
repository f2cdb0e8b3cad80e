"""Admin HTTP for outbound webhooks: endpoints, their delivery log, and replay of a delivery.

Thin handlers over :class:`~support.webhooks.WebhookService`. Admins only. An endpoint's secret is in the
creation answer and nowhere else: not in the list, not in any log line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from support.channels.staff import admin_guard, staff_id_of
from support.errors import ServiceUnavailable
from support.openapi_errors import ADMIN_SECURITY, errors
from support.runtime import Runtime
from support.webhooks.service import (
    DELIVERIES_LIMIT_MAX,
    CreatedEndpoint,
    DeliveryView,
    EndpointView,
    WebhookService,
)

log = logging.getLogger(__name__)


@dataclass
class WebhookIn:
    """A new endpoint: where to send, and which events (see docs/tickets.md, Webhooks)."""

    url: str
    events: list[str]


@dataclass
class Replayed:
    """A delivery queued to be sent again."""

    id: str
    status: str


def _service(runtime: Runtime) -> WebhookService:
    service = runtime.webhooks
    if service is None:  # a runtime built without webhooks (tools); never the served app
        raise ServiceUnavailable("webhooks are not running in this process")
    return service


class WebhookController(Controller):
    """``/api/v1/admin/webhooks``: endpoints, deliveries, replay."""

    path = "/api/v1/admin/webhooks"
    tags = ["admin"]  # noqa: RUF012 - Litestar reads it as a class attribute
    guards = [admin_guard]  # noqa: RUF012
    security = ADMIN_SECURITY

    @post(
        "/", status_code=HTTP_201_CREATED, summary="Create a webhook endpoint (its secret is shown once)",
        responses=errors(503, s400="Malformed body, an unknown event name (`invalid_request`), or a URL "
                         "that is not http(s) or reaches a non-public address (`url_refused`)"),
    )  # fmt: skip
    async def create(
        self, data: WebhookIn, request: Request[Any, Any, Any], runtime: Runtime
    ) -> CreatedEndpoint:
        """``secret`` (``whsec_…``) signs every delivery; store it now, it is never shown again."""
        created = await _service(runtime).create_endpoint(
            data.url, data.events, created_by=staff_id_of(request)
        )
        log.info(
            "admin %s created webhook endpoint %s for %s", staff_id_of(request), created.id, created.events
        )
        return created

    @get("/", summary="Webhook endpoints, newest first (without secrets)", responses=errors(503))
    async def list_endpoints(self, runtime: Runtime) -> list[EndpointView]:
        """Active and deactivated endpoints."""
        return await _service(runtime).list_endpoints()

    @delete(
        "/{endpoint_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Deactivate a webhook endpoint",
        responses=errors(404, 503),
    )  # fmt: skip
    async def deactivate(self, endpoint_id: str, request: Request[Any, Any, Any], runtime: Runtime) -> None:
        """No new deliveries; pending ones end as failed. Idempotent."""
        await _service(runtime).deactivate(endpoint_id, by=staff_id_of(request))
        log.info("admin %s deactivated webhook endpoint %s", staff_id_of(request), endpoint_id)

    @get(
        "/{endpoint_id:str}/deliveries", summary="An endpoint's deliveries, newest first, with attempts",
        responses=errors(404, 503),
    )  # fmt: skip
    async def deliveries(
        self, endpoint_id: str, runtime: Runtime,
        limit: int = Parameter(default=50, ge=1, le=DELIVERIES_LIMIT_MAX),
    ) -> list[DeliveryView]:  # fmt: skip
        """The delivery log: status, attempts and each attempt's answer."""
        return await _service(runtime).deliveries(endpoint_id, limit=limit)

    @post(
        "/{endpoint_id:str}/deliveries/{delivery_id:str}/replay", status_code=HTTP_202_ACCEPTED,
        summary="Send a delivery again (same body and webhook-id, fresh timestamp and signature)",
        responses=errors(404, 409, 503, s409="The delivery is still pending, or the endpoint is deactivated "
                         "(`conflict`)"),
    )  # fmt: skip
    async def replay(
        self, endpoint_id: str, delivery_id: str, request: Request[Any, Any, Any], runtime: Runtime
    ) -> Replayed:
        """Queued at once, with a new round of retries."""
        await _service(runtime).replay(endpoint_id, delivery_id)
        log.info("admin %s replayed webhook delivery %s", staff_id_of(request), delivery_id)
        return Replayed(id=delivery_id, status="pending")
