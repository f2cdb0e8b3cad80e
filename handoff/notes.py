"""Internal notes, durable in SQL: written with their search-index row in one transaction, so a note is
findable at once, outlives the conversation's Redis keys (it is archived with the conversation from the
moment it is written), is in the customer's export and goes with their erasure
(:mod:`support.privacy.customer_data`). Notes written before notes moved to SQL stay in Redis and are
still shown (:meth:`AgentDesk._notes` merges them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from support.db.models import ConversationNote, iso_z, new_id
from support.search import add_entries, note_entry


def note_json(note: ConversationNote) -> dict[str, Any]:
    """A note as the packet, the agent WebSocket and the export show it."""
    return {
        "id": note.id, "text": note.text, "author": {"id": note.author_id, "name": note.author_name},
        "created_at": iso_z(note.created_at),
    }  # fmt: skip


class NoteService:
    """Writes and reads notes (sessions passed in)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def add(
        self, conversation_id: str, *, author_id: str, author_name: str, text: str, visitor_id: str | None
    ) -> dict[str, Any]:
        """Store a note and its index row; returns the note as JSON."""
        note = ConversationNote(
            id=new_id(), conversation_id=conversation_id, author_id=author_id, author_name=author_name,
            text=text, created_at=datetime.now(UTC),
        )  # fmt: skip
        async with self._sessions() as session, session.begin():
            session.add(note)
            await session.flush()
            await add_entries(
                session, [note_entry(note.id, conversation_id, text, note.created_at, visitor_id)]
            )
        return note_json(note)

    async def of(self, conversation_id: str) -> list[dict[str, Any]]:
        """The conversation's notes, oldest first."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(ConversationNote)
                .where(col(ConversationNote.conversation_id) == conversation_id)
                .order_by(col(ConversationNote.created_at), col(ConversationNote.id))
            )
            return [note_json(row) for row in rows.scalars()]
