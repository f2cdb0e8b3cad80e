"""What the turn pipeline needs from the human side: put a conversation in the queue, tell agents and
waiting customers that the queue moved. No agent logic lives here (that is :mod:`handoff.desk`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from handoff.queue import HandoffQueue
from handoff.records import HandoffRecords
from handoff.routing import priority_of
from handoff.teams import Availability, TeamService
from support import keys, metrics
from support.conversation.reasons import REASON_TEXT
from support.conversation.store import ConversationStore
from support.events import EventSink, NoEvents
from support.redis_client import RedisClient

PREVIEW_CHARS = 200
# Customers further back than this get their position when they reach it (bounded work per change).
POSITION_BROADCAST_LIMIT = 100


class HandoffService:
    """Enqueue handoffs and announce queue changes. Clients are passed in."""

    def __init__(
        self,
        store: ConversationStore,
        queue: HandoffQueue,
        redis: RedisClient,
        records: HandoffRecords,
        *,
        events: EventSink | None = None,
        teams: TeamService | None = None,
        email_replies: bool = False,
    ) -> None:
        self.store = store
        self.teams = teams
        self.email_replies = email_replies  # SMTP is configured: customers may leave an address
        self.queue = queue
        self.records = records
        self.events: EventSink = events or NoEvents()
        self._redis = redis
        # Set by the runtime when automatic assignment runs: a queued conversation may be assigned now.
        self.assignment_kick: Callable[[], None] | None = None

    async def enqueue(
        self,
        conversation_id: str,
        *,
        reason: str,
        preview: str,
        intent: str | None = None,
        urgency: str | None = None,
        sentiment: str | None = None,
        ticket: Mapping[str, Any] | None = None,
        language: str | None = None,
    ) -> None:
        """Queue a handed-off conversation (priority from urgency and reason) and announce it. ``ticket``
        (a ticket's id, subject, channel and e-mail) travels with the queue item, so the queue lists tickets
        beside chats without a database read per item."""
        state = await self.store.get_state(conversation_id)
        visitor = state.visitor if state else {}
        customer = {k: visitor[k] for k in ("id", "name", "email") if visitor.get(k)}
        priority = priority_of(reason=reason, urgency=urgency, sentiment=sentiment)
        # The team's queue and its SLA targets as they are now (handoff.sla); no teams: no targets.
        team = await self.teams.team_for(intent) if self.teams is not None else "default"
        first_s, resolution_s = await self.teams.sla_targets(team) if self.teams is not None else (0, 0)
        created = await self.queue.enqueue(
            conversation_id,
            reason=reason,
            priority=priority,
            fields={
                "intent": intent, "urgency": urgency, "sentiment": sentiment,
                "preview": preview[:PREVIEW_CHARS], "customer": customer,
                **({"ticket": dict(ticket)} if ticket else {}),
                "team": team, "language": language,
                "sla": {"first_reply_s": first_s, "resolution_s": resolution_s},
            },
        )  # fmt: skip
        if created == 2:
            metrics.HANDOFFS.labels(reason=reason if reason in REASON_TEXT else "other").inc()
            await self.records.opened(
                conversation_id, reason=reason, priority=priority, intent=intent, team_id=team,
                sla=(first_s or None, resolution_s or None),
            )  # fmt: skip
            queued_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            await self.events.emit(
                "conversation.handed_off",
                {"conversation_id": conversation_id, "reason": reason, "intent": intent, "urgency": urgency,
                 "queued_at": queued_at},
            )  # fmt: skip
        if created and self.assignment_kick is not None:
            self.assignment_kick()

    async def availability(self) -> Availability:
        """Whether an agent is online and whether someone can answer now (presence and the default team's
        business hours); without teams (a unit set-up), any console seen within the claim lease."""
        if self.teams is not None:
            return await self.teams.availability()
        online = bool(await self.queue.online(within_s=self.queue.lease_ms / 1000))
        return Availability(online=online, available=online)

    def _who(self, who: Availability) -> dict[str, bool]:
        """The availability fields of a queued status frame."""
        out = {"agents_online": who.online, "agents_available": who.available}
        if not who.available and self.email_replies:
            out["email_reply"] = True
        return out

    async def closed_by_customer(self, conversation_id: str) -> None:
        """The customer ended a conversation that was waiting for or with people."""
        item = await self.queue.item(conversation_id)
        if item is None:
            return
        await self.queue.finish(conversation_id)
        await self.records.ended(conversation_id, "closed_by_customer")
        if item.assignee:
            await self.publish_event(
                {"type": "unassigned", "conversation_id": conversation_id, "agent_id": item.assignee,
                 "reason": "closed_by_customer"}
            )  # fmt: skip
        await self.queue_changed()

    async def publish_event(self, payload: dict[str, Any]) -> None:
        """Tell every agent console (queue changes, assignments)."""
        await self._redis.publish(keys.handoff_events(), json.dumps(payload))

    async def queue_changed(self, *, announced: str | None = None) -> None:
        """The queue moved: consoles refresh, waiting customers get their new position (except
        ``announced``, whose persisted status event carried its position just now)."""
        await self.publish_event({"type": "queue_changed"})
        await self.broadcast_positions(skip=announced)

    async def broadcast_positions(self, *, skip: str | None = None) -> None:
        """A ``status`` frame with the current ``queue_position`` to every waiting customer. It repeats the
        seq of the conversation's last persisted status event: an update of it, not a new event."""
        items = [
            i for i in await self.queue.waiting(limit=POSITION_BROADCAST_LIMIT) if i.conversation_id != skip
        ]
        if not items:
            return
        rows = await self.store.state_fields([i.conversation_id for i in items], "state", "status_seq")
        # Who can answer changes with presence and the clock: each update says it again.
        who = await self.teams.availability() if self.teams is not None else None
        for item, (state, status_seq) in zip(items, rows, strict=True):
            if state != "queued" or status_seq is None:
                continue
            await self.store.publish(
                item.conversation_id,
                {
                    "type": "status", "seq": int(status_seq), "state": "queued",
                    "queue_position": item.position,
                    **(self._who(who) if who else {}),
                },
            )  # fmt: skip
