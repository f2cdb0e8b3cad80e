"""One conversation, read-only, for the report drill-down: its facts, its messages and its ticket.

Messages come from the store (Redis) while the conversation is live there, else from the archived events
in SQL; a conversation erased on request has no messages left, and its transcript is empty.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from support.conversation.store import ConversationStore
from support.db.models import ArchivedMessage, Ticket
from support.errors import NotFound
from support.reports.conversations import conversation_facts, iso


def _author(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def _message(seq: int, role: str, text: str, created_at: Any, author: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "seq": seq,
        "role": role,
        "text": text,
        "created_at": iso(created_at) if isinstance(created_at, datetime) else created_at,
    }
    who = _author(author)
    if who is not None:
        out["author"] = who
    return out


async def transcript(
    store: ConversationStore, sessions: async_sessionmaker[AsyncSession], conversation_id: str
) -> list[dict[str, Any]]:
    """The conversation's messages in order (status events are left out)."""
    events = await store.events_after(conversation_id, 0)
    if events:
        return [
            _message(e.seq, e.role, e.text, e.created_at, e.author) for e in events if e.type == "message"
        ]
    async with sessions() as session:
        rows = (
            await session.execute(
                select(ArchivedMessage)
                .where(
                    col(ArchivedMessage.conversation_id) == conversation_id,
                    col(ArchivedMessage.type) == "message",
                )
                .order_by(col(ArchivedMessage.seq))
            )
        ).scalars().all()  # fmt: skip
    return [_message(r.seq, r.role, r.text, r.created_at, r.author) for r in rows]


async def ticket_of(
    sessions: async_sessionmaker[AsyncSession], conversation_id: str
) -> dict[str, Any] | None:
    """The ticket whose messages live in this conversation, or None for a chat."""
    async with sessions() as session:
        ticket = (
            await session.execute(select(Ticket).where(col(Ticket.conversation_id) == conversation_id))
        ).scalar_one_or_none()
    if ticket is None:
        return None
    return {
        "id": ticket.id,
        "subject": ticket.subject,
        "channel": ticket.channel,
        "status": ticket.status,
        "customer_name": ticket.customer_name,
        "customer_email": ticket.customer_email,
        "created_at": iso(ticket.created_at),
        "resolved_at": iso(ticket.resolved_at),
    }


async def conversation_detail(
    store: ConversationStore,
    sessions: async_sessionmaker[AsyncSession],
    conversation_id: str,
    *,
    now: datetime,
) -> dict[str, Any]:
    """``{"facts", "transcript", "ticket"?}``; NotFound when reports know no such conversation."""
    facts = await conversation_facts(sessions, conversation_id, now=now)
    if facts is None:
        raise NotFound(f"no conversation {conversation_id} in the reports")
    out: dict[str, Any] = {"facts": facts, "transcript": await transcript(store, sessions, conversation_id)}
    ticket = await ticket_of(sessions, conversation_id)
    if ticket is not None:
        out["ticket"] = ticket
    return out
