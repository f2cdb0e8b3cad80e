"""Signed, expiring tokens (HS256 JWT via PyJWT) for widget sessions.

A widget token names one conversation and the widget key it was issued for; it is the only credential a
customer's browser holds, so it is short-lived and re-issued (same conversation) while still valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from support.errors import Unauthorized

ALGORITHM = "HS256"
WIDGET_TOKEN_TYPE = "widget"


@dataclass(frozen=True)
class WidgetClaims:
    """What a valid widget token says."""

    conversation_id: str
    widget_key: str
    expires_at: datetime


def issue_widget_token(
    secret: str, *, conversation_id: str, widget_key: str, ttl: timedelta, now: datetime | None = None
) -> tuple[str, datetime]:
    """A token for ``conversation_id`` valid for ``ttl``; returns it with its expiry."""
    now = now or datetime.now(UTC)
    expires = now + ttl
    token = jwt.encode(
        {
            "sub": conversation_id,
            "wk": widget_key,
            "typ": WIDGET_TOKEN_TYPE,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
        },
        secret,
        algorithm=ALGORITHM,
    )
    return token, expires.replace(microsecond=0)


def verify_widget_token(secret: str, token: str) -> WidgetClaims:
    """The claims of a valid, unexpired widget token, else :class:`Unauthorized`."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("session token expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("invalid session token") from exc
    if claims.get("typ") != WIDGET_TOKEN_TYPE or not isinstance(claims.get("wk"), str):
        raise Unauthorized("not a widget session token")
    return WidgetClaims(
        conversation_id=str(claims["sub"]),
        widget_key=claims["wk"],
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
    )
