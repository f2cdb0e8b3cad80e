"""Export and erasure of one customer's data, and erasure of conversations by age (retention).

A customer is named by a visitor id or an e-mail address. Their conversations are found through two
indexes: a Redis set per visitor id and per e-mail (written by the store when a session creates or
identifies a conversation) for conversations still hot, and the ``visitor_id`` / ``visitor_email``
columns of the archive for archived ones. Everything else hangs off those conversation ids: messages
(Redis event log or archive), notes, ratings, handoff records, examples, and the queue entries in Redis.

Each kind of data other than conversations is a :class:`CustomerDataSource` (attachments are
``support.attachments.service.AttachmentRows``, registered by the runtime: their files go with them), so an
export always has every kind and a later export after erasure shows each of them empty. Tickets
(:class:`TicketRows`) are found by the customer's e-mail and by their conversations (a ticket's messages
live in a conversation of its own, indexed under that e-mail like a chat's).

Erasure order (see also :mod:`support.conversation.archive`): tombstone the conversations in Redis, delete
their Redis keys and queue entries (from here on appends fail with NotFound), then delete SQL rows, then
the index entries. The archiver checks the tombstone after writing, so it cannot bring a conversation back.
Erasure is idempotent: running it again finds nothing and counts zeros.

The model usage ledger holds no customer text (ids, token counts, cost, outcome), so it is kept as it is:
cost reports stay right after an erasure. The report facts (``conversation_fact``) hold none either, but
they are one row per conversation with its rating and agent: erasure deletes them, retention keeps them.

The handoff queue and the examples belong to the human side (``handoff``), which ``support`` never imports
(docs/architecture.md, "Layers"): this service names what it calls on them as the ports
:class:`HandoffQueuePort` and :class:`ExampleStore`, and the runtime passes the handoff package's services.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar, Protocol

from sqlalchemy import delete, or_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import SQLModel, col, select

from support.audit import AuditSink, NoAudit
from support.conversation.archive import delete_archived
from support.conversation.store import ConversationStore, Event, visitor_identities
from support.db.models import (
    ArchivedConversation,
    ArchivedMessage,
    ConversationFact,
    ConversationLabel,
    ConversationNote,
    Example,
    HandoffRecord,
    Rating,
    Ticket,
    TicketReply,
    WebhookAttempt,
    WebhookDelivery,
)
from support.errors import ValidationFailed
from support.search import delete_entries

log = logging.getLogger(__name__)

MAX_VISITOR_ID_CHARS = 256  # as the archive's visitor_id column
MAX_EMAIL_CHARS = 320  # RFC 5321's local part (64) + @ + domain (255)
RETENTION_MAX_PAGES = 5  # archive pages a sweep reads past revived conversations: bounded work per sweep
SQL_IN_CHUNK = 500  # ids per IN (...) list: well under every driver's bound-parameter limit
# Every kind an export lists, in order; a kind without a registered source stays empty.
KINDS = (
    "conversations", "ratings", "handoffs", "examples", "tickets", "attachments", "webhook_deliveries",
    "facts", "notes", "labels",
)  # fmt: skip


class QueuedItem(Protocol):
    """A conversation's entry in the agent queue, as far as erasure reads it."""

    @property
    def assignee(self) -> str | None:
        """The agent who claimed it; None while it waits."""
        ...


class QueueEntries(Protocol):
    """The agent queue's entries, by conversation."""

    async def item(self, conversation_id: str) -> QueuedItem | None:
        """The conversation's queue entry, if it has one."""
        ...

    async def finish(self, conversation_id: str) -> bool:
        """Take the conversation out of the queue (claimed or not)."""
        ...


class HandoffQueuePort(Protocol):
    """The handoff side: its queue, and the events agent consoles listen to (``HandoffService``)."""

    @property
    def queue(self) -> QueueEntries:
        """The agent queue."""
        ...

    async def publish_event(self, payload: dict[str, Any]) -> None:
        """Tell every agent console."""
        ...

    async def queue_changed(self, *, announced: str | None = None) -> None:
        """The queue moved: consoles refresh, waiting customers get their new positions."""
        ...


class ExampleStore(Protocol):
    """Examples by the conversation they came from (``ExampleService``)."""

    async def of_conversations(self, conversation_ids: Sequence[str]) -> list[Example]:
        """Every example that came from these conversations."""
        ...

    async def erase_conversations(self, conversation_ids: Sequence[str], *, unlink: bool = False) -> int:
        """Delete them (``unlink``: keep them without the link to the conversation); how many."""
        ...


WEBHOOK_NEEDLES_PER_QUERY = 50  # LIKE clauses per query over the delivery log


def in_chunks(ids: Sequence[str]) -> Iterable[list[str]]:
    """``ids`` in lists of at most :data:`SQL_IN_CHUNK`, one ``IN (...)`` each."""
    for start in range(0, len(ids), SQL_IN_CHUNK):
        yield list(ids[start : start + SQL_IN_CHUNK])


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


@dataclass(frozen=True, slots=True)
class CustomerRef:
    """Who: exactly one of a visitor id or an e-mail address (matched case-insensitively)."""

    kind: str  # "visitor" | "email"
    value: str

    @classmethod
    def parse(cls, visitor_id: str | None, email: str | None) -> CustomerRef:
        """From the request's ``visitor_id`` / ``email``: exactly one must be given, non-empty."""
        given = [(k, v) for k, v in (("visitor", visitor_id), ("email", email)) if v is not None and v != ""]
        if len(given) != 1:
            raise ValidationFailed("give exactly one of `visitor_id` or `email`")
        kind, value = given[0]
        if not isinstance(value, str):
            raise ValidationFailed(f"`{'visitor_id' if kind == 'visitor' else 'email'}` must be a string")
        if kind == "email":
            value = value.strip().lower()
            if "@" not in value or len(value) > MAX_EMAIL_CHARS:
                raise ValidationFailed("`email` must be an e-mail address")
        elif len(value) > MAX_VISITOR_ID_CHARS:
            raise ValidationFailed(f"`visitor_id` is longer than {MAX_VISITOR_ID_CHARS} characters")
        return cls(kind, value)

    def to_json(self) -> dict[str, str | None]:
        """As the export names the customer."""
        return {
            "visitor_id": self.value if self.kind == "visitor" else None,
            "email": self.value if self.kind == "email" else None,
        }


@dataclass(frozen=True, slots=True)
class CustomerScope:
    """What a source works on: the customer (None for a retention sweep) and their conversation ids."""

    customer: CustomerRef | None
    conversation_ids: list[str]


class CustomerDataSource(Protocol):
    """One kind of customer data beside conversations (ratings, examples, tickets...)."""

    kind: str

    async def export(self, scope: CustomerScope) -> list[dict[str, Any]]:
        """Every record of this kind in scope, as JSON."""
        ...

    async def erase(self, scope: CustomerScope, *, retention: bool) -> int:
        """Erase every record of this kind in scope; returns how many. ``retention``: an age sweep."""
        ...


class ConversationRows:
    """SQL rows keyed by ``conversation_id`` (ratings, handoff records): exported as their columns."""

    def __init__(self, kind: str, model: type[SQLModel], sessions: async_sessionmaker[AsyncSession]) -> None:
        self.kind = kind
        self._model = model
        self._sessions = sessions

    async def export(self, scope: CustomerScope) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        column = col(self._model.conversation_id)  # type: ignore[attr-defined]
        async with self._sessions() as session:
            for chunk in in_chunks(scope.conversation_ids):
                rows = (await session.execute(select(self._model).where(column.in_(chunk)))).scalars()
                out += [_row_json(row) for row in rows]
        return out

    async def erase(self, scope: CustomerScope, *, retention: bool) -> int:
        count = 0
        column = col(self._model.conversation_id)  # type: ignore[attr-defined]
        async with self._sessions() as session, session.begin():
            for chunk in in_chunks(scope.conversation_ids):
                result = await session.execute(delete(self._model).where(column.in_(chunk)))
                count += int(result.rowcount or 0)  # type: ignore[attr-defined]
        return count


class FactRows(ConversationRows):
    """The report facts of the customer's conversations (``conversation_fact``: times, counts, intent,
    rating, cost; no customer text). Erasure deletes them; a retention sweep keeps them, so reports over
    past periods stay right after the conversations themselves are gone."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        super().__init__("facts", ConversationFact, sessions)

    async def export(self, scope: CustomerScope) -> list[dict[str, Any]]:
        rows = await super().export(scope)
        return [{k: str(v) if isinstance(v, Decimal) else v for k, v in row.items()} for row in rows]

    async def erase(self, scope: CustomerScope, *, retention: bool) -> int:
        if retention:
            return 0
        return await super().erase(scope, retention=retention)


class ExampleRows:
    """Examples that came from the customer's conversations. Erasure deletes them; a retention sweep keeps
    them (they are what agents taught) unless configured to delete, and only unlinks the conversation."""

    kind = "examples"

    def __init__(self, examples: ExampleStore, *, retention_deletes: bool = False) -> None:
        self._examples = examples
        self._retention_deletes = retention_deletes

    async def export(self, scope: CustomerScope) -> list[dict[str, Any]]:
        return [_row_json(e) for e in await self._examples.of_conversations(scope.conversation_ids)]

    async def erase(self, scope: CustomerScope, *, retention: bool) -> int:
        unlink = retention and not self._retention_deletes
        return await self._examples.erase_conversations(scope.conversation_ids, unlink=unlink)


class TicketRows:
    """Tickets filed by the customer (their e-mail) or held in the conversations in scope, each exported
    with its replies; erasure deletes the replies and the tickets. A retention sweep erases the tickets of
    the conversations it erases."""

    kind = "tickets"

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def _tickets(self, session: AsyncSession, scope: CustomerScope) -> list[Ticket]:
        found: dict[str, Ticket] = {}
        if scope.customer is not None and scope.customer.kind == "email":
            rows = await session.execute(
                select(Ticket).where(col(Ticket.customer_email) == scope.customer.value)
            )
            found.update((t.id, t) for t in rows.scalars())
        for chunk in in_chunks(scope.conversation_ids):
            rows = await session.execute(select(Ticket).where(col(Ticket.conversation_id).in_(chunk)))
            found.update((t.id, t) for t in rows.scalars())
        return sorted(found.values(), key=lambda t: (t.created_at, t.id))

    async def export(self, scope: CustomerScope) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        async with self._sessions() as session:
            for ticket in await self._tickets(session, scope):
                replies = await session.execute(
                    select(TicketReply)
                    .where(col(TicketReply.ticket_id) == ticket.id)
                    .order_by(col(TicketReply.created_at), col(TicketReply.id))
                )
                out.append({**_row_json(ticket), "replies": [_row_json(r) for r in replies.scalars()]})
        return out

    async def erase(self, scope: CustomerScope, *, retention: bool) -> int:
        async with self._sessions() as session, session.begin():
            ids = [t.id for t in await self._tickets(session, scope)]
            for chunk in in_chunks(ids):
                await session.execute(delete(TicketReply).where(col(TicketReply.ticket_id).in_(chunk)))
                await session.execute(delete(Ticket).where(col(Ticket.id).in_(chunk)))
        return len(ids)


class WebhookDeliveryRows:
    """Copies of events about the customer in the webhook delivery log (their e-mail, or one of their
    conversations, in the signed body): exported as sent; erasure deletes them with their attempts, so an
    erased customer's e-mail or ticket subject does not live on in the log."""

    kind = "webhook_deliveries"

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    def _needles(self, scope: CustomerScope) -> list[str]:
        # As the bodies are serialised (json.dumps): a value's JSON string form, quotes included.
        needles = [json.dumps(cid) for cid in scope.conversation_ids]
        if scope.customer is not None and scope.customer.kind == "email":
            needles.append(json.dumps(scope.customer.value, ensure_ascii=False))
        return needles

    async def _deliveries(self, session: AsyncSession, scope: CustomerScope) -> list[WebhookDelivery]:
        found: dict[str, WebhookDelivery] = {}
        needles = self._needles(scope)
        for start in range(0, len(needles), WEBHOOK_NEEDLES_PER_QUERY):
            chunk = needles[start : start + WEBHOOK_NEEDLES_PER_QUERY]
            condition = or_(*(col(WebhookDelivery.payload).contains(n, autoescape=True) for n in chunk))
            rows = await session.execute(select(WebhookDelivery).where(condition))
            found.update((d.id, d) for d in rows.scalars())
        return sorted(found.values(), key=lambda d: (d.created_at, d.id))

    async def export(self, scope: CustomerScope) -> list[dict[str, Any]]:
        async with self._sessions() as session:
            return [
                {**_row_json(d), "payload": json.loads(d.payload)}
                for d in await self._deliveries(session, scope)
            ]

    async def erase(self, scope: CustomerScope, *, retention: bool) -> int:
        async with self._sessions() as session, session.begin():
            ids = [d.id for d in await self._deliveries(session, scope)]
            for chunk in in_chunks(ids):
                await session.execute(
                    delete(WebhookAttempt).where(col(WebhookAttempt.delivery_id).in_(chunk))
                )
                await session.execute(delete(WebhookDelivery).where(col(WebhookDelivery.id).in_(chunk)))
        return len(ids)


def _row_json(row: SQLModel) -> dict[str, Any]:
    data = row.model_dump()
    return {k: _iso(v) if isinstance(v, datetime) else v for k, v in data.items()}


@dataclass
class _Conversation:
    """One conversation as found live in Redis, in the archive, or both (live wins: it is newer)."""

    id: str
    widget_key: str
    visitor: dict[str, Any]
    state: str
    created_at: str | None
    last_activity: str | None
    summary: str
    live: bool
    archived: bool
    messages: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "widget_key": self.widget_key, "visitor": self.visitor, "state": self.state,
            "created_at": self.created_at, "last_activity": self.last_activity, "summary": self.summary,
            "live": self.live, "archived": self.archived, "messages": self.messages, "notes": self.notes,
        }  # fmt: skip


def _message_json(ev: Event) -> dict[str, Any]:
    out: dict[str, Any] = {
        "seq": ev.seq,
        "id": ev.id,
        "role": ev.role,
        "text": ev.text,
        "created_at": ev.created_at,
    }
    if ev.author is not None:
        out["author"] = ev.author
    if ev.extra.get("attachments"):  # described here; the files themselves are listed under "attachments"
        out["attachments"] = ev.extra["attachments"]
    return out


class CustomerDataService:
    """Export, erase, retention sweep. Clients and services are passed in (built by the runtime)."""

    builtin_kinds: ClassVar[tuple[str, ...]] = ("conversations",)

    def __init__(
        self,
        store: ConversationStore,
        sessions: async_sessionmaker[AsyncSession],
        handoff: HandoffQueuePort,
        sources: Sequence[CustomerDataSource],
        *,
        audit: AuditSink | None = None,
    ) -> None:
        self._store = store
        self._audit: AuditSink = audit or NoAudit()
        self._sessions = sessions
        self._handoff = handoff
        self._sources = list(sources)

    # --- finding ----------------------------------------------------------------------------------

    async def conversation_ids(self, customer: CustomerRef) -> list[str]:
        """Every conversation indexed under the customer, hot (Redis) or archived (SQL), and the
        conversations of the tickets filed under their e-mail."""
        ids = await self._store.customer_conversation_ids(customer.kind, customer.value)
        column = (
            ArchivedConversation.visitor_id
            if customer.kind == "visitor"
            else ArchivedConversation.visitor_email
        )
        async with self._sessions() as session:
            rows = await session.execute(
                select(col(ArchivedConversation.id)).where(col(column) == customer.value)
            )
            ids.update(rows.scalars())
            if customer.kind == "email":  # a ticket's conversation, even if its index entry was lost
                tickets = await session.execute(
                    select(col(Ticket.conversation_id)).where(col(Ticket.customer_email) == customer.value)
                )
                ids.update(tickets.scalars())
        return sorted(ids)

    async def _conversations(self, conversation_ids: Sequence[str]) -> list[_Conversation]:
        """The conversations that still exist, with their messages and notes (live first, else archive)."""
        found: dict[str, _Conversation] = {}
        for cid in conversation_ids:
            state = await self._store.get_state(cid)
            if state is None:
                continue
            events = await self._store.events_after(cid, 0)
            summary, _upto, _window = await self._store.window(cid)
            found[cid] = _Conversation(
                id=cid, widget_key=state.widget_key, visitor=state.visitor, state=state.state,
                created_at=state.created_at, last_activity=state.last_activity, summary=summary,
                live=True, archived=False, notes=await self._store.notes(cid),
                messages=[_message_json(ev) for ev in events if ev.type == "message"],
            )  # fmt: skip
        async with self._sessions() as session:
            for chunk in in_chunks(conversation_ids):
                rows = await session.execute(
                    select(ArchivedConversation).where(col(ArchivedConversation.id).in_(chunk))
                )
                archived = {row.id: row for row in rows.scalars()}
                for cid, row in archived.items():
                    if cid in found:
                        found[cid].archived = True
                        continue
                    found[cid] = _Conversation(
                        id=cid, widget_key=row.widget_key, visitor=json.loads(row.visitor or "{}"),
                        state=row.state, created_at=_iso(row.created_at),
                        last_activity=_iso(row.last_activity), summary=row.summary, live=False, archived=True,
                    )  # fmt: skip
                cold = [cid for cid in archived if not found[cid].live]
                if not cold:
                    continue
                cold_events = await session.execute(
                    select(ArchivedMessage)
                    .where(
                        col(ArchivedMessage.conversation_id).in_(cold), col(ArchivedMessage.type) == "message"
                    )
                    .order_by(col(ArchivedMessage.conversation_id), col(ArchivedMessage.seq))
                )
                for ev in cold_events.scalars():
                    message: dict[str, Any] = {
                        "seq": ev.seq, "id": ev.event_id, "role": ev.role, "text": ev.text,
                        "created_at": _iso(ev.created_at),
                    }  # fmt: skip
                    if ev.author:
                        message["author"] = json.loads(ev.author)
                    found[ev.conversation_id].messages.append(message)
        return [found[cid] for cid in conversation_ids if cid in found]

    # --- export -----------------------------------------------------------------------------------

    async def export(
        self, customer: CustomerRef, *, now: datetime | None = None, by: str | None = None
    ) -> dict[str, Any]:
        """Everything held about the customer; every kind is listed, empty when there is nothing."""
        ids = await self.conversation_ids(customer)
        # How the customer was named and how much was found; never the visitor id or address itself.
        await self._audit.record(
            by, "customer_data.exported", "customer", None, {"by": customer.kind, "conversations": len(ids)}
        )
        scope = CustomerScope(customer, ids)
        out: dict[str, Any] = {
            "customer": customer.to_json(),
            "exported_at": (now or datetime.now(UTC)).isoformat(),
            **{kind: [] for kind in KINDS},
        }
        out["conversations"] = [c.to_json() for c in await self._conversations(ids)]
        for source in self._sources:
            out[source.kind] = await source.export(scope)
        return out

    # --- erasure ----------------------------------------------------------------------------------

    async def erase(self, customer: CustomerRef, *, by: str | None = None) -> dict[str, int]:
        """Erase everything held about the customer; returns how many of each kind went."""
        ids = await self.conversation_ids(customer)
        counts = await self.erase_conversations(ids, customer=customer)
        await self._audit.record(
            by, "customer_data.erased", "customer", None, {"by": customer.kind, **counts}
        )
        return counts

    async def erase_conversations(
        self, conversation_ids: Sequence[str], *, customer: CustomerRef | None = None, retention: bool = False
    ) -> dict[str, int]:
        """Erase conversations everywhere they live, and what hangs off them (see the module docstring)."""
        ids = list(dict.fromkeys(conversation_ids))
        counts: dict[str, int] = dict.fromkeys(KINDS, 0) | {"messages": 0, "redis_keys": 0}
        identities = {(customer.kind, customer.value)} if customer is not None else set()
        if not ids:
            if customer is not None:  # stale index entries only: drop them
                await self._store.unindex_customer(ids, sorted(identities))
            return counts
        existing = await self._conversations(ids)
        counts["conversations"] = len(existing)
        counts["messages"] = sum(len(c.messages) for c in existing)
        for conversation in existing:
            identities.update(visitor_identities(conversation.visitor))
        await self._store.mark_erased(ids)
        queue_moved = False
        for cid in ids:
            counts["redis_keys"] += await self._store.erase(cid)
            queue_moved = await self._leave_queue(cid) or queue_moved
        if queue_moved:
            await self._handoff.queue_changed()
        async with self._sessions() as session, session.begin():
            for chunk in in_chunks(ids):
                await delete_archived(session, chunk)
                await delete_entries(session, chunk)  # the search index: gone with the conversations
        scope = CustomerScope(customer, ids)
        for source in self._sources:
            counts[source.kind] = await source.erase(scope, retention=retention)
        await self._store.unindex_customer(ids, sorted(identities))
        return counts

    async def _leave_queue(self, conversation_id: str) -> bool:
        """Take an erased conversation out of the agent queue; its agent's console lets go of it."""
        item = await self._handoff.queue.item(conversation_id)
        if item is None:
            return False
        await self._handoff.queue.finish(conversation_id)
        if item.assignee:
            await self._handoff.publish_event(
                {"type": "unassigned", "conversation_id": conversation_id, "agent_id": item.assignee,
                 "reason": "erased"}
            )  # fmt: skip
        return True

    # --- retention --------------------------------------------------------------------------------

    async def expired_conversations(self, before: datetime, limit: int) -> list[str]:
        """Up to ``limit`` conversations whose last activity is before ``before``: hot ones from the
        archiver's index, archived ones from SQL (oldest first in each)."""
        found = [cid for cid, _score in await self._store.idle_conversations(before, limit)]
        offset = 0
        for _page in range(RETENTION_MAX_PAGES):
            if len(found) >= limit:
                break
            async with self._sessions() as session:
                rows = await session.execute(
                    select(col(ArchivedConversation.id))
                    .where(col(ArchivedConversation.last_activity) < before)
                    .order_by(col(ArchivedConversation.last_activity), col(ArchivedConversation.id))
                    .offset(offset)
                    .limit(limit)
                )
                archived = list(rows.scalars())
            offset += len(archived)
            # An archived conversation may have come back to life since (its archive row is updated only
            # when it goes idle again): the hot state's last activity decides.
            hot_last = await self._store.state_fields(archived, "last_activity")
            found += [
                cid
                for cid, (last,) in zip(archived, hot_last, strict=True)
                if (last is None or datetime.fromisoformat(last) < before) and cid not in found
            ]
            if len(archived) < limit:
                break
        return found[:limit]

    async def sweep_retention(self, before: datetime, limit: int) -> dict[str, int]:
        """Erase up to ``limit`` conversations last active before ``before`` (bounded work per call)."""
        return await self.erase_conversations(await self.expired_conversations(before, limit), retention=True)


def default_sources(
    sessions: async_sessionmaker[AsyncSession], examples: ExampleStore, *, retention_deletes_examples: bool
) -> list[CustomerDataSource]:
    """The sources every process registers (attachments add theirs here)."""
    return [
        ConversationRows("ratings", Rating, sessions),
        ConversationRows("handoffs", HandoffRecord, sessions),
        ExampleRows(examples, retention_deletes=retention_deletes_examples),
        TicketRows(sessions),
        WebhookDeliveryRows(sessions),
        FactRows(sessions),
        ConversationRows("notes", ConversationNote, sessions),
        ConversationRows("labels", ConversationLabel, sessions),
    ]


__all__ = [
    "KINDS",
    "ConversationRows",
    "CustomerDataService",
    "CustomerDataSource",
    "CustomerRef",
    "CustomerScope",
    "ExampleRows",
    "FactRows",
    "TicketRows",
    "WebhookDeliveryRows",
    "default_sources",
]
