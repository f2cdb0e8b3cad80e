"""Labels agents put on conversations (``billing``, ``vip``), stored in SQL: they filter search and the
customer profile's conversation list and show as chips in the console.

One call sets a conversation's whole label list (``PUT .../labels``): the console edits the list and sends
it back, so two labels added at once never need two requests, and the result is the same however often it
is sent. A label is 1-32 characters of lower-case letters, digits, ``-`` and ``_`` (it is shown as a chip
and typed into a filter); input is trimmed and lower-cased first, each label kept once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from support.conversation.store import ConversationStore
from support.db.models import ArchivedConversation, ConversationLabel
from support.errors import NotFound, ValidationFailed

MAX_LABELS = 10  # per conversation: chips on one row; more is a taxonomy, not labels
MAX_LABEL_CHARS = 32
LABEL = re.compile(r"[a-z0-9][a-z0-9_-]*")


def normalize_label(raw: object) -> str:
    """A label as stored, or :class:`ValidationFailed` naming what is wrong with it."""
    if not isinstance(raw, str):
        raise ValidationFailed("a label must be a string")
    label = raw.strip().lower()
    if not 1 <= len(label) <= MAX_LABEL_CHARS:
        raise ValidationFailed(f"a label must have 1 to {MAX_LABEL_CHARS} characters")
    if not LABEL.fullmatch(label):
        raise ValidationFailed(
            f"label {label!r} may hold only letters a-z, digits, '-' and '_', and must start with a "
            "letter or digit"
        )
    return label


def normalize_labels(raw: Sequence[object]) -> list[str]:
    """The labels as stored: validated, de-duplicated, sorted; at most :data:`MAX_LABELS`."""
    labels = sorted({normalize_label(item) for item in raw})
    if len(labels) > MAX_LABELS:
        raise ValidationFailed(f"a conversation may have at most {MAX_LABELS} labels")
    return labels


class LabelService:
    """Reads and sets conversations' labels (the store and sessions are passed in)."""

    def __init__(self, store: ConversationStore, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._store = store
        self._sessions = sessions

    async def _require_conversation(self, session: AsyncSession, conversation_id: str) -> None:
        if await self._store.exists(conversation_id):
            return
        if await session.get(ArchivedConversation, conversation_id) is None:
            raise NotFound(f"no conversation {conversation_id}")

    async def set(self, conversation_id: str, raw: Sequence[object], agent_id: str) -> list[str]:
        """Replace the conversation's labels; returns them as stored. Bad input changes nothing."""
        labels = normalize_labels(raw)
        async with self._sessions() as session, session.begin():
            await self._require_conversation(session, conversation_id)
            await session.execute(
                delete(ConversationLabel).where(col(ConversationLabel.conversation_id) == conversation_id)
            )
            session.add_all(
                ConversationLabel(conversation_id=conversation_id, label=label, created_by=agent_id)
                for label in labels
            )
        return labels

    async def get(self, conversation_id: str) -> list[str]:
        """The conversation's labels (404 for a conversation that does not exist)."""
        async with self._sessions() as session:
            await self._require_conversation(session, conversation_id)
        return (await self.of([conversation_id])).get(conversation_id, [])

    async def of(self, conversation_ids: Sequence[str]) -> dict[str, list[str]]:
        """Labels per conversation (sorted); conversations without any are left out."""
        if not conversation_ids:
            return {}
        out: dict[str, list[str]] = {}
        async with self._sessions() as session:
            rows = await session.execute(
                select(ConversationLabel)
                .where(col(ConversationLabel.conversation_id).in_(list(conversation_ids)))
                .order_by(col(ConversationLabel.label))
            )
            for row in rows.scalars():
                out.setdefault(row.conversation_id, []).append(row.label)
        return out
