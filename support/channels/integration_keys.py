"""Admin HTTP for integration keys (create, list, revoke), and ``GET /api/v1/integration-keys/me``, which
lets an integrator check the key it holds.

Thin handlers over :class:`~support.tickets.integration_keys.IntegrationKeys` (the CLI's
``create-integration-key`` / ``revoke-integration-key`` use the same service). The key is in the creation
response only (sent ``Cache-Control: no-store``); lists never show the key or its hash.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import CacheControlHeader
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from support.channels.integration_auth import integration_key_guard, integration_key_of
from support.channels.staff import admin_guard, staff_id_of
from support.openapi_errors import ADMIN_SECURITY, errors, integration_security
from support.runtime import Runtime
from support.tickets.integration_keys import key_json

log = logging.getLogger(__name__)


@dataclass
class IntegrationKeyIn:
    """A key an admin creates; every scope when ``scopes`` is left out."""

    name: str
    scopes: list[str] | None = None


class IntegrationKeyController(Controller):
    """``/api/v1/admin/integration-keys`` (admins only)."""

    path = "/api/v1/admin/integration-keys"
    tags = ["admin"]  # noqa: RUF012 - Litestar reads it as a class attribute
    guards = [admin_guard]  # noqa: RUF012
    security = ADMIN_SECURITY

    @post(
        "/", status_code=HTTP_201_CREATED, summary="Create an integration key (the key is shown once)",
        cache_control=CacheControlHeader(no_store=True), responses=errors(503),
    )  # fmt: skip
    async def create(
        self, data: IntegrationKeyIn, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, Any]:
        """The key's record with ``key``, the key itself: store it now, it cannot be read again. 400 for an
        empty name or an unknown scope (`tickets:write`, `tickets:read`)."""
        key, plaintext = await runtime.integration_keys.create(
            data.name, data.scopes, created_by=staff_id_of(request)
        )
        log.info("admin %s created integration key %s", staff_id_of(request), key.id)
        return {**key_json(key), "key": plaintext}

    @get("/", summary="Every integration key, revoked ones too (never the key)", responses=errors(503))
    async def list_keys(self, runtime: Runtime) -> list[dict[str, Any]]:
        """Newest first: id, name, prefix, scopes, who created it, when it was last used or revoked."""
        return [key_json(key) for key in await runtime.integration_keys.list()]

    @delete(
        "/{key_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Revoke an integration key",
        responses=errors(404, 503),
    )  # fmt: skip
    async def revoke(self, key_id: str, request: Request[Any, Any, Any], runtime: Runtime) -> None:
        """At once: the key's next request gets 401. Revoking a revoked key is a no-op (204)."""
        key = await runtime.integration_keys.revoke(key_id, by=staff_id_of(request))
        log.info("admin %s revoked integration key %s", staff_id_of(request), key.id)


class OwnIntegrationKeyController(Controller):
    """``/api/v1/integration-keys/me``: the calling key, to check it works."""

    path = "/api/v1/integration-keys"
    tags = ["tickets"]  # noqa: RUF012
    guards = [integration_key_guard(None)]  # noqa: RUF012
    security = integration_security()

    @get("/me", summary="The integration key of this request", responses=errors(503))
    async def me(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        """Its id, name, prefix and scopes (never the key)."""
        key = integration_key_of(request)
        return {"id": key.id, "name": key.name, "prefix": key.prefix, "scopes": list(key.scopes)}
