"""The SQL trail of each handoff (``handoff_record``), for operations reports.

Written beside the Redis queue, never instead of it: a failed write is logged and the conversation goes on
(a report missing a row is better than a customer missing a reply).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from support.db.models import HandoffRecord, utcnow

log = logging.getLogger(__name__)


class HandoffRecords:
    """Open, claim, first response, end: one row per stay with humans. The session factory is passed in."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def opened(
        self,
        conversation_id: str,
        *,
        reason: str,
        priority: str,
        intent: str | None,
        team_id: str | None = None,
        sla: tuple[int | None, int | None] = (None, None),
    ) -> None:
        """A conversation was handed to people (to ``team_id``'s queue, with its SLA targets then)."""
        try:
            async with self._sessions() as session:
                session.add(
                    HandoffRecord(
                        conversation_id=conversation_id, reason=reason, priority=priority, intent=intent,
                        team_id=team_id, sla_first_reply_s=sla[0], sla_resolution_s=sla[1],
                    )
                )  # fmt: skip
                await session.commit()
        except Exception:
            log.exception("could not record the handoff of %s", conversation_id)

    async def _update_open(self, conversation_id: str, only_if_null: str | None, **values: object) -> None:
        try:
            async with self._sessions() as session:
                latest = (
                    select(col(HandoffRecord.id))
                    .where(col(HandoffRecord.conversation_id) == conversation_id)
                    .where(col(HandoffRecord.ended_at).is_(None))
                    .order_by(col(HandoffRecord.queued_at).desc())
                    .limit(1)
                    .scalar_subquery()
                )
                stmt = update(HandoffRecord).where(col(HandoffRecord.id) == latest).values(**values)
                if only_if_null is not None:
                    stmt = stmt.where(getattr(HandoffRecord, only_if_null).is_(None))
                await session.execute(stmt)
                await session.commit()
        except Exception:
            log.exception("could not update the handoff record of %s", conversation_id)

    async def claimed(self, conversation_id: str, agent_id: str, at: datetime | None = None) -> None:
        """The first claim of this stay (later claims after a release keep the first time)."""
        await self._update_open(conversation_id, "claimed_at", claimed_at=at or utcnow(), agent_id=agent_id)

    async def responded(self, conversation_id: str, at: datetime | None = None) -> None:
        """The first agent message of this stay."""
        await self._update_open(conversation_id, "first_response_at", first_response_at=at or utcnow())

    async def ended(self, conversation_id: str, outcome: str, at: datetime | None = None) -> None:
        """Resolved, returned to the bot, or closed by the customer."""
        await self._update_open(conversation_id, None, ended_at=at or utcnow(), outcome=outcome)
