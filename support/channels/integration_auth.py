"""The integration-key guard of the tickets channel: ``Authorization: Bearer sbk_…``.

A guard made by :func:`integration_key_guard` authenticates the key with the scope its route needs
(:class:`~support.tickets.integration_keys.IntegrationKeys`), under the per-address limit on failed
attempts (:meth:`~support.ratelimit.RateLimits.api_key_attempt`), and puts the key on the connection for
the handler (:func:`integration_key_of`). A 401 carries ``WWW-Authenticate: Bearer`` (RFC 6750). Agent
tokens and widget tokens are not integration keys: they fail as any unknown key does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from support.db.models import IntegrationKey
from support.errors import Unauthorized

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]
REALM = "switchboard"
_SCOPE_KEY = "switchboard_integration_key"


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    header = connection.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def integration_key_guard(scope: str | None) -> Guard:
    """A guard admitting a live integration key with ``scope`` (None: any scope)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
        runtime = connection.app.state.runtime
        presented = _bearer(connection)
        try:
            async with runtime.limits.api_key_attempt(runtime.limits.client(connection)):
                key: IntegrationKey = await runtime.integration_keys.authenticate(presented, scope)
        except Unauthorized as exc:
            challenge = f'Bearer realm="{REALM}"' + (', error="invalid_token"' if presented else "")
            raise Unauthorized(exc.message, challenge=challenge) from None
        connection.scope[_SCOPE_KEY] = key  # type: ignore[literal-required]

    return guard


def integration_key_of(connection: ASGIConnection[Any, Any, Any, Any]) -> IntegrationKey:
    """The key the guard let through on this connection."""
    key: IntegrationKey | None = connection.scope.get(_SCOPE_KEY)  # type: ignore[assignment]
    if key is None:  # a handler without the guard asked: fail closed
        raise Unauthorized("missing integration key", challenge=f'Bearer realm="{REALM}"')
    return key
