"""Message Batches for non-urgent tickets: collected, submitted, polled, and each result applied once.

A ticket that triage did not find urgent is left ``triaged`` with route ``batch`` (see
:mod:`support.tickets.service`). This module owns what happens next:

1. **Collect and submit** (job ``tickets.batch_submit``, enqueued by every such triage, and a periodic
   sweep so a lost job strands nothing). The waiting tickets are those triaged for a batch that have no
   :class:`~support.db.models.TicketBatchItem` yet. A batch is due when ``batch_max_requests`` wait or the
   oldest has waited ``batch_window_s``; otherwise a re-check is scheduled for the end of the oldest one's
   window. Submitting is two steps: ONE transaction creates the ``TicketBatch`` (``submitting``) and an item
   per ticket (``custom_id`` = ``t_<ticket id>``, unique, so two submitters racing cannot put a ticket in
   two batches: the loser's insert fails and rolls back), then the API call, then the Anthropic batch id and
   ``in_progress`` are stored. A batch left ``submitting`` (the worker died around the call, or the API
   failed) is sent again by the sweep once :data:`RESUBMIT_GRACE_S` has passed; if the first call did reach
   the API, that batch is paid for but never read: results are applied per ticket, never twice.
2. **Poll and apply** (job ``tickets.batch_poll``: periodic, and enqueued after a submit). An ended
   batch's results are streamed and matched by ``custom_id``. Each result is applied in ONE transaction
   that claims its item (``applied_at IS NULL`` -> now, a conditional UPDATE, so only one applier wins),
   writes the ledger row priced at batch rates and records the ticket's outcome
   (:func:`~support.tickets.service.record_outcome`). After the commit the ticket is settled (its reply
   into the conversation, or into the agents' queue, and the webhooks); settling is idempotent, so a
   re-run after a crash settles already-applied tickets again and applies only what was not applied.
   Errored, expired and canceled requests are applied with that outcome and their tickets drafted in real
   time instead (job ``tickets.batch_fallback``, retried if the worker dies). When every item is applied
   the batch is ``applied``.

A worker that is SIGKILLed part way through applying leaves its Redis lease (:data:`APPLY_LEASE_S`) to
expire; the next periodic poll, on any worker, takes the batch over and carries on where the items say.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from anthropic.types.messages import MessageBatchIndividualResponse
from redis.exceptions import LockError
from sqlalchemy import CursorResult, and_, exists, func, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from support import keys
from support.db.models import Ticket, TicketBatch, TicketBatchItem
from support.errors import ModelError, ModelRejected
from support.jobs import JobEngine
from support.llm.answer import draft_from_message, request_documents
from support.llm.gateway import ModelGateway, batch_usage_row
from support.redaction import merge_counts
from support.redis_client import RedisClient
from support.settings import LLMSettings, TicketSettings
from support.tickets.service import (
    BATCH_SUBMIT_JOB,
    TicketService,
    customer_text,
    needs_ground,
    record_outcome,
)

log = logging.getLogger(__name__)

POLL_JOB = "tickets.batch_poll"
FALLBACK_JOB = "tickets.batch_fallback"
SWEEP_PERIODIC = "tickets.batch_sweep"
CUSTOM_ID_PREFIX = "t_"  # + the ticket id (32 hex): within the API's ^[a-zA-Z0-9_-]{1,64}$
# A worker applying a batch holds a lease this long, renewed as it goes; one that died is replaced by the
# next poll once its lease ran out. Short, because a dead applier's tickets wait that long.
APPLY_LEASE_S = 5.0
# A batch still `submitting` after this long lost its worker around the API call (or the call failed) and
# is sent again. Longer than a create call may take (SWITCHBOARD_LLM_BATCH_TIMEOUT_S) plus its retries'
# room, so a submission still in flight is not doubled.
RESUBMIT_GRACE_S = 180.0
SUBMIT_JOB_TIMEOUT_S = 300
FALLBACK_RETRIES = 5
APPLY_TIMEOUT_S = 3600  # a poll may apply up to 100,000 results


def custom_id_of(ticket_id: str) -> str:
    """The batch request id of a ticket's draft (one per ticket, ever)."""
    return f"{CUSTOM_ID_PREFIX}{ticket_id}"


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    # SQLite hands datetimes back naive (they were stored as UTC).
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class TicketBatches:
    """Collects waiting tickets into Message Batches and applies their results, each exactly once.

    Clients and services are passed in; it owns none of them.
    """

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        redis: RedisClient,
        jobs: JobEngine,
        tickets: TicketService,
        gateway: ModelGateway | None,
        llm: LLMSettings,
        settings: TicketSettings,
        policy_version: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.redis = redis
        self.jobs = jobs
        self.tickets = tickets
        self.gateway = gateway
        self.llm = llm
        self.settings = settings
        self.policy_version = policy_version

    def register_jobs(self) -> None:
        """The batch jobs, and the periodic poll and sweep (which also rescue work whose job was lost)."""
        self.jobs.register(BATCH_SUBMIT_JOB, self.submit_due)
        self.jobs.register(POLL_JOB, self.poll)
        self.jobs.register(FALLBACK_JOB, self.fall_back)
        interval = self.settings.batch_poll_interval_s
        self.jobs.every(POLL_JOB, interval, self.poll, timeout_s=APPLY_TIMEOUT_S)
        self.jobs.every(SWEEP_PERIODIC, interval, self.sweep, timeout_s=SUBMIT_JOB_TIMEOUT_S)

    # -- collecting and submitting -----------------------------------------------------------------

    @staticmethod
    def _waiting() -> Any:
        """Tickets triaged for a batch that are in none yet."""
        in_a_batch = exists().where(col(TicketBatchItem.ticket_id) == col(Ticket.id))
        return and_(col(Ticket.status) == "triaged", col(Ticket.route) == "batch", ~in_a_batch)

    async def waiting(self) -> tuple[int, datetime | None]:
        """How many tickets wait for a batch, and when the oldest was filed."""
        async with self.sessions() as session:
            statement = select(func.count(), func.min(Ticket.created_at)).where(self._waiting())
            count, oldest = (await session.execute(statement)).one()
        return int(count), _aware(oldest) if oldest is not None else None

    async def submit_due(self) -> list[str]:
        """Job ``tickets.batch_submit``: submit every batch that is due (by size or window); schedule a
        re-check for the end of the oldest waiting ticket's window. Returns the batches submitted."""
        submitted: list[str] = []
        if self.gateway is None:
            return submitted
        window = timedelta(seconds=self.settings.batch_window_s)
        while True:
            count, oldest = await self.waiting()
            if count == 0 or oldest is None:
                return submitted
            if count < self.settings.batch_max_requests and _now() - oldest < window:
                await self._recheck_at(oldest + window)
                return submitted
            batch_id = await self._collect()
            if batch_id is None:
                return submitted  # another submitter took them; it schedules what is left
            submitted.append(batch_id)
            await self._send(batch_id)

    async def _recheck_at(self, when: datetime) -> None:
        # Keyed by the second it is due: re-checks for one moment collapse into one job, and a running
        # check can still schedule the next (saq refuses a key that is queued or running).
        due = max(0.0, (when - _now()).total_seconds())
        await self.jobs.enqueue(
            BATCH_SUBMIT_JOB, key=f"tickets-batch-recheck:{int(when.timestamp()) + 1}", delay_s=due + 0.5,
            timeout_s=SUBMIT_JOB_TIMEOUT_S,
        )  # fmt: skip

    async def _collect(self) -> str | None:
        """In ONE transaction: a ``submitting`` batch with an item per waiting ticket (oldest first, up to
        the size limit). None if there were none, or a concurrent submitter claimed them first."""
        try:
            async with self.sessions() as session, session.begin():
                statement = (
                    select(Ticket.id)
                    .where(self._waiting())
                    .order_by(col(Ticket.created_at), col(Ticket.id))
                    .limit(self.settings.batch_max_requests)
                )
                ticket_ids = list((await session.execute(statement)).scalars().all())
                if not ticket_ids:
                    return None
                batch = TicketBatch(status="submitting", request_count=len(ticket_ids), submitted_at=_now())
                session.add(batch)
                await session.flush()
                session.add_all(
                    TicketBatchItem(custom_id=custom_id_of(tid), batch_id=batch.id, ticket_id=tid)
                    for tid in ticket_ids
                )
        except IntegrityError:
            log.info("tickets were put in a batch by another worker meanwhile")
            return None
        log.info("ticket batch %s: %d requests collected", batch.id, len(ticket_ids))
        return batch.id

    async def _send(self, batch_id: str) -> None:
        """Send a ``submitting`` batch to the API and store its id (the caller owns the batch for now)."""
        assert self.gateway is not None
        async with self.sessions() as session:
            statement = select(TicketBatchItem).where(TicketBatchItem.batch_id == batch_id)
            items = list((await session.execute(statement)).scalars().all())
            wanted = select(Ticket).where(col(Ticket.id).in_([i.ticket_id for i in items]))
            tickets = {t.id: t for t in (await session.execute(wanted)).scalars().all()}
        requests: list[dict[str, Any]] = []
        gone: list[str] = []
        for item in items:
            ticket = tickets.get(item.ticket_id)
            if item.applied_at is not None:
                continue
            if ticket is None or ticket.status != "triaged":
                gone.append(item.custom_id)  # erased, or answered another way meanwhile
                continue
            params = self.tickets.answer_request(ticket)
            params.pop("redactions", None)  # a gateway argument, not an API parameter
            requests.append({"custom_id": item.custom_id, "params": params})
        for custom_id in gone:
            await self._claim_alone(batch_id, custom_id, "canceled")
        if not requests:
            await self._finish_if_applied(batch_id)
            return
        try:
            sent = await self.gateway.create_batch(requests)
        except ModelRejected as exc:
            # The API refuses this batch as it is: sending it again would fail again. Its tickets are
            # drafted in real time instead.
            log.error("ticket batch %s rejected by the API (%s); drafting in real time", batch_id, exc)
            await self._reject(batch_id, [r["custom_id"] for r in requests])
            return
        except ModelError as exc:
            log.warning("ticket batch %s not submitted (%s); the sweep sends it again", batch_id, exc.code)
            return
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(TicketBatch)
                .where(col(TicketBatch.id) == batch_id, col(TicketBatch.status) == "submitting")
                .values(anthropic_batch_id=sent.id, status="in_progress", submitted_at=_now())
            )
        log.info("ticket batch %s submitted as %s (%d requests)", batch_id, sent.id, len(requests))
        await self.jobs.enqueue(
            POLL_JOB, key=f"tickets-batch-poll:{batch_id}", delay_s=self.settings.batch_poll_interval_s,
            timeout_s=APPLY_TIMEOUT_S,
        )  # fmt: skip

    async def _reject(self, batch_id: str, custom_ids: Sequence[str]) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(TicketBatch).where(col(TicketBatch.id) == batch_id).values(status="failed")
            )
        for custom_id in custom_ids:
            ticket_id = await self._claim_alone(batch_id, custom_id, "errored")
            if ticket_id is not None:
                await self._enqueue_fallback(ticket_id, "batch_rejected")

    async def resubmit_stale(self, grace_s: float = RESUBMIT_GRACE_S) -> list[str]:
        """Send again every batch left ``submitting`` for longer than ``grace_s``. Each is claimed by moving
        its ``submitted_at`` forward in a conditional UPDATE, so two sweeps never send one batch twice."""
        cutoff = _now() - timedelta(seconds=grace_s)
        async with self.sessions() as session:
            stale = list(
                (
                    await session.execute(
                        select(TicketBatch.id).where(
                            col(TicketBatch.status) == "submitting", col(TicketBatch.submitted_at) <= cutoff
                        )
                    )
                )
                .scalars()
                .all()
            )
        resent: list[str] = []
        for batch_id in stale:
            async with self.sessions() as session, session.begin():
                claimed: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
                    update(TicketBatch)
                    .where(
                        col(TicketBatch.id) == batch_id,
                        col(TicketBatch.status) == "submitting",
                        col(TicketBatch.submitted_at) <= cutoff,
                    )
                    .values(submitted_at=_now())
                )
            if claimed.rowcount != 1:
                continue
            log.warning("ticket batch %s was left submitting; sending it again", batch_id)
            resent.append(batch_id)
            await self._send(batch_id)
        return resent

    async def sweep(self) -> None:
        """Periodic: batches whose submission was lost are sent again; tickets whose submit job was lost
        are collected."""
        if self.gateway is None:
            return
        await self.resubmit_stale()
        await self.submit_due()

    # -- polling and applying ----------------------------------------------------------------------

    async def poll(self) -> None:
        """Job ``tickets.batch_poll``: check every submitted batch; apply the results of those that ended."""
        if self.gateway is None:
            return
        async with self.sessions() as session:
            batches = list(
                (
                    await session.execute(
                        select(TicketBatch)
                        .where(col(TicketBatch.status).in_(["in_progress", "ended"]))
                        .order_by(col(TicketBatch.created_at))
                    )
                )
                .scalars()
                .all()
            )
        for batch in batches:
            try:
                await self._poll_one(batch)
            except Exception:
                # One batch's trouble (a broken results stream, Redis down while settling) must not hold up
                # the others; the next poll takes it up again where its items say.
                log.exception("ticket batch %s: poll failed; retried on the next poll", batch.id)

    async def _poll_one(self, batch: TicketBatch) -> None:
        assert self.gateway is not None
        if batch.anthropic_batch_id is not None:  # stored with in_progress
            if batch.status == "in_progress":
                try:
                    remote = await self.gateway.retrieve_batch(batch.anthropic_batch_id)
                except ModelError as exc:
                    log.warning("ticket batch %s: status check failed (%s)", batch.id, exc.code)
                    return
                if remote.processing_status != "ended":
                    return
                async with self.sessions() as session, session.begin():
                    await session.execute(
                        update(TicketBatch)
                        .where(col(TicketBatch.id) == batch.id, col(TicketBatch.status) == "in_progress")
                        .values(status="ended", ended_at=_now())
                    )
            await self.apply(batch.id, batch.anthropic_batch_id)

    async def apply(self, batch_id: str, anthropic_batch_id: str) -> None:
        """Apply an ended batch's results, each once; under a lease, so one worker walks it at a time."""
        assert self.gateway is not None
        lock = self.redis.lock(keys.ticket_batch_apply(batch_id), timeout=APPLY_LEASE_S, blocking=False)
        if not await lock.acquire():
            return  # another worker is applying it (or died doing so: its lease runs out soon)
        try:
            renewed = time.monotonic()
            seen: set[str] = set()
            async for result in self.gateway.batch_results(anthropic_batch_id):
                seen.add(result.custom_id)
                await self._apply_one(batch_id, result)
                if time.monotonic() - renewed > APPLY_LEASE_S / 3:
                    renewed = time.monotonic()
                    with contextlib.suppress(LockError):
                        await lock.reacquire()
            # A request the results did not mention (the API promises every one) is handled as expired.
            for custom_id in await self._unapplied(batch_id):
                if custom_id not in seen:
                    ticket_id = await self._claim_alone(batch_id, custom_id, "expired")
                    if ticket_id is not None:
                        await self._enqueue_fallback(ticket_id, "batch_expired")
            await self._finish_if_applied(batch_id)
        finally:
            with contextlib.suppress(LockError):
                await lock.release()

    async def _apply_one(self, batch_id: str, result: MessageBatchIndividualResponse) -> None:
        """ONE transaction: claim the item, write its ledger row, record the ticket's outcome. Then settle
        (succeeded) or fall back to real time (errored, expired, canceled), also for an item applied by an
        earlier run that may have died before doing so."""
        outcome: str = result.result.type
        async with self.sessions() as session, session.begin():
            # The claim first: it is the statement that takes the write lock (SQLite) or the row's lock.
            claimed = await self._claim(session, batch_id, result.custom_id, outcome)
            item = await session.get(TicketBatchItem, result.custom_id)
            if item is None or item.batch_id != batch_id:
                log.warning("ticket batch %s: unknown request %r ignored", batch_id, result.custom_id)
                return
            ticket_id = item.ticket_id
            if claimed:
                ticket = await session.get(Ticket, ticket_id, with_for_update=True)
                session.add(
                    batch_usage_row(
                        result, model=self.llm.answer_model, purpose="answer",
                        conversation_id=ticket.conversation_id if ticket else None, ticket_id=ticket_id,
                        policy_version=self.policy_version,
                        redactions=self._redactions(ticket) if ticket else None,
                    )
                )  # fmt: skip
                if outcome == "succeeded" and ticket is not None and ticket.status == "triaged":
                    assert result.result.type == "succeeded"
                    documents = request_documents(self.tickets.policy)
                    record_outcome(
                        session, ticket, draft_from_message(result.result.message, documents), source="batch",
                        needs_ground=needs_ground(ticket, self.llm.ungrounded_exempt_intents),
                    )  # fmt: skip
            else:
                outcome = item.outcome or outcome  # applied before: do what that run did
        if outcome == "succeeded":
            await self.tickets.settle(ticket_id)
        else:
            await self._enqueue_fallback(ticket_id, f"batch_{outcome}")

    @staticmethod
    async def _claim(session: AsyncSession, batch_id: str, custom_id: str, outcome: str) -> bool:
        """Mark an item applied unless it is already: True for the one caller that did."""
        claimed: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
            update(TicketBatchItem)
            .where(
                col(TicketBatchItem.custom_id) == custom_id,
                col(TicketBatchItem.batch_id) == batch_id,
                col(TicketBatchItem.applied_at).is_(None),
            )
            .values(applied_at=_now(), outcome=outcome)
            .execution_options(synchronize_session=False)
        )
        return claimed.rowcount == 1

    async def _claim_alone(self, batch_id: str, custom_id: str, outcome: str) -> str | None:
        """Claim an item that has no result to apply; its ticket id when this caller claimed it."""
        async with self.sessions() as session, session.begin():
            if not await self._claim(session, batch_id, custom_id, outcome):
                return None
            item = await session.get(TicketBatchItem, custom_id)
            return item.ticket_id if item is not None else None

    async def _unapplied(self, batch_id: str) -> list[str]:
        async with self.sessions() as session:
            statement = select(TicketBatchItem.custom_id).where(
                col(TicketBatchItem.batch_id) == batch_id, col(TicketBatchItem.applied_at).is_(None)
            )
            return list((await session.execute(statement)).scalars().all())

    async def _finish_if_applied(self, batch_id: str) -> None:
        if await self._unapplied(batch_id):
            return
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(TicketBatch)
                .where(col(TicketBatch.id) == batch_id, col(TicketBatch.status) != "applied")
                .values(status="applied", applied_at=_now())
            )
        log.info("ticket batch %s applied", batch_id)

    def _redactions(self, ticket: Ticket) -> dict[str, int] | None:
        """The per-kind redaction counts of the ticket's request, for its ledger row: the same texts the
        request redacted (summary, then message), so the same counts."""
        if self.gateway is None:
            return None
        redacted = self.gateway.redactor.redact_many(["", customer_text(ticket)])
        return merge_counts(*(r.counts for r in redacted))

    # -- falling back to real time -----------------------------------------------------------------

    async def _enqueue_fallback(self, ticket_id: str, failure: str) -> None:
        await self.jobs.enqueue(
            FALLBACK_JOB, key=f"ticket-batch-fallback:{ticket_id}", ticket_id=ticket_id, failure=failure,
            timeout_s=int(self.llm.answer_timeout_s + 30), retries=FALLBACK_RETRIES, retry_delay_s=1.0,
            retry_backoff=30.0,
        )  # fmt: skip

    async def fall_back(self, ticket_id: str, failure: str) -> None:
        """Job ``tickets.batch_fallback``: draft a ticket whose batch request failed in real time (a no-op
        for one that has its outcome already)."""
        await self.tickets.draft_now(ticket_id, failure=failure)
