"""The agent's side of a handoff: the packet, claim, reply, notes, release, transfer, resolve.

Each action checks its input first (bad input changes nothing), then changes the queue (one Lua script,
so racing agents and processes are safe), then moves the conversation through the same engine the bot
turns use (:meth:`TurnRunner.conversation_event`), which persists and sends the customer's ``status``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from handoff.agents import AgentIdentity, AgentService
from handoff.examples import ExampleService
from handoff.notes import NoteService
from handoff.presence import AgentPresence
from handoff.queue import ClaimResult, HandoffQueue
from handoff.routing import REASON_TEXT
from handoff.scrub import People
from handoff.service import HandoffService
from handoff.sla import sla_json
from support.audit import AuditSink, NoAudit
from support.conversation import engine as e
from support.conversation.pipeline import TurnRunner
from support.conversation.store import ConversationState, ConversationStore, Event, visitor_identities
from support.errors import REDIS_OUTAGES, Conflict, NotFound, ValidationFailed
from support.events import EventSink, NoEvents
from support.tickets.service import TicketService, ticket_id_of

log = logging.getLogger(__name__)

MAX_AGENT_TEXT_CHARS = 8000
MAX_NOTE_CHARS = 4000
TRANSCRIPT_EVENTS = 300
SUGGESTIONS = 3
CONTEXT_TURNS = 6


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


@dataclass
class AgentDesk:
    """Agent actions over one conversation. Everything is passed in (built in the lifespan)."""

    store: ConversationStore
    handoff: HandoffService
    queue: HandoffQueue
    turns: TurnRunner
    examples: ExampleService
    agents: AgentService
    policy_version: str
    # Tickets are conversations too: what an agent sends or resolves there is the ticket's reply or end.
    tickets: TicketService | None = None
    events: EventSink = field(default_factory=NoEvents)  # where "conversation.resolved" is reported
    audit: AuditSink = field(default_factory=NoAudit)  # who claimed, sent, released, resolved (ids only)
    notes: NoteService | None = None  # internal notes in SQL (None: in Redis only, as before)

    # --- reading ----------------------------------------------------------------------------------

    async def _state(self, conversation_id: str) -> ConversationState:
        state = await self.store.get_state(conversation_id)
        if state is None:
            raise NotFound(f"no conversation {conversation_id}")
        return state

    async def queue_items(self) -> list[dict[str, Any]]:
        """Waiting conversations, in the order they will be served, with their SLA clocks."""
        items, now_ms = await self.queue.waiting(), await self.queue.now_ms()
        return await self._with_tickets([{**i.to_json(), "sla": sla_json(i, now_ms)} for i in items])

    async def _with_tickets(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Fill in the ticket of a ticket item queued without one (before queue items carried it)."""
        for item in items:
            card = item.get("ticket")
            if card is None or card.get("subject") is not None or self.tickets is None:
                continue
            try:
                item["ticket"] = self.tickets.queue_card(await self.tickets.get(card["id"]))
            except NotFound:
                continue  # erased meanwhile: the queue still lists it as a ticket, without a subject
        return items

    async def _ticket_of(self, conversation_id: str) -> dict[str, Any] | None:
        """A ticket conversation's ticket as the packet shows it (what the customer filed, and how a reply
        reaches them), or None for a chat or an erased ticket."""
        ticket_id = ticket_id_of(conversation_id)
        if ticket_id is None or self.tickets is None:
            return None
        try:
            ticket = await self.tickets.get(ticket_id)
        except NotFound:
            return None
        return {
            **self.tickets.queue_card(ticket),
            "name": ticket.customer_name,
            "body": ticket.body,
            "status": ticket.status,
            "created_at": _iso(ticket.created_at),
        }

    async def mine(self, agent: AgentIdentity) -> list[dict[str, Any]]:
        """The conversations ``agent`` holds."""
        out = []
        now_ms = await self.queue.now_ms()
        for cid in await self.queue.held(agent.id):
            item = await self.queue.item(cid)
            state = await self.store.get_state(cid)
            if item is None or state is None:
                continue
            last = await self.store.events_after(cid, max(0, state.last_seq - 1))
            out.append(
                {
                    **(await self._with_tickets([item.to_json()]))[0], "state": state.state,
                    "sla": sla_json(item, now_ms),
                    "last_message": last[-1].to_frame() if last else None,
                }
            )  # fmt: skip
        return out

    async def packet(self, conversation_id: str) -> dict[str, Any]:
        """Everything an agent needs to understand why the conversation is theirs, on one screen."""
        state = await self._state(conversation_id)
        item = await self.queue.item(conversation_id)
        summary, _upto, _window = await self.store.window(conversation_id)
        events = await self.store.events_after(conversation_id, max(0, state.last_seq - TRANSCRIPT_EVENTS))
        handoff_seq = state.extra.get("handoff_seq")
        triage = await self.store.triage_of(conversation_id, int(handoff_seq)) if handoff_seq else None
        if triage is None:
            triage = await self._latest_triage(conversation_id, events)
        draft = None
        if state.extra.get("draft_text") and state.extra.get("draft_id"):
            draft = {"id": state.extra["draft_id"], "text": state.extra["draft_text"]}
        question = _question(events)
        suggestions = []
        if question:
            await self.examples.refresh()
            suggestions = [
                {"id": ex.id, "text": ex.agent_text, "customer_message": ex.customer_message,
                 "score": round(score, 3)}
                for ex, score in self.examples.similar(
                    question, SUGGESTIONS, 0.1, exclude_conversation=conversation_id
                )
            ]  # fmt: skip
        reason = (item.reason if item else None) or state.extra.get("handoff_reason")
        assignee = None
        if item and item.assignee:
            assignee = {"id": item.assignee, "name": state.extra.get("assignee_name", "")}
        ticket = await self._ticket_of(conversation_id)
        return {
            "conversation_id": conversation_id,
            "kind": "chat" if ticket_id_of(conversation_id) is None else "ticket",
            "ticket": ticket,
            "state": state.state,
            "reason": reason,
            "reason_text": REASON_TEXT.get(reason or "", reason),
            "priority": item.priority if item else None,
            "waiting_since": item.waiting_since if item else None,
            "position": item.position if item else None,
            "lease_expires_at": item.lease_expires_at if item else None,
            "lapsed_from": item.lapsed_from if item else None,
            "triage": triage,
            "summary": summary,
            "transcript": [ev.to_frame(cited_text=True) for ev in events],
            "draft": draft,
            "assignee": assignee,
            "customer": state.visitor,
            # A chat whose customer left an address while nobody could answer: replies are e-mailed too.
            "contact_email": state.extra.get("contact_email"),
            "notes": await self._notes(conversation_id),
            "suggestions": suggestions,
        }

    async def _latest_triage(self, conversation_id: str, events: list[Event]) -> dict[str, Any] | None:
        for ev in reversed(events):
            if ev.type == "message" and ev.role == "customer":
                found = await self.store.triage_of(conversation_id, ev.seq)
                if found is not None:
                    return found
        return None

    async def _notes(self, conversation_id: str) -> list[dict[str, Any]]:
        legacy = await self.store.notes(conversation_id)  # written before notes moved to SQL
        if self.notes is None:
            return legacy
        return sorted([*legacy, *await self.notes.of(conversation_id)], key=lambda n: str(n["created_at"]))

    async def _require_holder(self, conversation_id: str, agent: AgentIdentity) -> ConversationState:
        state = await self._state(conversation_id)
        item = await self.queue.item(conversation_id)
        if item is None or item.assignee != agent.id:
            raise Conflict("you do not hold this conversation; claim it first")
        return state

    # --- actions ----------------------------------------------------------------------------------

    async def claim(self, conversation_id: str, agent: AgentIdentity) -> dict[str, Any]:
        """Take a waiting conversation; 409 when another agent holds it or ``agent`` is at capacity."""
        await self._state(conversation_id)
        capacity = (await self.agents.get(agent.id)).capacity
        result = await self.queue.claim(conversation_id, agent.id, capacity)
        if result is ClaimResult.NOT_QUEUED:
            raise Conflict("this conversation is not waiting for an agent")
        if result is ClaimResult.TAKEN:
            raise Conflict("another agent holds this conversation")
        if result is ClaimResult.OVER_CAPACITY:
            raise Conflict(f"you hold {capacity} conversations already (your capacity)")
        await self.claimed(conversation_id, agent.id, agent.name, first=result is ClaimResult.CLAIMED)
        if result is ClaimResult.CLAIMED:
            await self._audit(agent, "conversation.claimed", conversation_id)
        await self.handoff.queue_changed()
        return await self.packet(conversation_id)

    async def claimed(self, conversation_id: str, agent_id: str, agent_name: str, *, first: bool,
                      auto: bool = False) -> None:  # fmt: skip
        """After the queue gave the conversation to an agent (a claim, or automatic assignment with
        ``auto``): the customer hears who took it, the record and every console (``assigned``) learn it."""
        state = await self._state(conversation_id)
        await self.store.set_state(conversation_id, assignee=agent_id, assignee_name=agent_name)
        if first:
            await self.handoff.records.claimed(conversation_id, agent_id)
        if first or state.state != "agent":
            await self.turns.conversation_event(conversation_id, e.AgentClaimed(agent_name))
        await self.handoff.publish_event(
            {
                "type": "assigned",
                "conversation_id": conversation_id,
                "agent": {"id": agent_id, "name": agent_name},
                **({"auto": True} if auto else {}),
            }
        )
        if auto:  # the system gave it: who to is the detail
            await self.audit.record(
                None, "conversation.assigned", "conversation", conversation_id, {"agent_id": agent_id}
            )

    async def send(
        self,
        conversation_id: str,
        agent: AgentIdentity,
        text: str,
        draft_id: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> Event:
        """Send ``text`` to the customer as ``agent``; store it as an example (with the draft it edits).
        ``attachments``: descriptions of files the agent uploaded to this conversation, carried along."""
        if not isinstance(text, str) or not text.strip():
            raise ValidationFailed("`text` must be a non-empty string")
        if len(text) > MAX_AGENT_TEXT_CHARS:
            raise ValidationFailed(f"`text` is longer than {MAX_AGENT_TEXT_CHARS} characters")
        state = await self._require_holder(conversation_id, agent)
        bot_draft = None
        if draft_id is not None:
            if draft_id != state.extra.get("draft_id") or not state.extra.get("draft_text"):
                raise ValidationFailed(f"no current draft {draft_id!r} in this conversation")
            bot_draft = state.extra["draft_text"]
        event = await self.store.append_event(
            conversation_id, type="message", role="agent", text=text,
            author={"name": agent.name},
            extra={"agent_id": agent.id, **({"attachments": attachments} if attachments else {})}, now=_now(),
        )  # fmt: skip
        await self.store.publish(conversation_id, event.to_frame())
        await self.queue.renew(agent.id)
        await self.queue.replied(conversation_id)
        await self.handoff.records.responded(conversation_id)
        # The fact of the reply and its seq, never its text.
        await self._audit(agent, "conversation.message_sent", conversation_id, seq=event.seq)
        if bot_draft is not None:
            await self.store.set_state(conversation_id, draft_text=None, draft_id=None)
        await self._record_example(conversation_id, agent, event, bot_draft)
        if self.tickets is not None:
            await self.tickets.agent_replied(
                conversation_id, text, agent.id, ticket_id=state.extra.get("contact_ticket"),
                agent_name=agent.name,
            )  # fmt: skip
        return event

    async def _record_example(
        self, conversation_id: str, agent: AgentIdentity, sent: Event, bot_draft: str | None
    ) -> None:
        summary, _upto, window = await self.store.window(conversation_id)
        earlier = [ev for ev in window if ev.seq < sent.seq]
        question = _question(earlier)
        if not question:
            return  # the agent spoke first; there is no customer message this answers
        asked = [ev for ev in earlier if ev.role == "customer"]
        triage = await self.store.triage_of(conversation_id, asked[-1].seq) if asked else None
        recent = "\n".join(f"{ev.role}: {ev.text}" for ev in earlier[-CONTEXT_TURNS:])
        context = f"Summary: {summary}\n{recent}" if summary else recent
        state = await self.store.get_state(conversation_id)
        intent = (triage or {}).get("intent") or (state.extra.get("intent") if state else None)
        visitor = state.visitor if state else {}
        people = People(
            customer_name=_text_or_none(visitor.get("name")),
            customer_email=_text_or_none(visitor.get("email")),
            agent_name=agent.name,
        )
        try:
            await self.examples.record(
                conversation_id=conversation_id, seq=sent.seq, customer_message=question, context=context,
                bot_draft=bot_draft, agent_text=sent.text, intent=intent, agent_id=agent.id,
                policy_version=self.policy_version, people=people,
            )  # fmt: skip
        except Exception:  # the customer has the reply; a lost example must not turn that into an error
            log.exception("could not store the example of %s/%s", conversation_id, sent.seq)

    async def typing(self, conversation_id: str, agent: AgentIdentity) -> None:
        """The customer sees the agent typing."""
        await self._require_holder(conversation_id, agent)
        await self.store.publish(conversation_id, {"type": "typing", "role": "agent"})

    async def note(self, conversation_id: str, agent: AgentIdentity, text: str) -> dict[str, Any]:
        """An internal note for agents; never sent to the customer."""
        if not isinstance(text, str) or not text.strip():
            raise ValidationFailed("`text` must be a non-empty string")
        if len(text) > MAX_NOTE_CHARS:
            raise ValidationFailed(f"`text` is longer than {MAX_NOTE_CHARS} characters")
        state = await self._state(conversation_id)
        if self.notes is not None:
            note = await self.notes.add(
                conversation_id, author_id=agent.id, author_name=agent.name, text=text,
                visitor_id=dict(visitor_identities(state.visitor)).get("visitor"),
            )  # fmt: skip
        else:
            note = {
                "id": uuid.uuid4().hex, "text": text, "author": {"id": agent.id, "name": agent.name},
                "created_at": _now().isoformat().replace("+00:00", "Z"),
            }  # fmt: skip
            await self.store.add_note(conversation_id, note)
        await self.store.publish_agent(
            conversation_id, {"type": "note", "conversation_id": conversation_id, "note": note}
        )
        return note

    async def release(self, conversation_id: str, agent: AgentIdentity) -> None:
        """Back to the queue, at its original place."""
        await self._require_holder(conversation_id, agent)
        if not await self.queue.release(conversation_id, agent.id):
            raise Conflict("you do not hold this conversation")
        await self._unassign(conversation_id, agent.id, "released", e.AgentReleased())
        await self._audit(agent, "conversation.released", conversation_id)

    async def resolve(self, conversation_id: str, agent: AgentIdentity) -> None:
        """Done: the customer gets ``resolved`` and the satisfaction prompt."""
        state = await self._require_holder(conversation_id, agent)
        if not await self.queue.finish(conversation_id, agent.id):
            raise Conflict("you do not hold this conversation")
        await self.store.set_state(conversation_id, resolved_by=agent.id)
        await self.handoff.records.ended(conversation_id, "resolved")
        await self._unassign(conversation_id, agent.id, "resolved", e.Resolved())
        await self._audit(agent, "conversation.resolved", conversation_id)
        if self.tickets is not None:
            await self.tickets.resolved(
                conversation_id, agent.id, ticket_id=state.extra.get("contact_ticket")
            )
        await self.events.emit(
            "conversation.resolved", {"conversation_id": conversation_id, "resolved_by": agent.id}
        )

    async def return_to_bot(self, conversation_id: str, agent: AgentIdentity) -> None:
        """The bot answers again from the next customer message."""
        await self._require_holder(conversation_id, agent)
        if not await self.queue.finish(conversation_id, agent.id):
            raise Conflict("you do not hold this conversation")
        await self.handoff.records.ended(conversation_id, "returned_to_bot")
        await self._unassign(conversation_id, agent.id, "returned_to_bot", e.ReturnedToBot())
        await self._audit(agent, "conversation.returned_to_bot", conversation_id)

    async def transfer(self, conversation_id: str, agent: AgentIdentity, to_agent_id: str) -> None:
        """Hand the conversation to another agent (who must have room)."""
        if not isinstance(to_agent_id, str) or not to_agent_id:
            raise ValidationFailed("`agent_id` must name an agent")
        await self._require_holder(conversation_id, agent)
        target = await self.agents.get(to_agent_id)
        if not target.active:
            raise Conflict(f"{target.name} is not an active agent")
        result = await self.queue.transfer(conversation_id, agent.id, target.id, target.capacity)
        if result == -2:
            raise Conflict(f"{target.name} is at capacity")
        if result != 1:
            raise Conflict("you do not hold this conversation")
        if target.id == agent.id:
            return
        await self._audit(agent, "conversation.transferred", conversation_id, to_agent_id=target.id)
        await self.store.set_state(conversation_id, assignee=target.id, assignee_name=target.name)
        await self.turns.conversation_event(conversation_id, e.AgentClaimed(target.name))
        await self.handoff.publish_event(
            {"type": "unassigned", "conversation_id": conversation_id, "agent_id": agent.id,
             "reason": "transferred"}
        )  # fmt: skip
        await self.handoff.publish_event(
            {"type": "assigned", "conversation_id": conversation_id,
             "agent": {"id": target.id, "name": target.name}}
        )  # fmt: skip

    async def _audit(
        self, agent: AgentIdentity, action: str, conversation_id: str, **details: str | int
    ) -> None:
        await self.audit.record(agent.id, action, "conversation", conversation_id, details)

    async def _unassign(self, conversation_id: str, agent_id: str, reason: str, event: e.Input) -> None:
        await self.store.set_state(conversation_id, assignee=None, assignee_name=None)
        await self.turns.conversation_event(conversation_id, event)
        await self.handoff.publish_event(
            {"type": "unassigned", "conversation_id": conversation_id, "agent_id": agent_id, "reason": reason}
        )
        await self.handoff.queue_changed()
        if self.handoff.assignment_kick is not None:  # room for another, or the conversation is queued again
            self.handoff.assignment_kick()

    async def expire_leases(self) -> int:
        """Requeue claims whose agent went away; returns how many."""
        lapsed = await self.queue.expire()
        for conversation_id, agent_id in lapsed:
            log.info("lease of %s on %s lapsed: back to the queue", agent_id, conversation_id)
            state = await self.store.get_state(conversation_id)
            if state is not None and state.state == "agent":
                await self._unassign(conversation_id, agent_id, "lease_expired", e.AgentReleased())
        return len(lapsed)

    async def expire_forever(self, interval_s: float) -> None:
        """Background loop of every process: lapsed claims go back to the queue (each exactly once)."""
        while True:
            try:
                await self.expire_leases()
            except REDIS_OUTAGES as exc:  # expected while Redis is away: one line, tried again next interval
                log.warning("lease sweep skipped: Redis unavailable (%r)", exc)
            except Exception:
                log.exception("lease sweep failed")
            await asyncio.sleep(interval_s)

    async def presence_changed(self) -> None:
        """Presence changed: waiting customers hear again whether anybody can answer; an agent online
        may be given conversations."""
        await self.handoff.broadcast_positions()
        if self.handoff.assignment_kick is not None:
            self.handoff.assignment_kick()

    async def presence_forever(self, presence: AgentPresence, interval_s: float) -> None:
        """Background loop of every process: agents whose consoles are all gone are set away (each once,
        see :meth:`AgentPresence.sweep`), and waiting customers are told when that leaves nobody."""
        while True:
            try:
                if await presence.sweep():
                    await self.presence_changed()
            except REDIS_OUTAGES as exc:
                log.warning("presence sweep skipped: Redis unavailable (%r)", exc)
            except Exception:
                log.exception("presence sweep failed")
            await asyncio.sleep(interval_s)


def _question(events: list[Event]) -> str:
    """The customer messages since the last bot/agent message: what an agent reply answers."""
    asked: list[str] = []
    for ev in reversed(events):
        if ev.type != "message":
            continue
        if ev.role == "customer":
            asked.append(ev.text)
        elif ev.role in ("assistant", "agent") and asked:
            break
    return "\n".join(reversed(asked))


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None
