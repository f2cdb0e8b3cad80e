"""Widget sessions: widget keys with allowed origins, signed expiring tokens, one conversation per visitor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

from support.conversation.store import ConversationStore
from support.errors import Forbidden, Unauthorized
from support.tokens import issue_widget_token, verify_widget_token

WIDGET_TOKEN_TTL = timedelta(hours=24)  # a support chat rarely outlives a day; the widget renews earlier


@dataclass(frozen=True)
class SessionGrant:
    """What ``POST /api/v1/widget/sessions`` returns."""

    conversation_id: str
    token: str
    expires_at: datetime


class WidgetSessionService:
    """Opens and renews widget sessions."""

    def __init__(self, store: ConversationStore, *, secret: str, widget_keys: dict[str, list[str]]) -> None:
        self._store = store
        self._secret = secret
        self._widget_keys = widget_keys

    def check_origin(self, widget_key: str, origin: str | None) -> None:
        """The key must exist and the page's origin must be one of its allowed origins."""
        allowed = self._widget_keys.get(widget_key)
        if allowed is None:
            raise Forbidden("unknown widget key")
        if origin is None or origin.rstrip("/") not in {o.rstrip("/") for o in allowed}:
            raise Forbidden(f"origin {origin!r} is not allowed for this widget key")

    async def open(
        self, *, widget_key: str, origin: str | None, visitor: dict[str, Any], earlier_token: str | None
    ) -> SessionGrant:
        """A token for the earlier token's conversation while it is valid, else for a new conversation."""
        self.check_origin(widget_key, origin)
        conversation_id: str | None = None
        if earlier_token:
            try:
                claims = verify_widget_token(self._secret, earlier_token)
            except Unauthorized:
                claims = None  # an expired or foreign token starts a fresh conversation
            if claims is not None and claims.widget_key == widget_key:
                conversation_id = (
                    claims.conversation_id if await self._store.exists(claims.conversation_id) else None
                )
        if conversation_id is None:
            conversation_id = uuid4().hex
            await self._store.create_conversation(conversation_id, widget_key=widget_key, visitor=visitor)
        elif visitor:
            await self._merge_visitor(conversation_id, visitor)
        token, expires = issue_widget_token(
            self._secret, conversation_id=conversation_id, widget_key=widget_key, ttl=WIDGET_TOKEN_TTL
        )
        return SessionGrant(conversation_id=conversation_id, token=token, expires_at=expires)

    async def _merge_visitor(self, conversation_id: str, visitor: dict[str, Any]) -> None:
        """A visitor who chatted anonymously, then logged in (``identify``): agents see who it is."""
        state = await self._store.get_state(conversation_id)
        if state is None or all(state.visitor.get(k) == v for k, v in visitor.items()):
            return
        await self._store.set_visitor(conversation_id, {**state.visitor, **visitor})

    def authenticate(self, token: str) -> str:
        """The conversation a socket's token grants, or :class:`Unauthorized`."""
        claims = verify_widget_token(self._secret, token)
        if claims.widget_key not in self._widget_keys:
            raise Unauthorized("widget key revoked")
        return claims.conversation_id
