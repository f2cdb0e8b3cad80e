"""Agent login tokens and the guards that enforce roles on every agent and admin endpoint.

Tokens are HS256 JWTs (PyJWT, as the widget's) signed with ``SWITCHBOARD_SECRET_KEY``, with their own
``typ`` so a customer's widget token is never accepted here (nor an agent token on the widget socket).
HTTP requests carry ``Authorization: Bearer <token>``; the agent WebSocket, which browsers cannot give
headers, carries ``?token=``. Guards run before the handler and put the identity in the connection scope;
handlers read it with :func:`agent_of`.

A token is also checked against its account's current token generation (:mod:`handoff.tokens`, one
Redis GET), so deactivating an agent or changing its role revokes its tokens at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.handlers.base import BaseRouteHandler

from handoff.agents import ROLES, AgentIdentity
from support.errors import Forbidden, Unauthorized
from support.tokens import ALGORITHM

AGENT_TOKEN_TYPE = "agent"
_SCOPE_KEY = "switchboard_agent"


def issue_agent_token(
    secret: str, agent: AgentIdentity, *, ttl: timedelta, now: datetime | None = None
) -> tuple[str, datetime]:
    """A login token for ``agent``; returns it with its expiry."""
    now = now or datetime.now(UTC)
    expires = now + ttl
    claims = {
        "sub": agent.id, "name": agent.name, "role": agent.role, "email": agent.email,
        "gen": agent.generation, "typ": AGENT_TOKEN_TYPE, "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
    }  # fmt: skip
    return jwt.encode(claims, secret, algorithm=ALGORITHM), expires


def verify_agent_token(secret: str, token: str) -> AgentIdentity:
    """The identity in a valid, unexpired agent token, else :class:`Unauthorized`."""
    if not token:
        raise Unauthorized("missing agent token")
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("agent token expired; log in again") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("invalid agent token") from exc
    if claims.get("typ") != AGENT_TOKEN_TYPE or claims.get("role") not in ROLES:
        raise Unauthorized("not an agent token")
    generation = claims.get("gen", 0)  # tokens issued before generations existed are of generation 0
    if not isinstance(generation, int) or isinstance(generation, bool):
        raise Unauthorized("not an agent token")
    return AgentIdentity(
        id=str(claims["sub"]), name=str(claims.get("name", "")), role=str(claims["role"]),
        email=str(claims.get("email", "")), generation=generation,
    )  # fmt: skip


def _token_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    header = connection.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    if connection.scope["type"] == ScopeType.WEBSOCKET:
        return connection.query_params.get("token", "")
    return ""


async def _authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> AgentIdentity:
    runtime = connection.app.state.runtime
    agent = verify_agent_token(runtime.signing_key, _token_of(connection))
    await runtime.agent_tokens.check(agent)
    connection.scope[_SCOPE_KEY] = agent  # type: ignore[literal-required]
    return agent


async def agent_guard(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
    """Any logged-in agent or admin whose token was not revoked."""
    await _authenticate(connection)


async def require_admin(connection: ASGIConnection[Any, Any, Any, Any]) -> AgentIdentity:
    """The admin on this connection: 401 without a valid, current token; 403 for an agent."""
    agent = await _authenticate(connection)
    if not agent.is_admin:
        raise Forbidden("admins only")
    return agent


async def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
    """Admins only (401 without a valid, current token; 403 for an agent)."""
    await require_admin(connection)


def agent_of(connection: ASGIConnection[Any, Any, Any, Any]) -> AgentIdentity:
    """The identity a guard put on this connection."""
    agent: AgentIdentity | None = connection.scope.get(_SCOPE_KEY)  # type: ignore[assignment]
    if agent is None:  # a handler without a guard asked: treat as unauthenticated
        raise Unauthorized("missing agent token")
    return agent


class AgentStaffAuth:
    """Agent tokens as the staff guards of the customer side's agent and admin endpoints
    (:class:`support.channels.staff.StaffAuth`, put in the app's state by the app factory)."""

    async def require_admin(self, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        """As :func:`admin_guard`."""
        await require_admin(connection)

    async def require_agent(self, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        """As :func:`agent_guard`."""
        await _authenticate(connection)

    def staff_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        """The agent id a guard put on this connection."""
        return agent_of(connection).id
