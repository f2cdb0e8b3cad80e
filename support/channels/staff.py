"""The staff guards of the customer side's agent and admin endpoints (customer data, reports, the agents'
ticket list), as a port.

Agent accounts, their tokens and roles belong to the human side (``handoff.auth``), and ``support`` never
imports ``handoff`` (docs/architecture.md, "Layers"). So the controllers here guard with
:func:`admin_guard` or :func:`agent_guard`, which ask the :class:`StaffAuth` the app factory (the
composition root) put in the app's state; ``handoff.auth.AgentStaffAuth`` is the one it puts there. An app
built without one answers every guarded request with an error, never with the data: the guard fails
closed.
"""

from __future__ import annotations

from typing import Any, Protocol

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

STAFF_AUTH_STATE_KEY = "staff_auth"  # the app state entry the app factory fills


class StaffAuth(Protocol):
    """Checks a staff member's credentials on a connection."""

    async def require_admin(self, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        """Return only for a current admin's credentials; else raise Unauthorized (401) or Forbidden (403)."""
        ...

    async def require_agent(self, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        """Return only for a current agent's or admin's credentials; else raise Unauthorized (401)."""
        ...

    def staff_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        """The id of the staff member a guard let through on this connection (for audit lines)."""
        ...


def staff_auth(connection: ASGIConnection[Any, Any, Any, Any]) -> StaffAuth:
    """The app's staff authentication (a missing one is a wiring bug: the request fails, closed)."""
    auth: StaffAuth = connection.app.state[STAFF_AUTH_STATE_KEY]
    return auth


async def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
    """Admins only (401 without a valid, current token; 403 for an agent)."""
    await staff_auth(connection).require_admin(connection)


async def agent_guard(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
    """Any signed-in agent or admin (401 without a valid, current token)."""
    await staff_auth(connection).require_agent(connection)


def staff_id_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """Who the guard let through on this connection."""
    return staff_auth(connection).staff_id(connection)
