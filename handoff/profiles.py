"""A customer's profile for agents: who they are and every past conversation, ticket and rating.

A customer is a visitor id (the widget's identity; tickets have none of their own). Their conversations
are found as export and erasure find them (:mod:`support.privacy.customer_data`): the Redis index of hot
conversations and the archive's ``visitor_id`` column. Tickets are those of their conversations and those
filed under the e-mail address their conversations carry.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, or_, select

from handoff.labels import LabelService, normalize_label
from support.conversation.store import ConversationStore, visitor_identities
from support.db.models import ArchivedConversation, ConversationFact, Rating, Ticket, iso_z
from support.errors import NotFound, ValidationFailed
from support.tickets.service import ticket_id_of

MAX_VISITOR_ID_CHARS = 256  # as the archive's visitor_id column


def _iso(value: datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return iso_z(value)


class ProfileService:
    """Builds profiles (store, sessions and labels passed in)."""

    def __init__(
        self, store: ConversationStore, sessions: async_sessionmaker[AsyncSession], labels: LabelService
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._labels = labels

    async def profile(self, visitor_id: str, *, label: str | None = None) -> dict[str, Any]:
        """The profile; ``label`` keeps only conversations with that label. 404 for an unknown visitor."""
        if not visitor_id or len(visitor_id) > MAX_VISITOR_ID_CHARS:
            raise ValidationFailed(f"a visitor id has 1 to {MAX_VISITOR_ID_CHARS} characters")
        wanted = normalize_label(label) if label is not None else None
        ids = await self._store.customer_conversation_ids("visitor", visitor_id)
        conversations: dict[str, dict[str, Any]] = {}
        visitors: dict[str, dict[str, Any]] = {}
        async with self._sessions() as session:
            archived = await session.execute(
                select(ArchivedConversation).where(col(ArchivedConversation.visitor_id) == visitor_id)
            )
            for row in archived.scalars():
                visitors[row.id] = json.loads(row.visitor or "{}")
                conversations[row.id] = {
                    "conversation_id": row.id, "state": row.state, "started_at": _iso(row.created_at),
                    "last_activity": _iso(row.last_activity),
                }  # fmt: skip
        for cid in sorted(ids):
            state = await self._store.get_state(cid)
            if state is None:
                continue
            if dict(visitor_identities(state.visitor)).get("visitor") != visitor_id:
                continue  # a stale index entry
            visitors[cid] = state.visitor
            conversations[cid] = {
                "conversation_id": cid, "state": state.state, "started_at": _iso(state.created_at),
                "last_activity": _iso(state.last_activity),
            }  # fmt: skip
        if not conversations:
            raise NotFound(f"no customer with visitor id {visitor_id!r}")
        newest = max(conversations.values(), key=lambda c: c["last_activity"] or "")["conversation_id"]
        visitor = visitors.get(newest, {})
        email = next((v for v in (vis.get("email") for vis in visitors.values()) if isinstance(v, str)), None)
        name = next((v for v in (vis.get("name") for vis in visitors.values()) if isinstance(v, str)), None)
        cids = list(conversations)
        labels = await self._labels.of(cids)
        async with self._sessions() as session:
            facts = {
                f.conversation_id: f
                for f in (
                    await session.execute(
                        select(ConversationFact).where(col(ConversationFact.conversation_id).in_(cids))
                    )
                ).scalars()
            }
            ratings = list(
                (
                    await session.execute(
                        select(Rating)
                        .where(col(Rating.conversation_id).in_(cids))
                        .order_by(col(Rating.created_at))
                    )
                ).scalars()
            )
            ticket_filter: ColumnElement[bool] = col(Ticket.conversation_id).in_(cids)
            if email:
                ticket_filter = or_(ticket_filter, col(Ticket.customer_email) == email.lower())
            tickets = list(
                (
                    await session.execute(
                        select(Ticket).where(ticket_filter).order_by(col(Ticket.created_at).desc())
                    )
                ).scalars()
            )
        rating_of = {r.conversation_id: r for r in ratings}  # the latest rating wins
        out = []
        for cid, conv in conversations.items():
            fact = facts.get(cid)
            rating = rating_of.get(cid)
            conv_labels = labels.get(cid, [])
            if wanted is not None and wanted not in conv_labels:
                continue
            rated = None
            if rating is not None:
                rated = {"score": rating.score, "comment": rating.comment, "at": _iso(rating.created_at)}
            out.append(
                {
                    **conv, "kind": "ticket" if ticket_id_of(cid) else "chat", "ticket_id": ticket_id_of(cid),
                    "labels": conv_labels, "resolution": fact.resolution_type if fact else None,
                    "resolved_at": _iso(fact.resolved_at) if fact else None, "rating": rated,
                }
            )  # fmt: skip
        out.sort(key=lambda c: c["started_at"] or "", reverse=True)
        return {
            "visitor_id": visitor_id,
            "name": name,
            "email": email,
            "visitor": visitor,
            "conversations": out,
            "tickets": [
                {
                    "id": t.id,
                    "conversation_id": t.conversation_id,
                    "subject": t.subject,
                    "status": t.status,
                    "channel": t.channel,
                    "created_at": _iso(t.created_at),
                }
                for t in tickets
            ],
            "ratings": [
                {
                    "conversation_id": r.conversation_id,
                    "score": r.score,
                    "comment": r.comment,
                    "at": _iso(r.created_at),
                }
                for r in reversed(ratings)
            ],
        }
