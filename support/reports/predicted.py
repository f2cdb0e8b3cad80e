"""Predicted satisfaction: finished conversations nobody rated, scored by the small model through Message
Batches, and written beside the real ratings (``conversation_fact.predicted_*``), never into them.

Follows the ticket batches (:mod:`support.tickets.batches`) step for step, so each result is applied
exactly once however often a worker dies:

1. **Collect and submit** (periodic job ``predicted_csat.run``, every
   ``SWITCHBOARD_PREDICTED_CSAT_INTERVAL_S``). The candidates are ``conversation_fact`` rows with no
   rating and no prediction, started within ``lookback_days``, and *finished*: resolved more than
   :data:`RESOLVED_QUIET_S` ago, or whose last bot reply and last customer message are both more than
   :data:`BOT_QUIET_S` old (a customer still writing is not finished). A
   conversation already in a batch that has not been applied, or one whose earlier request succeeded (or
   had no transcript), is not a candidate; one whose requests failed is, until it has had
   :data:`MAX_ATTEMPTS`. A run takes up to ``max_per_run``, in batches of :data:`REQUESTS_PER_BATCH`.
   For each, ONE transaction creates the ``PredictionBatch`` (``submitting``) and an item per
   conversation; ``(conversation_id, attempt)`` is unique, so two runs racing cannot both take a
   conversation (the loser's insert fails and rolls back). Then each transcript is read (the store, or the
   archived ``conversation_event`` rows once Redis has forgotten it), redacted, and the batch is sent; the
   Anthropic batch id and ``in_progress`` are stored. A batch left ``submitting`` (the worker died around
   the call, or the API failed) is sent again by a later run after :data:`RESUBMIT_GRACE_S`.
2. **Poll and apply** (periodic job ``predicted_csat.poll``). An ended batch's results are applied under a
   Redis lease, :data:`APPLY_CHUNK` at a time, each chunk in ONE transaction that claims its items
   (``applied_at IS NULL`` -> now, a conditional UPDATE), writes their ledger rows at batch prices
   (purpose ``predict_csat``) and sets ``predicted_score``, ``predicted_reason`` and ``predicted_at`` --
   only while the row's ``rating`` is still NULL. A conversation rated meanwhile gets no prediction; one
   rated after its prediction was written keeps it, and reports count predictions over unrated
   conversations only (docs/metrics.md), so the two never mix. Errored, expired and canceled requests,
   and replies that do not validate, are recorded with that outcome and their conversations taken up
   again by a later run (bounded by :data:`MAX_ATTEMPTS`).

Cost: the shared per-minute budget of the gateway guards real-time calls and does not apply to batches
(they have their own limits at the API and take no real-time capacity); what bounds spending is
``max_per_run`` per ``interval_s`` and ``lookback_days`` (docs/metrics.md gives the price per 1,000).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from anthropic.types.messages import MessageBatchIndividualResponse
from redis.exceptions import LockError
from sqlalchemy import CursorResult, Table, and_, bindparam, exists, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from support import keys
from support.conversation.store import ConversationStore
from support.db.models import ArchivedMessage, ConversationFact, PredictionBatch, PredictionBatchItem
from support.errors import ModelError, ModelRejected
from support.jobs import JobEngine
from support.llm.gateway import ModelGateway, batch_usage_row
from support.llm.prediction import Line, Prediction, parse_prediction, prediction_request
from support.redis_client import RedisClient
from support.settings import LLMSettings, PredictedCsatSettings

log = logging.getLogger(__name__)

RUN_JOB = "predicted_csat.run"
POLL_JOB = "predicted_csat.poll"
PURPOSE: Final = "predict_csat"  # the ledger's purpose for these calls (reports show their cost under it)
CUSTOM_ID_PREFIX = "p_"
# "Finished": resolved an hour ago (time for the customer to rate it, or to come back), or the bot's last
# reply a day old with the customer silent as long (the bot-resolution rule's "assumed" wait).
RESOLVED_QUIET_S = 3600.0
BOT_QUIET_S = 24 * 3600.0
MAX_ATTEMPTS = 3  # requests per conversation, ever: a conversation the model cannot score is given up
MESSAGE_ROLES = ("customer", "assistant", "agent")
# As for ticket batches: a batch still `submitting` this long lost its worker around the API call.
RESUBMIT_GRACE_S = 180.0
APPLY_LEASE_S = 5.0  # a dead applier's results wait this long for the next poll
# Requests per batch: a run of thousands is sent as several batches, so encoding one request body (~2.7 kB
# a conversation) holds the event loop tens of milliseconds, not a second, in a process that also serves
# chats; and smaller batches end sooner.
REQUESTS_PER_BATCH = 500
APPLY_CHUNK = 100  # results applied per transaction (one claim, one ledger insert, one executemany)
RUN_TIMEOUT_S = 600
APPLY_TIMEOUT_S = 3600
SUCCEEDED = "succeeded"
NO_TRANSCRIPT = "no_transcript"
# Outcomes after which a conversation is never asked about again.
FINAL_OUTCOMES = (SUCCEEDED, NO_TRANSCRIPT)

ITEMS: Table = PredictionBatchItem.__table__  # type: ignore[attr-defined]
FACTS: Table = ConversationFact.__table__  # type: ignore[attr-defined]
# Executed with one parameter set per row (executemany): the item's redaction counts, and the prediction
# written only into a row still unrated (a real rating that arrived meanwhile wins).
REDACTIONS = (
    update(ITEMS).where(ITEMS.c.custom_id == bindparam("b_id")).values(redactions=bindparam("b_counts"))
)
PREDICT = (
    update(FACTS)
    .where(FACTS.c.conversation_id == bindparam("b_id"), FACTS.c.rating.is_(None))
    .values(
        predicted_score=bindparam("b_score"),
        predicted_reason=bindparam("b_reason"),
        predicted_at=bindparam("b_at"),
    )
)


def _now() -> datetime:
    return datetime.now(UTC)


class PredictedSatisfaction:
    """Collects finished, unrated conversations into prediction batches and applies their results, each
    exactly once. Clients and services are passed in; it owns none of them."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        redis: RedisClient,
        store: ConversationStore,
        gateway: ModelGateway | None,
        llm: LLMSettings,
        settings: PredictedCsatSettings,
    ) -> None:
        self.sessions = sessions
        self.redis = redis
        self.store = store
        self.gateway = gateway
        self.llm = llm
        self.settings = settings

    def register_jobs(self, jobs: JobEngine) -> None:
        """The periodic run (collect and submit) and poll (apply), when enabled."""
        if not self.settings.enabled:
            return
        jobs.every(RUN_JOB, self.settings.interval_s, self.run, timeout_s=RUN_TIMEOUT_S)
        jobs.every(POLL_JOB, self.settings.poll_interval_s, self.poll, timeout_s=APPLY_TIMEOUT_S)

    async def run(self) -> list[str]:
        """Job ``predicted_csat.run``: send again a batch whose submission was lost, then collect and send
        new batches of up to :data:`REQUESTS_PER_BATCH`, ``max_per_run`` conversations in all. Returns the
        new batches' ids (none when nothing was due)."""
        if self.gateway is None:
            return []
        await self.resubmit_stale()
        sent: list[str] = []
        left = self.settings.max_per_run
        while left > 0:
            collected = await self._collect(min(left, REQUESTS_PER_BATCH))
            if collected is None:
                break
            batch_id, count = collected
            sent.append(batch_id)
            if not await self._send(batch_id):
                break  # the API is away: what is collected waits for the next run, nothing more piles up
            left -= count
        return sent

    # -- collecting and submitting -----------------------------------------------------------------

    def _candidates(self, now: datetime, limit: int) -> Any:
        """Finished conversations with no rating and no prediction that may be asked about (again), with
        the attempt their next request would be."""
        fact, item = ConversationFact, PredictionBatchItem
        mine = col(item.conversation_id) == col(fact.conversation_id)
        settled = exists().where(
            mine, or_(col(item.applied_at).is_(None), col(item.outcome).in_(FINAL_OUTCOMES))
        )
        attempts = select(func.count()).where(mine).scalar_subquery()
        bot_quiet = now - timedelta(seconds=BOT_QUIET_S)
        finished = or_(
            col(fact.resolved_at) <= now - timedelta(seconds=RESOLVED_QUIET_S),
            and_(
                col(fact.last_bot_reply_at) <= bot_quiet,
                or_(col(fact.last_customer_at).is_(None), col(fact.last_customer_at) <= bot_quiet),
            ),
        )
        return (
            select(fact.conversation_id, attempts)
            .where(
                col(fact.rating).is_(None),
                col(fact.predicted_score).is_(None),
                col(fact.started_at) >= now - timedelta(days=self.settings.lookback_days),
                finished,
                ~settled,
                attempts < MAX_ATTEMPTS,
            )
            .order_by(col(fact.started_at), col(fact.conversation_id))
            .limit(limit)
        )

    async def _collect(self, limit: int) -> tuple[str, int] | None:
        """In ONE transaction: a ``submitting`` batch with an item per candidate (up to ``limit``); its id
        and size. None if there were none, or a concurrent run claimed one of them first."""
        try:
            async with self.sessions() as session, session.begin():
                found = (await session.execute(self._candidates(_now(), limit))).all()
                if not found:
                    return None
                batch = PredictionBatch(status="submitting", request_count=len(found), submitted_at=_now())
                session.add(batch)
                await session.flush()
                session.add_all(
                    PredictionBatchItem(
                        custom_id=f"{CUSTOM_ID_PREFIX}{uuid.uuid4().hex}",
                        batch_id=batch.id,
                        conversation_id=cid,
                        attempt=int(done) + 1,
                    )
                    for cid, done in found
                )
        except IntegrityError:
            log.info("conversations were put in a prediction batch by another worker meanwhile")
            return None
        log.info("prediction batch %s: %d conversations collected", batch.id, len(found))
        return batch.id, len(found)

    async def transcripts(self, conversation_ids: Sequence[str]) -> dict[str, list[Line]]:
        """The messages of each conversation, from the store while Redis has it, else from the archive.
        A conversation found in neither is missing from the result."""
        found: dict[str, list[Line]] = {}
        states = await self.store.state_fields(list(conversation_ids), "state") if conversation_ids else []
        cold: list[str] = []
        for cid, (state,) in zip(conversation_ids, states, strict=True):
            if state is None:
                cold.append(cid)
                continue
            events = await self.store.events_after(cid, 0)
            found[cid] = [
                Line(e.role, e.text) for e in events if e.type == "message" and e.role in MESSAGE_ROLES
            ]
        if cold:
            async with self.sessions() as session:
                statement = (
                    select(ArchivedMessage.conversation_id, ArchivedMessage.role, ArchivedMessage.text)
                    .where(
                        col(ArchivedMessage.conversation_id).in_(cold),
                        col(ArchivedMessage.type) == "message",
                        col(ArchivedMessage.role).in_(MESSAGE_ROLES),
                    )
                    .order_by(col(ArchivedMessage.conversation_id), col(ArchivedMessage.seq))
                )
                for cid, role, text in (await session.execute(statement)).all():
                    found.setdefault(cid, []).append(Line(role, text))
        return found

    async def _send(self, batch_id: str) -> bool:
        """Build each item's request, send the ``submitting`` batch and store its id. False when the API
        could not be reached (the batch stays ``submitting``, for :meth:`resubmit_stale`)."""
        assert self.gateway is not None
        async with self.sessions() as session:
            statement = select(PredictionBatchItem).where(
                col(PredictionBatchItem.batch_id) == batch_id, col(PredictionBatchItem.applied_at).is_(None)
            )
            items = list((await session.execute(statement)).scalars().all())
        lines = await self.transcripts([i.conversation_id for i in items])
        requests: list[dict[str, Any]] = []
        counts: list[dict[str, Any]] = []
        no_transcript: list[str] = []
        for item in items:
            built = prediction_request(
                lines.get(item.conversation_id, []),
                model=self.llm.triage_model,
                redactor=self.gateway.redactor,
            )
            if built is None:
                no_transcript.append(item.custom_id)
                continue
            params, found = built
            counts.append({"b_id": item.custom_id, "b_counts": found})
            requests.append({"custom_id": item.custom_id, "params": params})
            # Redacting a transcript is a few milliseconds of CPU: a run of thousands yields between them,
            # so the chat turns served by the same process are not held up.
            await asyncio.sleep(0)
        await self._claim_alone(batch_id, no_transcript, NO_TRANSCRIPT)
        if not requests:
            await self._finish_if_applied(batch_id)
            return True
        # Stored before the call: the ledger row of each result carries its request's redaction counts.
        async with self.sessions() as session, session.begin():
            await session.execute(REDACTIONS, counts)
        try:
            sent = await self.gateway.create_batch(requests)
        except ModelRejected as exc:
            # Refused as it is: sending it again would fail again. Each conversation counts an attempt.
            log.error("prediction batch %s rejected by the API (%s)", batch_id, exc)
            await self._fail(batch_id, [r["custom_id"] for r in requests])
            return True
        except ModelError as exc:
            log.warning(
                "prediction batch %s not submitted (%s); the next run sends it again", batch_id, exc.code
            )
            return False
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(PredictionBatch)
                .where(col(PredictionBatch.id) == batch_id, col(PredictionBatch.status) == "submitting")
                .values(anthropic_batch_id=sent.id, status="in_progress", submitted_at=_now())
            )
        log.info("prediction batch %s submitted as %s (%d requests)", batch_id, sent.id, len(requests))
        return True

    async def _fail(self, batch_id: str, custom_ids: Sequence[str]) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(PredictionBatch).where(col(PredictionBatch.id) == batch_id).values(status="failed")
            )
        await self._claim_alone(batch_id, custom_ids, "errored")

    async def resubmit_stale(self, grace_s: float = RESUBMIT_GRACE_S) -> list[str]:
        """Send again every batch left ``submitting`` for longer than ``grace_s``; each is claimed by moving
        its ``submitted_at`` forward in a conditional UPDATE, so two runs never send one batch twice."""
        cutoff = _now() - timedelta(seconds=grace_s)
        stale_where = (
            col(PredictionBatch.status) == "submitting",
            col(PredictionBatch.submitted_at) <= cutoff,
        )
        async with self.sessions() as session:
            stale = list(
                (await session.execute(select(PredictionBatch.id).where(*stale_where))).scalars().all()
            )
        resent: list[str] = []
        for batch_id in stale:
            async with self.sessions() as session, session.begin():
                claimed: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
                    update(PredictionBatch)
                    .where(col(PredictionBatch.id) == batch_id, *stale_where)
                    .values(submitted_at=_now())
                )
            if claimed.rowcount != 1:
                continue
            log.warning("prediction batch %s was left submitting; sending it again", batch_id)
            resent.append(batch_id)
            await self._send(batch_id)
        return resent

    # -- polling and applying ----------------------------------------------------------------------

    async def poll(self) -> None:
        """Job ``predicted_csat.poll``: check every submitted batch; apply the results of those that ended."""
        if self.gateway is None:
            return
        async with self.sessions() as session:
            statement = (
                select(PredictionBatch)
                .where(col(PredictionBatch.status).in_(["in_progress", "ended"]))
                .order_by(col(PredictionBatch.created_at))
            )
            batches = list((await session.execute(statement)).scalars().all())
        for batch in batches:
            try:
                await self._poll_one(batch)
            except Exception:
                # One batch's trouble must not hold up the others; the next poll resumes where its items say.
                log.exception("prediction batch %s: poll failed; retried on the next poll", batch.id)

    async def _poll_one(self, batch: PredictionBatch) -> None:
        assert self.gateway is not None
        if batch.anthropic_batch_id is None:
            return
        if batch.status == "in_progress":
            try:
                remote = await self.gateway.retrieve_batch(batch.anthropic_batch_id)
            except ModelError as exc:
                log.warning("prediction batch %s: status check failed (%s)", batch.id, exc.code)
                return
            if remote.processing_status != "ended":
                return
            async with self.sessions() as session, session.begin():
                await session.execute(
                    update(PredictionBatch)
                    .where(col(PredictionBatch.id) == batch.id, col(PredictionBatch.status) == "in_progress")
                    .values(status="ended", ended_at=_now())
                )
        await self.apply(batch.id, batch.anthropic_batch_id)

    async def apply(self, batch_id: str, anthropic_batch_id: str) -> None:
        """Apply an ended batch's results, each once; under a lease, so one worker walks it at a time."""
        assert self.gateway is not None
        lock = self.redis.lock(keys.prediction_batch_apply(batch_id), timeout=APPLY_LEASE_S, blocking=False)
        if not await lock.acquire():
            return  # another worker is applying it (or died doing so: its lease runs out soon)
        try:
            seen: set[str] = set()
            chunk: list[MessageBatchIndividualResponse] = []
            async for result in self.gateway.batch_results(anthropic_batch_id):
                seen.add(result.custom_id)
                chunk.append(result)
                if len(chunk) >= APPLY_CHUNK:
                    await self._apply_chunk(batch_id, chunk)
                    chunk = []
                    with contextlib.suppress(LockError):
                        await lock.reacquire()
            await self._apply_chunk(batch_id, chunk)
            # A request the results did not mention (the API promises every one) is handled as expired.
            missing = [custom_id for custom_id in await self._unapplied(batch_id) if custom_id not in seen]
            await self._claim_alone(batch_id, missing, "expired")
            await self._finish_if_applied(batch_id)
        finally:
            with contextlib.suppress(LockError):
                await lock.release()

    async def _apply_chunk(self, batch_id: str, results: Sequence[MessageBatchIndividualResponse]) -> None:
        """ONE transaction for a chunk of results: claim their items, write a ledger row for each claimed
        one, and write the predictions (only into rows still unrated). An item applied before is skipped
        whole: exactly once per item, however often a chunk is retried."""
        if not results:
            return
        outcomes: dict[str, list[str]] = {}
        predictions: dict[str, Prediction] = {}
        for result in results:
            outcome: str = result.result.type
            if result.result.type == "succeeded":
                try:
                    predictions[result.custom_id] = parse_prediction(result.result.message)
                except ValueError as exc:
                    log.warning("prediction %s: invalid reply (%s); asked again later", result.custom_id, exc)
                    outcome = "invalid"
            outcomes.setdefault(outcome, []).append(result.custom_id)
        now = _now()
        async with self.sessions() as session, session.begin():
            # The claims first: they take the write lock (SQLite) or the rows' locks.
            claimed = await self._claim(session, batch_id, outcomes)
            session.add_all(
                batch_usage_row(
                    result,
                    model=self.llm.triage_model,
                    purpose=PURPOSE,
                    conversation_id=claimed[result.custom_id][0],
                    redactions=claimed[result.custom_id][1],
                )
                for result in results
                if result.custom_id in claimed
            )
            written = [
                {"b_id": claimed[cid][0], "b_score": p.score, "b_reason": p.reason, "b_at": now}
                for cid, p in predictions.items()
                if cid in claimed
            ]
            if written:
                await session.execute(PREDICT, written)

    @staticmethod
    async def _claim(
        session: AsyncSession, batch_id: str, outcomes: Mapping[str, Sequence[str]]
    ) -> dict[str, tuple[str, dict[str, int] | None]]:
        """Mark the items applied (with their outcome: outcome -> custom ids) unless they are already; the
        ones this caller claimed, as custom id -> (conversation id, redaction counts)."""
        claimed: dict[str, tuple[str, dict[str, int] | None]] = {}
        for outcome, custom_ids in outcomes.items():
            rows = await session.execute(
                update(ITEMS)
                .where(
                    ITEMS.c.custom_id.in_(custom_ids),
                    ITEMS.c.batch_id == batch_id,
                    ITEMS.c.applied_at.is_(None),
                )
                .values(applied_at=_now(), outcome=outcome)
                .returning(ITEMS.c.custom_id, ITEMS.c.conversation_id, ITEMS.c.redactions)
            )
            claimed.update({custom_id: (cid, counts) for custom_id, cid, counts in rows.all()})
        return claimed

    async def _claim_alone(self, batch_id: str, custom_ids: Sequence[str], outcome: str) -> None:
        """Claim items that have no result to apply (no transcript, rejected, missing from the results)."""
        if custom_ids:
            async with self.sessions() as session, session.begin():
                await self._claim(session, batch_id, {outcome: custom_ids})

    async def _unapplied(self, batch_id: str) -> list[str]:
        async with self.sessions() as session:
            statement = select(PredictionBatchItem.custom_id).where(
                and_(
                    col(PredictionBatchItem.batch_id) == batch_id,
                    col(PredictionBatchItem.applied_at).is_(None),
                )
            )
            return list((await session.execute(statement)).scalars().all())

    async def _finish_if_applied(self, batch_id: str) -> None:
        if await self._unapplied(batch_id):
            return
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(PredictionBatch)
                .where(
                    col(PredictionBatch.id) == batch_id,
                    col(PredictionBatch.status).not_in(["applied", "failed"]),
                )
                .values(status="applied", applied_at=_now())
            )
        log.info("prediction batch %s applied", batch_id)
