"""Predicted satisfaction: finished conversations nobody rated, scored by the small model through Message
Batches, and written beside the real ratings (``conversation_fact.predicted_*``), never into them.

Follows the ticket batches (:mod:`support.tickets.batches`) step for step, so each result is applied
exactly once however often a worker dies:

1. **Collect and submit** (periodic job ``predicted_csat.run``, every
   ``SWITCHBOARD_PREDICTED_CSAT_INTERVAL_S``). The candidates are ``conversation_fact`` rows with no
   rating and no prediction, started within ``lookback_days``, and *finished*: resolved more than
   :data:`RESOLVED_QUIET_S` ago, or whose last bot reply is more than :data:`BOT_QUIET_S` old. A
   conversation already in a batch that has not been applied, or one whose earlier request succeeded (or
   had no transcript), is not a candidate; one whose requests failed is, until it has had
   :data:`MAX_ATTEMPTS`. ONE transaction creates the ``PredictionBatch`` (``submitting``) and an item per
   conversation, up to ``max_per_run``; ``(conversation_id, attempt)`` is unique, so two runs racing cannot
   both take a conversation (the loser's insert fails and rolls back). Then each transcript is read (the
   store, or the archived ``conversation_event`` rows once Redis has forgotten it), redacted, and the
   batch is sent; the Anthropic batch id and ``in_progress`` are stored. A batch left ``submitting`` is
   sent again by the next run after :data:`RESUBMIT_GRACE_S`.
2. **Poll and apply** (periodic job ``predicted_csat.poll``). An ended batch's results are applied under a
   Redis lease, each in ONE transaction that claims its item (``applied_at IS NULL`` -> now), writes its
   ledger row at batch prices (purpose ``predict_csat``) and sets ``predicted_score``,
   ``predicted_reason`` and ``predicted_at`` -- only while the row's ``rating`` is still NULL. A
   conversation rated meanwhile gets no prediction; one rated after its prediction was written keeps it,
   and reports count predictions over unrated conversations only (docs/metrics.md), so the two never mix.
   Errored, expired and canceled requests, and replies that do not validate, are recorded with that
   outcome and their conversations taken up again by a later run (bounded by :data:`MAX_ATTEMPTS`).

Cost: the shared per-minute budget of the gateway guards real-time calls and does not apply to batches
(they have their own limits at the API and take no real-time capacity); what bounds spending is
``max_per_run`` per ``interval_s`` and ``lookback_days`` (docs/metrics.md gives the price per 1,000).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from anthropic.types.messages import MessageBatchIndividualResponse
from redis.exceptions import LockError
from sqlalchemy import CursorResult, and_, exists, func, or_, update
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
# reply unanswered for a day (the bot-resolution rule's "assumed" wait, docs/metrics.md).
RESOLVED_QUIET_S = 3600.0
BOT_QUIET_S = 24 * 3600.0
MAX_ATTEMPTS = 3  # requests per conversation, ever: a conversation the model cannot score is given up
MESSAGE_ROLES = ("customer", "assistant", "agent")
# As for ticket batches: a batch still `submitting` this long lost its worker around the API call.
RESUBMIT_GRACE_S = 180.0
APPLY_LEASE_S = 5.0  # a dead applier's results wait this long for the next poll
RUN_TIMEOUT_S = 600
APPLY_TIMEOUT_S = 3600
SUCCEEDED = "succeeded"
NO_TRANSCRIPT = "no_transcript"
# Outcomes after which a conversation is never asked about again.
FINAL_OUTCOMES = (SUCCEEDED, NO_TRANSCRIPT)


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

    async def run(self) -> str | None:
        """Job ``predicted_csat.run``: send again a batch whose submission was lost, then collect and send
        one new batch. Returns the new batch's id (None when nothing was due)."""
        if self.gateway is None:
            return None
        await self.resubmit_stale()
        batch_id = await self._collect()
        if batch_id is not None:
            await self._send(batch_id)
        return batch_id

    # -- collecting and submitting -----------------------------------------------------------------

    def _candidates(self, now: datetime) -> Any:
        """Finished conversations with no rating and no prediction that may be asked about (again), with
        the attempt their next request would be."""
        fact, item = ConversationFact, PredictionBatchItem
        mine = col(item.conversation_id) == col(fact.conversation_id)
        settled = exists().where(
            mine, or_(col(item.applied_at).is_(None), col(item.outcome).in_(FINAL_OUTCOMES))
        )
        attempts = select(func.count()).where(mine).scalar_subquery()
        finished = or_(
            col(fact.resolved_at) <= now - timedelta(seconds=RESOLVED_QUIET_S),
            col(fact.last_bot_reply_at) <= now - timedelta(seconds=BOT_QUIET_S),
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
            .limit(self.settings.max_per_run)
        )

    async def _collect(self) -> str | None:
        """In ONE transaction: a ``submitting`` batch with an item per candidate. None if there were none,
        or a concurrent run claimed one of them first."""
        try:
            async with self.sessions() as session, session.begin():
                found = (await session.execute(self._candidates(_now()))).all()
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
        return batch.id

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

    async def _send(self, batch_id: str) -> None:
        """Build each item's request, send the ``submitting`` batch and store its id."""
        assert self.gateway is not None
        async with self.sessions() as session:
            statement = select(PredictionBatchItem).where(
                col(PredictionBatchItem.batch_id) == batch_id, col(PredictionBatchItem.applied_at).is_(None)
            )
            items = list((await session.execute(statement)).scalars().all())
        lines = await self.transcripts([i.conversation_id for i in items])
        requests: list[dict[str, Any]] = []
        counts: dict[str, dict[str, int]] = {}
        for item in items:
            built = prediction_request(
                lines.get(item.conversation_id, []),
                model=self.llm.triage_model,
                redactor=self.gateway.redactor,
            )
            if built is None:
                await self._claim_alone(batch_id, item.custom_id, NO_TRANSCRIPT)
                continue
            params, counts[item.custom_id] = built
            requests.append({"custom_id": item.custom_id, "params": params})
        if not requests:
            await self._finish_if_applied(batch_id)
            return
        # Stored before the call: the ledger row of each result carries its request's redaction counts.
        async with self.sessions() as session, session.begin():
            for custom_id, found in counts.items():
                await session.execute(
                    update(PredictionBatchItem)
                    .where(col(PredictionBatchItem.custom_id) == custom_id)
                    .values(redactions=found)
                )
        try:
            sent = await self.gateway.create_batch(requests)
        except ModelRejected as exc:
            # Refused as it is: sending it again would fail again. Each conversation counts an attempt.
            log.error("prediction batch %s rejected by the API (%s)", batch_id, exc)
            await self._fail(batch_id, [r["custom_id"] for r in requests])
            return
        except ModelError as exc:
            log.warning(
                "prediction batch %s not submitted (%s); the next run sends it again", batch_id, exc.code
            )
            return
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(PredictionBatch)
                .where(col(PredictionBatch.id) == batch_id, col(PredictionBatch.status) == "submitting")
                .values(anthropic_batch_id=sent.id, status="in_progress", submitted_at=_now())
            )
        log.info("prediction batch %s submitted as %s (%d requests)", batch_id, sent.id, len(requests))

    async def _fail(self, batch_id: str, custom_ids: Sequence[str]) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(PredictionBatch).where(col(PredictionBatch.id) == batch_id).values(status="failed")
            )
        for custom_id in custom_ids:
            await self._claim_alone(batch_id, custom_id, "errored")

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
                    await self._claim_alone(batch_id, custom_id, "expired")
            await self._finish_if_applied(batch_id)
        finally:
            with contextlib.suppress(LockError):
                await lock.release()

    async def _apply_one(self, batch_id: str, result: MessageBatchIndividualResponse) -> None:
        """ONE transaction: claim the item, write its ledger row, write the prediction (while unrated)."""
        outcome: str = result.result.type
        prediction: Prediction | None = None
        if result.result.type == "succeeded":
            try:
                prediction = parse_prediction(result.result.message)
            except ValueError as exc:
                log.warning("prediction %s: invalid reply (%s); asked again later", result.custom_id, exc)
                outcome = "invalid"
        async with self.sessions() as session, session.begin():
            # The claim first: it is the statement that takes the write lock (SQLite) or the row's lock.
            if not await self._claim(session, batch_id, result.custom_id, outcome):
                return  # applied before, or not this batch's
            item = await session.get(PredictionBatchItem, result.custom_id)
            assert item is not None  # just claimed
            session.add(
                batch_usage_row(
                    result, model=self.llm.triage_model, purpose=PURPOSE,
                    conversation_id=item.conversation_id, redactions=item.redactions,
                )
            )  # fmt: skip
            if prediction is not None:
                await session.execute(
                    update(ConversationFact)
                    .where(
                        col(ConversationFact.conversation_id) == item.conversation_id,
                        col(ConversationFact.rating).is_(None),
                    )
                    .values(
                        predicted_score=prediction.score,
                        predicted_reason=prediction.reason,
                        predicted_at=_now(),
                    )
                    .execution_options(synchronize_session=False)
                )

    @staticmethod
    async def _claim(session: AsyncSession, batch_id: str, custom_id: str, outcome: str) -> bool:
        """Mark an item applied unless it is already: True for the one caller that did."""
        claimed: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
            update(PredictionBatchItem)
            .where(
                col(PredictionBatchItem.custom_id) == custom_id,
                col(PredictionBatchItem.batch_id) == batch_id,
                col(PredictionBatchItem.applied_at).is_(None),
            )
            .values(applied_at=_now(), outcome=outcome)
            .execution_options(synchronize_session=False)
        )
        return claimed.rowcount == 1

    async def _claim_alone(self, batch_id: str, custom_id: str, outcome: str) -> bool:
        async with self.sessions() as session, session.begin():
            return await self._claim(session, batch_id, custom_id, outcome)

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
