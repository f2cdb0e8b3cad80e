"""Tickets: support requests filed over REST, through the same triage, answer and handoff as chat.

A ticket is a row in SQL (what integrations read back) and a conversation of its own in the store
(``ticket-<id>``), so the agents' queue, console, drafts and examples work on it as on a chat. Its path:

1. :meth:`TicketService.create` stores it (once per ``Idempotency-Key``), writes the customer's message to
   its conversation, reports ``ticket.created`` and queues its triage job.
2. :meth:`TicketService.triage_ticket` (job ``ticket.triage``) triages it in real time and decides with
   chat's routing whether the bot may answer. Urgent tickets (``SWITCHBOARD_TICKETS_URGENT_URGENCIES``)
   are drafted at once; one routed to people is queued before its draft is written. The rest wait for a
   Message Batch (``support.tickets.batches``), at half the price.
3. A finished draft, from either path, is *recorded* in one SQL transaction (:func:`record_outcome`: a
   reply, or the reason it goes to people) and then *settled* (:meth:`TicketService.settle`, job
   ``ticket.settle``): the conversation, the agents' queue and the webhooks are brought in line with
   what SQL says. Settling is idempotent, so a worker that dies between the two is made good by running
   it again, and the batch path can record many results in the transaction that marks them applied.

Customer text reaches the model only through ``support.llm.triage`` and ``build_answer_request``, which
redact personal data first, exactly as for chat.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from anthropic.types import Usage
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from support.attachments.service import AttachmentService
from support.attachments.service import public as public_attachment
from support.conversation.ports import ExamplesPort, HandoffPort, RoutingPort
from support.conversation.store import ConversationStore, LockToken
from support.db.models import Ticket, TicketReply
from support.errors import Conflict, ModelError, NotFound
from support.events import EventSink
from support.jobs import JobEngine
from support.llm.answer import AnswerDraft, build_answer_request, draft_from_message, request_documents
from support.llm.gateway import ModelGateway
from support.llm.offline import OfflineResponder
from support.llm.policy import Policy
from support.llm.triage import triage
from support.mail import Mailer, one_line, reply_message
from support.settings import LLMSettings, TicketSettings

log = logging.getLogger(__name__)

CONVERSATION_PREFIX = "ticket-"
TICKETS_WIDGET_KEY = "tickets"  # the "widget key" of ticket conversations (reports tell them apart by it)
PREVIEW_CHARS = 200
Source = Literal["realtime", "batch", "offline"]

TRIAGE_JOB = "ticket.triage"
RESUME_JOB = "tickets.resume"
RESUME_EVERY_S = 30.0
STRANDED_AFTER_S = 60.0  # a ticket's next step is this late: its job was lost
RESUME_BATCH = 500
SETTLE_LOCK_TTL_MS = 30_000
# Triage plus a real-time draft, with the gateway's own deadlines, retries and budget waits, under load: a job
# cut short by this bound is run again (and its ticket drafted again), so it is generous.
TRIAGE_JOB_TIMEOUT_S = 180
SETTLE_JOB = "ticket.settle"
BATCH_SUBMIT_JOB = "tickets.batch_submit"  # registered by support.tickets.batches


EMAIL_JOB = "ticket.email_reply"
CHAT_CHANNEL = "chat"  # a chat whose customer left an e-mail address while nobody could answer
CHAT_TRANSCRIPT_EVENTS = 200  # the customer messages a chat's ticket body is built from, at most


class EmailUnavailable(Conflict):
    """A reply by e-mail was asked for where none can be sent (no SMTP configured) or not now."""

    code = "email_unavailable"


class IdempotencyConflict(Conflict):
    """The ``Idempotency-Key`` was used before with another request body."""

    code = "idempotency_conflict"


@dataclass(frozen=True)
class TicketFile:
    """A file filed with a ticket: its bytes, the name and type the integration gave."""

    data: bytes
    filename: str
    content_type: str | None = None


@dataclass(frozen=True)
class TicketIn:
    """A ticket as filed (validated by the channel)."""

    subject: str
    body: str
    customer_email: str
    customer_name: str | None = None
    channel: str = "api"
    metadata: dict[str, Any] = field(default_factory=dict)
    # Files filed with it (checked by the channel); only their SHA-256 counts for the request hash.
    attachments: list[TicketFile] = field(default_factory=list)

    def request_hash(self) -> str:
        """SHA-256 of the request's content, for ``Idempotency-Key`` checks."""
        content = asdict(self)
        files = content.pop("attachments")
        if files:  # absent otherwise: a ticket without files hashes as it did before attachments existed
            content["attachments"] = [hashlib.sha256(f["data"]).hexdigest() for f in files]
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


def conversation_id_of(ticket_id: str) -> str:
    """The conversation that holds a ticket's messages."""
    return f"{CONVERSATION_PREFIX}{ticket_id}"


def ticket_id_of(conversation_id: str) -> str | None:
    """The ticket a conversation belongs to, or None for a chat."""
    if conversation_id.startswith(CONVERSATION_PREFIX):
        return conversation_id[len(CONVERSATION_PREFIX) :]
    return None


def customer_text(ticket: Ticket) -> str:
    """What the customer wrote, as the model and the agents see it."""
    return f"{ticket.subject}\n\n{ticket.body}"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def reply_id_of(reply: TicketReply) -> str:
    """The reply id of a ticket reply in its conversation (so settling writes it once)."""
    return f"tr-{reply.id}"


def record_outcome(
    session: AsyncSession,
    ticket: Ticket,
    draft: AnswerDraft | None,
    *,
    source: Source,
    failure: str | None = None,
    needs_ground: bool = False,
) -> str:
    """Record what a finished draft means for ``ticket`` in ``session`` (the caller commits): a bot reply
    when routing allowed an answer, the model did not decline and, where ``needs_ground`` (the chat's
    rule: :func:`needs_ground`), the draft cites the knowledge; else the reason it goes to people (the
    draft, if any, kept for the agent). The draft's sources are kept with the outcome either way. Returns
    the new status. Pure bookkeeping: no I/O but the session.
    """
    triage_info = dict(ticket.triage or {})
    verdict = triage_info.get("verdict") or {"answer": False, "reason": "low_confidence"}
    now = _now()
    ungrounded = needs_ground and draft is not None and not draft.sources
    sources = [dict(s) for s in draft.sources] if draft is not None else []
    if (
        draft is not None and not draft.declined and draft.text.strip() and verdict.get("answer")
        and not ungrounded
    ):  # fmt: skip
        session.add(TicketReply(ticket_id=ticket.id, author="bot", source=source, text=draft.text.strip()))
        ticket.status, ticket.answered_at = "answered", now
        triage_info["outcome"] = {"answered": True, "source": source, "sources": sources}
    else:
        if draft is None:
            reason = "draft_failed"
        elif draft.declined:
            reason = "draft_declined"
        elif not verdict.get("answer"):
            reason = str(verdict.get("reason") or "low_confidence")
        else:
            reason = "ungrounded"
        text = draft.text.strip() if draft is not None else ""
        triage_info["outcome"] = {
            "answered": False, "reason": reason, "draft": text or None, "source": source, "failure": failure,
            "sources": sources,
        }  # fmt: skip
        ticket.status = "queued"
    ticket.triage = triage_info
    ticket.updated_at, ticket.settled_at = now, None  # settling follows the commit
    session.add(ticket)
    return ticket.status


def needs_ground(ticket: Ticket, exempt_intents: Collection[str]) -> bool:
    """The chat's rule for a ticket's model answer: it must cite the knowledge unless triage classified
    the message into an exempt intent (small talk falls under ``other``) or read it as solved; a ticket
    whose triage failed is not held to it (the engine's rule for a turn without triage)."""
    info = ticket.triage or {}
    if "intent" not in info:
        return False
    return not info.get("solved") and info.get("intent") not in exempt_intents


class TicketService:
    """Files tickets and carries them to a reply or a person. Clients and ports are passed in."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        store: ConversationStore,
        jobs: JobEngine,
        events: EventSink,
        policy: Policy,
        llm: LLMSettings,
        settings: TicketSettings,
        gateway: ModelGateway | None,
        routing: RoutingPort,
        handoff: HandoffPort | None,
        examples: ExamplesPort | None,
        offline: Callable[[], OfflineResponder],
        examples_in_prompt: int = 3,
        examples_min_score: float = 0.0,
        mailer: Mailer | None = None,
        attachments: AttachmentService | None = None,
    ) -> None:
        self.sessions = sessions
        self.attachments = attachments  # stores files filed with tickets (None: tickets take none)
        self.mailer = mailer
        self.store = store
        self.jobs = jobs
        self.events = events
        self.policy = policy
        self.llm = llm
        self.settings = settings
        self.gateway = gateway
        self.routing = routing
        self.handoff = handoff
        self.examples = examples
        self._offline = offline
        self.examples_in_prompt = examples_in_prompt
        self.examples_min_score = examples_min_score

    def register_jobs(self) -> None:
        """The ticket jobs this service runs (on whichever worker takes them)."""
        self.jobs.register(TRIAGE_JOB, self.triage_ticket)
        self.jobs.register(SETTLE_JOB, self.settle)
        self.jobs.register(EMAIL_JOB, self.email_reply)
        self.jobs.every(RESUME_JOB, RESUME_EVERY_S, self.resume_stranded)

    async def resume_stranded(self) -> int:
        """Periodic: queue again the jobs of tickets that a lost job left behind (its worker died between
        a commit and the job that follows it): not triaged, triaged for real time but not drafted, or
        recorded but not settled. Every job is idempotent, so a ticket that was merely slow is safe too.
        Returns how many were queued."""
        stale = _now() - timedelta(seconds=STRANDED_AFTER_S)
        not_drafted = (col(Ticket.status) == "received") | (
            (col(Ticket.status) == "triaged") & (col(Ticket.route) == "realtime")
        )
        not_settled = col(Ticket.status).in_(("answered", "queued")) & col(Ticket.settled_at).is_(None)
        statement = (
            select(Ticket)
            .where(not_drafted | not_settled)
            .where(col(Ticket.updated_at) < stale)
            .order_by(col(Ticket.updated_at))
            .limit(RESUME_BATCH)
        )
        async with self.sessions() as session:
            rows = list((await session.execute(statement)).scalars().all())
        queued = 0
        for ticket in rows:
            if ticket.status in ("received", "triaged"):
                await self._enqueue_triage(ticket.id)
            else:
                await self.jobs.enqueue(SETTLE_JOB, key=f"ticket-settle:{ticket.id}", ticket_id=ticket.id)
            queued += 1
        if queued:
            log.info("tickets: %d stranded tickets queued again", queued)
        return queued

    # -- intake --------------------------------------------------------------------------------------

    async def create(
        self, data: TicketIn, *, key_id: str | None, idempotency_key: str | None
    ) -> tuple[Ticket, bool]:
        """File a ticket; ``(ticket, created)``. The same ``idempotency_key`` of the same integration key
        with the same content returns the first ticket (created False); with other content,
        :class:`IdempotencyConflict`."""
        request_hash = data.request_hash()
        if idempotency_key is not None:
            existing = await self._by_idempotency_key(key_id, idempotency_key)
            if existing is not None:
                return self._same_request(existing, request_hash), False
        ticket = Ticket(
            conversation_id="",
            integration_key_id=key_id,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            subject=data.subject,
            body=data.body,
            customer_email=data.customer_email.strip().lower(),
            customer_name=data.customer_name,
            channel=data.channel,
            meta=dict(data.metadata),
        )
        ticket.conversation_id = conversation_id_of(ticket.id)
        try:
            async with self.sessions() as session, session.begin():
                session.add(ticket)
        except IntegrityError:
            # Two requests with one Idempotency-Key at once: the other one's insert won.
            existing = await self._by_idempotency_key(key_id, idempotency_key) if idempotency_key else None
            if existing is None:
                raise
            return self._same_request(existing, request_hash), False
        described: list[dict[str, Any]] = []
        if self.attachments is not None:
            for f in data.attachments:  # one at a time: each is read, re-encoded and stored in turn
                file = await self.attachments.upload(
                    ticket.conversation_id, f.data, filename=f.filename, declared_type=f.content_type,
                    uploader="ticket",
                )  # fmt: skip
                described.append(file)
        await self._open_conversation(ticket, described)
        await self.events.emit("ticket.created", self.summary(ticket), event_id=f"{ticket.id}:created")
        await self._enqueue_triage(ticket.id)
        return ticket, True

    @staticmethod
    def _same_request(existing: Ticket, request_hash: str) -> Ticket:
        if existing.request_hash != request_hash:
            raise IdempotencyConflict(
                "this Idempotency-Key was used with a different request body; use a new key for a new ticket"
            )
        return existing

    async def _by_idempotency_key(self, key_id: str | None, idempotency_key: str) -> Ticket | None:
        async with self.sessions() as session:
            statement = select(Ticket).where(
                Ticket.integration_key_id == key_id, Ticket.idempotency_key == idempotency_key
            )
            return (await session.execute(statement)).scalars().first()

    async def _open_conversation(
        self, ticket: Ticket, attachments: list[dict[str, Any]] | None = None
    ) -> None:
        cid = ticket.conversation_id
        visitor = {
            "email": ticket.customer_email,
            **({"name": ticket.customer_name} if ticket.customer_name else {}),
        }
        await self.store.create_conversation(
            cid, widget_key=TICKETS_WIDGET_KEY, visitor=visitor, now=ticket.created_at
        )
        await self.store.append_customer_message(
            cid, f"ticket-{ticket.id}", customer_text(ticket), now=ticket.created_at,
            extra={"attachments": attachments} if attachments else None,
        )  # fmt: skip

    async def _enqueue_triage(self, ticket_id: str) -> None:
        await self.jobs.enqueue(
            TRIAGE_JOB, key=f"ticket-triage:{ticket_id}", ticket_id=ticket_id,
            timeout_s=TRIAGE_JOB_TIMEOUT_S,
            retries=3, retry_delay_s=1.0, retry_backoff=30.0,
        )  # fmt: skip

    # -- reading -------------------------------------------------------------------------------------

    async def get(self, ticket_id: str) -> Ticket:
        """The ticket; :class:`NotFound` for an unknown id."""
        async with self.sessions() as session:
            ticket = await session.get(Ticket, ticket_id)
        if ticket is None:
            raise NotFound("no such ticket")
        return ticket

    async def replies(self, ticket_id: str) -> list[TicketReply]:
        """The ticket's replies, oldest first."""
        async with self.sessions() as session:
            statement = (
                select(TicketReply)
                .where(TicketReply.ticket_id == ticket_id)
                .order_by(col(TicketReply.created_at), col(TicketReply.id))
            )
            return list((await session.execute(statement)).scalars().all())

    async def view(
        self, ticket_id: str, *, key_id: str | None = None, any_key: bool = False
    ) -> dict[str, Any]:
        """The public JSON of a ticket. Unless ``any_key``, only the integration key that filed it may read
        it (another key's ticket is :class:`NotFound`, not Forbidden: its existence is not told)."""
        ticket = await self.get(ticket_id)
        if not any_key and ticket.integration_key_id != key_id:
            raise NotFound("no such ticket")
        view = self.public(ticket, await self.replies(ticket_id))
        if self.attachments is not None:
            view["attachments"] = [
                public_attachment(row)
                for row in await self.attachments.of_conversations([ticket.conversation_id])
            ]
        return view

    async def find(
        self,
        *,
        status: str | None = None,
        urgent: bool | None = None,
        channel: str | None = None,
        email: str | None = None,
        before: datetime | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Tickets newest first, filtered; each as :meth:`summary`."""
        statement = select(Ticket)
        if status is not None:
            statement = statement.where(Ticket.status == status)
        if urgent is not None:
            statement = statement.where(Ticket.urgent == urgent)
        if channel is not None:
            statement = statement.where(Ticket.channel == channel)
        if email is not None:
            statement = statement.where(Ticket.customer_email == email.strip().lower())
        if before is not None:
            statement = statement.where(col(Ticket.created_at) < before)
        statement = statement.order_by(col(Ticket.created_at).desc(), col(Ticket.id).desc()).limit(limit)
        async with self.sessions() as session:
            rows = list((await session.execute(statement)).scalars().all())
        return [self.summary(t) for t in rows]

    @staticmethod
    def summary(ticket: Ticket) -> dict[str, Any]:
        """A ticket without its replies (lists and events)."""
        triage_info = ticket.triage or {}
        return {
            "id": ticket.id,
            "conversation_id": ticket.conversation_id,
            "status": ticket.status,
            "subject": ticket.subject,
            "channel": ticket.channel,
            "customer": {"email": ticket.customer_email, "name": ticket.customer_name},
            "metadata": ticket.meta,
            "urgent": ticket.urgent,
            "route": ticket.route,
            "triage": {
                k: triage_info[k]
                for k in ("intent", "urgency", "sentiment", "language", "confidence", "wants_human")
                if k in triage_info
            }
            or None,
            "created_at": _iso(ticket.created_at),
            "updated_at": _iso(ticket.updated_at),
            "answered_at": _iso(ticket.answered_at),
            "resolved_at": _iso(ticket.resolved_at),
        }

    @staticmethod
    def queue_card(ticket: Ticket) -> dict[str, Any]:
        """What the agents' queue shows of a ticket beside the chats."""
        return {
            "id": ticket.id, "subject": ticket.subject, "channel": ticket.channel,
            "email": ticket.customer_email,
        }  # fmt: skip

    @classmethod
    def public(cls, ticket: Ticket, replies: list[TicketReply]) -> dict[str, Any]:
        """A ticket with its body and replies."""
        return {
            **cls.summary(ticket),
            "body": ticket.body,
            "replies": [
                {
                    "id": r.id,
                    "author": r.author,
                    "source": r.source,
                    "text": r.text,
                    "created_at": _iso(r.created_at),
                }
                for r in replies
            ],
        }

    # -- triage and real-time drafts -----------------------------------------------------------------

    async def triage_ticket(self, ticket_id: str) -> None:
        """Job ``ticket.triage``: triage a received ticket, route it, and draft it now if it is urgent.

        Safe to run again at any point (a retry after a crash): a triaged ticket is not triaged twice, and
        an urgent one whose draft was lost is drafted."""
        ticket = await self._ticket_or_none(ticket_id)
        if ticket is None:
            return  # erased meanwhile
        if ticket.status == "received":
            await self._triage(ticket)
            ticket = await self._ticket_or_none(ticket_id)
            if ticket is None:
                return
        info = ticket.triage or {}
        if ticket.route == "batch":
            if ticket.status == "triaged":
                # Drafted through a Message Batch; the submit job decides whether the batch is due now.
                await self.jobs.enqueue(BATCH_SUBMIT_JOB, key="tickets-batch-submit", timeout_s=120)
            return
        verdict = info.get("verdict") or {}
        if ticket.status == "triaged" and not verdict.get("answer") and self.gateway is not None:
            # People take it now; the draft follows for the agent.
            await self._record_and_settle(
                ticket_id, None, source="realtime", failure=None, queue_first=str(verdict.get("reason"))
            )
        await self.draft_now(ticket_id)

    async def _ticket_or_none(self, ticket_id: str) -> Ticket | None:
        async with self.sessions() as session:
            return await session.get(Ticket, ticket_id)

    async def _triage(self, ticket: Ticket) -> None:
        # Both idempotent: a create that died after its commit left them undone (the resume job got here).
        await self._open_conversation(ticket)
        await self.events.emit("ticket.created", self.summary(ticket), event_id=f"{ticket.id}:created")
        text = customer_text(ticket)
        info: dict[str, Any]
        wants_human, confidence = False, 0.0
        urgency: str | None = None
        intent: str | None = None
        sentiment: str | None = None
        if self.gateway is None:
            match = self._offline().answer(text, exclude_conversation=ticket.conversation_id)
            confidence = 1.0 if match else 0.0
            info = {"offline": True, "confidence": confidence}
        else:
            try:
                result = await triage(
                    self.gateway, model=self.llm.triage_model, message=text, summary="", recent=[],
                    taxonomy=self.llm.taxonomy, conversation_id=ticket.conversation_id,
                    policy_version=self.policy.version, ticket_id=ticket.id,
                )  # fmt: skip
            except ModelError as exc:
                # The model cannot judge it. As in chat: a confident offline answer (policy passage or
                # approved example) may answer it, else zero confidence sends it to people; either way at
                # once, not in a batch.
                log.warning("ticket %s: triage failed (%s)", ticket.id, exc.code)
                match = self._offline().answer(text, exclude_conversation=ticket.conversation_id)
                confidence = 1.0 if match else 0.0
                info = {"fallback": True, "failure": exc.code, "confidence": confidence}
            else:
                t = result.triage
                info = {**t.model_dump(), "fallback": result.fallback}
                wants_human, confidence, urgency = t.wants_human, t.confidence, t.urgency
                intent, sentiment = t.intent, t.sentiment
            await self.store.record_triage(ticket.conversation_id, 1, info)
        verdict = self.routing.decide(
            wants_human=wants_human, confidence=confidence, urgency=urgency, message=text,
            intent=intent, sentiment=sentiment,
        )  # fmt: skip
        info["verdict"] = {"answer": verdict.answer, "reason": verdict.reason}
        realtime = self.gateway is None or info.get("failure") is not None
        urgent = (urgency or "") in self.settings.urgent_urgencies
        async with self.sessions() as session, session.begin():
            row = await session.get(Ticket, ticket.id, with_for_update=True)
            if row is None or row.status != "received":
                return
            row.status, row.urgent, row.triage = "triaged", urgent, info
            row.route = "realtime" if urgent or realtime else "batch"
            row.updated_at = _now()
            session.add(row)

    def answer_request(self, ticket: Ticket) -> dict[str, Any]:
        """The answer call's parameters for ``ticket`` (customer text redacted; ``redactions`` is a gateway
        argument, not an API parameter: a batch request must take it out)."""
        if self.gateway is None:
            raise RuntimeError("no model API in offline mode")
        text = customer_text(ticket)
        curated, retrieved = [], []
        if self.examples is not None:
            curated = self.examples.curated
            retrieved = self.examples.for_prompt(
                text, self.examples_in_prompt, self.examples_min_score,
                exclude_conversation=ticket.conversation_id,
            )  # fmt: skip
        return build_answer_request(
            policy=self.policy, curated_examples=curated, summary="", history=[],
            retrieved_examples=retrieved, message=text, model=self.llm.answer_model,
            max_tokens=self.llm.answer_max_tokens,
            system_cache_ttl=self.llm.system_cache_ttl, redactor=self.gateway.redactor,
        )  # fmt: skip

    async def draft_now(self, ticket_id: str, *, failure: str | None = None) -> None:
        """Draft a ticket in real time (urgent tickets; batch requests that errored or expired) and record
        and settle the outcome. A model failure falls back to the offline responder, then to people."""
        ticket = await self.get(ticket_id)
        if ticket.status not in ("triaged", "queued") or (ticket.triage or {}).get("outcome", {}).get(
            "draft"
        ):
            return
        draft: AnswerDraft | None = None
        source: Source = "realtime"
        if self.gateway is not None:
            try:
                message = await self.gateway.create(
                    purpose="answer", conversation_id=ticket.conversation_id, ticket_id=ticket.id,
                    policy_version=self.policy.version, **self.answer_request(ticket),
                )  # fmt: skip
                draft = draft_from_message(message, request_documents(self.policy))
            except ModelError as exc:
                failure = exc.code
                log.warning("ticket %s: the answer call failed (%s)", ticket.id, exc.code)
        if draft is None:
            match = self._offline().answer(customer_text(ticket), exclude_conversation=ticket.conversation_id)
            if match is not None:
                draft, source = _offline_draft(match.text), "offline"
        await self._record_and_settle(ticket_id, draft, source=source, failure=failure)

    async def _record_and_settle(
        self, ticket_id: str, draft: AnswerDraft | None, *, source: Source, failure: str | None,
        queue_first: str | None = None,
    ) -> None:  # fmt: skip
        async with self.sessions() as session, session.begin():
            ticket = await session.get(Ticket, ticket_id, with_for_update=True)
            if ticket is None:
                return
            if queue_first is not None:
                info = dict(ticket.triage or {})
                info["outcome"] = {"answered": False, "reason": queue_first, "draft": None, "source": source}
                ticket.status, ticket.triage, ticket.updated_at = "queued", info, _now()
                ticket.settled_at = None
                session.add(ticket)
            elif ticket.status == "queued":
                # Already with people (routed there at triage): only the agent's draft is new.
                info = dict(ticket.triage or {})
                outcome = dict(info.get("outcome") or {})
                outcome["draft"] = draft.text.strip() if draft is not None and draft.text.strip() else None
                info["outcome"], ticket.triage, ticket.updated_at = outcome, info, _now()
                ticket.settled_at = None
                session.add(ticket)
            elif ticket.status == "triaged":
                exempt = self.llm.ungrounded_exempt_intents
                record_outcome(
                    session, ticket, draft, source=source, failure=failure,
                    needs_ground=source != "offline" and needs_ground(ticket, exempt),
                )  # fmt: skip
            else:
                return
        await self.settle(ticket_id)

    # -- settling: make the conversation, the queue and the webhooks say what SQL says ---------------

    async def settle(self, ticket_id: str) -> None:
        """Job ``ticket.settle`` (also called inline): idempotent. Writes the bot's replies into the
        conversation once, puts a queued ticket in the agents' queue with its draft, and reports
        ``ticket.replied`` / ``ticket.queued`` (once each, by stable event ids)."""
        lock = await self._settle_lock(conversation_id_of(ticket_id))
        try:
            await self._settle(ticket_id)
        finally:
            await self.store.release_lock(lock)

    async def _settle_lock(self, cid: str) -> LockToken:
        """One settle per ticket at a time (the inline one and a resumed job may meet): the second waits,
        then finds the work done."""
        async with asyncio.timeout(SETTLE_LOCK_TTL_MS / 1000):
            while True:
                token = await self.store.acquire_lock("settle", cid, SETTLE_LOCK_TTL_MS)
                if token is not None:
                    return token
                await asyncio.sleep(0.05)

    async def _settle(self, ticket_id: str) -> None:
        async with self.sessions() as session:
            ticket = await session.get(Ticket, ticket_id)
        if ticket is None:
            return
        cid = ticket.conversation_id
        exists = await self.store.exists(cid)
        for reply in await self.replies(ticket_id):
            if reply.author != "bot":
                continue
            if exists and not await self.store.has_reply(cid, reply_id_of(reply), recent=50):
                await self.store.append_event(
                    cid, type="message", role="assistant", text=reply.text, reply_id=reply_id_of(reply),
                    now=reply.created_at, publish=True,
                )  # fmt: skip
            await self.events.emit(
                "ticket.replied",
                {**self.summary(ticket), "reply": {"id": reply.id, "author": "bot", "text": reply.text}},
                event_id=f"{reply.id}:replied",
            )
        outcome = (ticket.triage or {}).get("outcome") or {}
        if ticket.status == "queued" and exists:
            await self._put_in_queue(ticket, outcome)
            await self.events.emit(
                "ticket.queued", {**self.summary(ticket), "reason": outcome.get("reason")},
                event_id=f"{ticket.id}:queued",
            )  # fmt: skip
        if ticket.settled_at is None and ticket.status in ("answered", "queued"):
            async with self.sessions() as session, session.begin():
                row = await session.get(Ticket, ticket_id, with_for_update=True)
                if row is not None:
                    row.settled_at = _now()
                    session.add(row)

    async def _put_in_queue(self, ticket: Ticket, outcome: Mapping[str, Any]) -> None:
        cid = ticket.conversation_id
        state = await self.store.get_state(cid)
        if state is None:
            return
        reason = str(outcome.get("reason") or "low_confidence")
        draft = outcome.get("draft")
        if draft and state.extra.get("draft_text") != draft:
            await self.store.set_state(cid, draft_text=draft, draft_id="d1")
            await self.store.publish_agent(
                cid, {"type": "draft", "conversation_id": cid, "draft": {"id": "d1", "text": draft}}
            )
        if state.state != "bot":
            return  # queued (or with an agent, or resolved) already
        await self.store.set_state(cid, handoff_reason=reason, handoff_seq=1)
        if self.handoff is None:
            return
        info = ticket.triage or {}
        await self.handoff.enqueue(
            cid, reason=reason, preview=customer_text(ticket)[:PREVIEW_CHARS], intent=info.get("intent"),
            urgency=info.get("urgency"), sentiment=info.get("sentiment"), ticket=self.queue_card(ticket),
        )  # fmt: skip
        await self.store.append_event(
            cid, type="status", role="system", text="", extra={"state": "queued", "reason": reason},
            now=_now(), publish=True, new_state="queued",
        )  # fmt: skip
        await self.handoff.queue_changed(announced=cid)

    # -- the agents' side ----------------------------------------------------------------------------

    async def from_chat(self, conversation_id: str, email: str) -> Ticket:
        """The customer of a chat waiting for a person left ``email`` (validated by the channel): the chat
        becomes a ticket (channel ``chat``, in the same conversation, already in the agents' queue), whose
        agent replies are e-mailed there as well as shown in the chat. Leaving another address later
        changes it. :class:`EmailUnavailable` when no e-mail can be sent or the chat is not waiting."""
        if self.mailer is None or not self.mailer.enabled:
            raise EmailUnavailable("replies by e-mail are not available here")
        state = await self.store.get_state(conversation_id)
        if state is None:
            raise NotFound("no such conversation")
        if state.state not in ("queued", "agent"):
            raise EmailUnavailable("an e-mail address can be left while waiting for a person")
        email = email.strip().lower()
        now = _now()
        existing = await self._chat_ticket(conversation_id)
        if existing is None:
            events = await self.store.events_after(
                conversation_id, max(0, state.last_seq - CHAT_TRANSCRIPT_EVENTS)
            )
            asked = [ev.text for ev in events if ev.type == "message" and ev.role == "customer"]
            name = state.visitor.get("name")
            ticket = Ticket(
                conversation_id=conversation_id,
                subject=one_line(asked[0] if asked else "Chat", self.settings.max_subject_chars),
                body="\n\n".join(asked)[: self.settings.max_body_chars] or "(no message)",
                customer_email=email,
                customer_name=name[:200] if isinstance(name, str) and name.strip() else None,
                channel=CHAT_CHANNEL,
                status="queued",
                triage={"outcome": {"answered": False, "reason": state.extra.get("handoff_reason")}},
                settled_at=now,  # nothing to settle: the chat is in the queue already
            )
            try:
                async with self.sessions() as session, session.begin():
                    session.add(ticket)
            except IntegrityError:  # the same customer's two sockets at once: the other insert won
                existing = await self._chat_ticket(conversation_id)
                if existing is None:
                    raise
            else:
                await self.events.emit(
                    "ticket.created", self.summary(ticket), event_id=f"{ticket.id}:created"
                )
        if existing is not None:
            async with self.sessions() as session, session.begin():
                row = await session.get(Ticket, existing.id, with_for_update=True)
                if row is None:
                    raise NotFound("no such ticket")
                row.customer_email, row.updated_at = email, now
                session.add(row)
            ticket = row
        await self.store.set_state(conversation_id, contact_ticket=ticket.id, contact_email=email)
        return ticket

    async def _chat_ticket(self, conversation_id: str) -> Ticket | None:
        async with self.sessions() as session:
            statement = select(Ticket).where(col(Ticket.conversation_id) == conversation_id)
            return (await session.execute(statement)).scalars().first()

    async def agent_replied(
        self,
        conversation_id: str,
        text: str,
        agent_id: str,
        *,
        ticket_id: str | None = None,
        agent_name: str | None = None,
    ) -> None:
        """An agent sent ``text`` in a ticket's conversation (``ticket_id``: a chat's ticket): it is a
        reply of the ticket; a chat's ticket is e-mailed its reply (a job, with retries)."""
        ticket_id = ticket_id_of(conversation_id) or ticket_id
        if ticket_id is None:
            return
        async with self.sessions() as session, session.begin():
            ticket = await session.get(Ticket, ticket_id, with_for_update=True)
            if ticket is None:
                return
            reply = TicketReply(
                ticket_id=ticket_id, author="agent", agent_id=agent_id, source="agent", text=text
            )
            session.add(reply)
            ticket.answered_at = ticket.answered_at or _now()
            ticket.updated_at = _now()
            session.add(ticket)
        await self.events.emit(
            "ticket.replied",
            {
                **self.summary(ticket),
                "reply": {"id": reply.id, "author": "agent", "agent_id": agent_id, "text": text},
            },
            event_id=f"{reply.id}:replied",
        )
        if ticket.channel == CHAT_CHANNEL and self.mailer is not None and self.mailer.enabled:
            await self.jobs.enqueue(
                EMAIL_JOB, key=f"ticket-email:{reply.id}", reply_id=reply.id, agent_name=agent_name,
                timeout_s=int(self.mailer.settings.timeout_s * 3) + 5,
                retries=self.mailer.settings.max_attempts, retry_delay_s=5.0, retry_backoff=600.0,
            )  # fmt: skip

    async def email_reply(self, reply_id: str, agent_name: str | None = None) -> None:
        """Job ``ticket.email_reply``: e-mail one agent reply of a chat's ticket to the address its
        customer left (read when the job runs: a corrected address is used). Failures raise, and the job
        engine retries with backoff; an erased ticket is skipped."""
        if self.mailer is None or not self.mailer.enabled:
            log.warning("ticket reply %s: no SMTP configured, not e-mailed", reply_id)
            return
        async with self.sessions() as session:
            reply = await session.get(TicketReply, reply_id)
            ticket = await session.get(Ticket, reply.ticket_id) if reply is not None else None
        if reply is None or ticket is None:
            return
        message = reply_message(
            settings=self.mailer.settings, to=ticket.customer_email, customer_name=ticket.customer_name,
            subject=ticket.subject, reply_text=reply.text, agent_name=agent_name, ticket_id=ticket.id,
            question=ticket.body, now=_now(),
        )  # fmt: skip
        await self.mailer.send(message, ticket.customer_email)
        log.info("ticket %s: reply %s e-mailed", ticket.id, reply.id)

    async def resolved(
        self, conversation_id: str, agent_id: str | None = None, *, ticket_id: str | None = None
    ) -> None:
        """A ticket's conversation (``ticket_id``: a chat's ticket) was resolved by an agent: the ticket is
        resolved."""
        ticket_id = ticket_id_of(conversation_id) or ticket_id
        if ticket_id is None:
            return
        async with self.sessions() as session, session.begin():
            ticket = await session.get(Ticket, ticket_id, with_for_update=True)
            if ticket is None or ticket.status == "resolved":
                return
            ticket.status, ticket.resolved_at, ticket.updated_at = "resolved", _now(), _now()
            session.add(ticket)
        await self.events.emit(
            "ticket.resolved",
            {**self.summary(ticket), "resolved_by": agent_id},
            event_id=f"{ticket_id}:resolved",
        )


def _offline_draft(text: str) -> AnswerDraft:
    return AnswerDraft(
        text=text,
        declined=False,
        decline_reason=None,
        usage=Usage(input_tokens=0, output_tokens=0),
        stop_reason="end_turn",
    )
