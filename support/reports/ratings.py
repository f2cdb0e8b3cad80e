"""Recording customer satisfaction ratings (CSAT): the widget's ``rating`` frame becomes a SQL ``rating`` row.

A rating belongs to one resolution of a conversation: the ``status`` event that resolved it (its seq is
``resolved_seq``). Rating the same resolution again (a second tab, a changed mind) updates that row, so the
report counts each resolution once. Who resolved it (``agent`` if a person was assigned during that
episode, else ``bot``), the agent and the intent of the last triaged customer message are captured when
the rating arrives, so reports never need the conversation's Redis state, which expires after archiving.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from support.conversation.store import ConversationStore, Event
from support.db.models import Rating
from support.errors import NotFound, SwitchboardError
from support.events import EventSink, NoEvents

MAX_COMMENT_CHARS = 2000  # the protocol's limit for `comment`


class RatingNotExpected(SwitchboardError):
    """A rating was sent for a conversation that is not resolved."""

    code = "not_resolved"
    http_status = 409


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a rating is attached to: the resolving status event and who resolved the conversation."""

    resolved_seq: int
    resolution: str  # "agent" | "bot"
    agent_id: str | None
    intent: str | None


def resolution_of(
    events: list[Event],
    triages: dict[int, dict[str, Any]],
    assignee: str | None,
    resolved_by: str | None = None,
) -> Resolution:
    """The last resolution in ``events`` (every event of the conversation, in seq order).

    Pure: the episode is the events after the previous resolution up to this one; a person handled it if a
    status ``agent`` occurs in it (or the state hash still names an assignee). The agent is the assignee,
    else the state's ``resolved_by`` (set by the agent desk on resolve) when a person handled the episode,
    else an ``id`` in the last ``agent`` status event.
    """
    statuses = [e for e in events if e.type == "status"]
    resolved = [e for e in statuses if e.extra.get("state") == "resolved"]
    if not resolved:
        raise RatingNotExpected("a rating is accepted once the conversation is resolved")
    last = resolved[-1]
    previous = resolved[-2].seq if len(resolved) > 1 else 0
    episode = [e for e in statuses if previous < e.seq < last.seq]
    assigned = [e for e in episode if e.extra.get("state") == "agent"]
    agent_id = assignee or (resolved_by if assigned else None)
    if agent_id is None and assigned:
        agent = assigned[-1].extra.get("agent") or {}
        agent_id = agent.get("id") if isinstance(agent, dict) else None
    triaged = [seq for seq in triages if seq < last.seq]
    intent = triages[max(triaged)].get("intent") if triaged else None
    return Resolution(
        resolved_seq=last.seq,
        resolution="agent" if assigned or assignee else "bot",
        agent_id=agent_id,
        intent=intent if isinstance(intent, str) else None,
    )


class RatingService:
    """Stores ratings; built once per process with the store and the SQL session factory."""

    def __init__(
        self,
        store: ConversationStore,
        sessions: async_sessionmaker[AsyncSession],
        *,
        events: EventSink | None = None,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.events: EventSink = events or NoEvents()

    async def record(self, conversation_id: str, *, score: int, comment: str | None, now: datetime) -> Rating:
        """Store (or update) the rating of the conversation's latest resolution.

        Raises RatingNotExpected unless the conversation is resolved, NotFound for an unknown one,
        ValueError for a score outside 1..5 (the socket handler validates frames before calling).
        """
        if not 1 <= score <= 5:
            raise ValueError("score must be 1..5")
        state = await self.store.get_state(conversation_id)
        if state is None:
            raise NotFound(f"no conversation {conversation_id}")
        if state.state != "resolved":
            raise RatingNotExpected("a rating is accepted once the conversation is resolved")
        events = await self.store.events_after(conversation_id, 0)
        resolution = resolution_of(
            events,
            await self.store.triages(conversation_id),
            state.assignee,
            state.extra.get("resolved_by"),
        )
        comment = (comment or "").strip()[:MAX_COMMENT_CHARS] or None
        for _ in range(2):  # a concurrent first insert for the same resolution wins; we then update it
            try:
                rating, created = await self._upsert(conversation_id, resolution, score, comment, now)
            except IntegrityError:
                continue
            if created:
                # Once per resolution (a changed mind updates the row, not the event); the event id makes a
                # repeated report of this first rating one event.
                await self.events.emit(
                    "rating.created",
                    {"conversation_id": conversation_id, "score": rating.score, "comment": rating.comment,
                     "resolution": rating.resolution},
                    event_id=f"rating:{conversation_id}:{resolution.resolved_seq}",
                )  # fmt: skip
            return rating
        raise RatingNotExpected("the rating could not be stored; try again")  # pragma: no cover

    async def _upsert(
        self, conversation_id: str, res: Resolution, score: int, comment: str | None, now: datetime
    ) -> tuple[Rating, bool]:
        async with self.sessions() as session:
            existing = (
                await session.execute(
                    select(Rating).where(
                        col(Rating.conversation_id) == conversation_id,
                        col(Rating.resolved_seq) == res.resolved_seq,
                    )
                )
            ).scalar_one_or_none()
            row = existing or Rating(
                conversation_id=conversation_id, resolved_seq=res.resolved_seq, score=score
            )
            row.score = score
            row.comment = comment
            row.resolution = res.resolution
            row.agent_id = res.agent_id
            row.intent = res.intent
            row.created_at = now
            session.add(row)
            await session.commit()
            return row, existing is None
