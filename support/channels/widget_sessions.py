"""Widget sessions: widget keys with allowed origins, signed expiring tokens, one conversation per visitor.

Identity: for a widget key with an identity secret (``SWITCHBOARD_WIDGET_IDENTITY_SECRETS``), every
session request must carry ``visitor.id`` and ``visitor.identity_hash`` = lowercase hex
HMAC-SHA256(secret, id), which only the company's own backend can compute; the conversation is then marked
``"verified": true`` in its visitor claims (agents see it). Without a secret, ids are unverified claims.

The visitor id of a conversation is set once: by the session that created it, or by the first renewal that
carries one (a visitor who chatted anonymously, then signed in). A later request naming another id is
refused with ``identity_invalid`` and changes nothing, verified or not: a conversation never moves from one
person to another (the widget starts a new conversation when the person changes). Name and e-mail may be
updated by any renewal; the identity hash itself is never stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

from support.conversation.store import ConversationStore
from support.errors import Forbidden, IdentityInvalid, NotFound, Unauthorized
from support.tokens import WidgetClaims, issue_widget_token, verify_widget_token

WIDGET_TOKEN_TTL = timedelta(hours=24)  # a support chat rarely outlives a day; the widget renews earlier


@dataclass(frozen=True)
class SessionGrant:
    """What ``POST /api/v1/widget/sessions`` returns."""

    conversation_id: str
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class VisitorClaims:
    """What the page says about its visitor (already bounded by the request schema)."""

    id: str | None = None
    name: str | None = None
    email: str | None = None
    identity_hash: str | None = None


def identity_hash(secret: str, visitor_id: str) -> str:
    """Lowercase hex HMAC-SHA256 of the visitor id: what the company's backend gives its page."""
    return hmac.new(secret.encode(), visitor_id.encode(), hashlib.sha256).hexdigest()


def merged_visitor(current: dict[str, Any], claims: dict[str, Any]) -> dict[str, Any] | None:
    """The stored visitor claims after a renewal's ``claims`` (None: nothing changes).

    Raises :class:`IdentityInvalid` when the renewal names another visitor id than the one already set.
    """
    if "id" in claims and current.get("id") not in (None, claims["id"]):
        raise IdentityInvalid("this conversation belongs to another visitor; start a new session")
    merged = {**current, **claims}  # a renewal without proof keeps an earlier "verified"
    return None if merged == current else merged


class WidgetSessionService:
    """Opens and renews widget sessions."""

    def __init__(
        self,
        store: ConversationStore,
        *,
        secret: str,
        widget_keys: dict[str, list[str]],
        identity_secrets: dict[str, str] | None = None,
    ) -> None:
        self._store = store
        self._secret = secret
        self._widget_keys = widget_keys
        self._identity_secrets = identity_secrets or {}

    def check_origin(self, widget_key: str, origin: str | None) -> None:
        """The key must exist and the page's origin must be one of its allowed origins."""
        allowed = self._widget_keys.get(widget_key)
        if allowed is None:
            raise Forbidden("unknown widget key")
        if origin is None or origin.rstrip("/") not in {o.rstrip("/") for o in allowed}:
            raise Forbidden(f"origin {origin!r} is not allowed for this widget key")

    def origin_allowed_for_any_key(self, origin: str) -> bool:
        """Whether some widget key allows ``origin`` (what a CORS preflight, which names no key, can know)."""
        origin = origin.rstrip("/")
        return any(origin == o.rstrip("/") for allowed in self._widget_keys.values() for o in allowed)

    def verify_identity(self, widget_key: str, visitor: VisitorClaims) -> bool:
        """True when the key has an identity secret and the hash proves the id; False without a secret.

        Raises :class:`IdentityInvalid` when the key has a secret and the id or the hash is missing or wrong.
        """
        secret = self._identity_secrets.get(widget_key)
        if secret is None:
            return False
        if not visitor.id or not visitor.identity_hash:
            raise IdentityInvalid("this widget key requires visitor.id and visitor.identity_hash")
        expected = identity_hash(secret, visitor.id).encode()
        if not hmac.compare_digest(expected, visitor.identity_hash.encode()):
            raise IdentityInvalid("visitor.identity_hash does not match visitor.id")
        return True

    async def open(
        self, *, widget_key: str, origin: str | None, visitor: VisitorClaims, earlier_token: str | None
    ) -> SessionGrant:
        """A token for the earlier token's conversation while it is valid, else for a new conversation."""
        self.check_origin(widget_key, origin)
        claims: dict[str, Any] = {
            k: v for k, v in (("id", visitor.id), ("name", visitor.name), ("email", visitor.email)) if v
        }
        if self.verify_identity(widget_key, visitor):
            claims["verified"] = True
        conversation_id: str | None = None
        if earlier_token:
            try:
                token_claims = verify_widget_token(self._secret, earlier_token)
            except Unauthorized:
                token_claims = None  # an expired or foreign token starts a fresh conversation
            if token_claims is not None and token_claims.widget_key == widget_key:
                conversation_id = (
                    token_claims.conversation_id
                    if await self._store.exists(token_claims.conversation_id)
                    else None
                )
        if conversation_id is None:
            conversation_id = uuid4().hex
            await self._store.create_conversation(conversation_id, widget_key=widget_key, visitor=claims)
        elif claims:
            # A conversation whose hot state is gone (archived and expired) keeps its token, as before.
            with contextlib.suppress(NotFound):
                await self._store.update_visitor(conversation_id, lambda cur: merged_visitor(cur, claims))
        token, expires = issue_widget_token(
            self._secret, conversation_id=conversation_id, widget_key=widget_key, ttl=WIDGET_TOKEN_TTL
        )
        return SessionGrant(conversation_id=conversation_id, token=token, expires_at=expires)

    def authenticate(self, token: str) -> str:
        """The conversation a socket's token grants, or :class:`Unauthorized`."""
        return self.claims(token).conversation_id

    def claims(self, token: str) -> WidgetClaims:
        """What a valid token of a widget key still configured says, or :class:`Unauthorized`."""
        claims = verify_widget_token(self._secret, token)
        if claims.widget_key not in self._widget_keys:
            raise Unauthorized("widget key revoked")
        return claims
