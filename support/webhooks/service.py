"""Outbound webhooks (Standard Webhooks): endpoints, the event sink that records deliveries, and the jobs
that send them.

An event becomes one :class:`~support.db.models.WebhookDelivery` row per active endpoint subscribed to it.
The row holds the JSON body exactly as it is signed and sent (serialised once, at emit), so every attempt
and every replay sends the same bytes under the same ``webhook-id``; only the timestamp and the signature
are fresh each time (a receiver rejects old timestamps, so a signature cannot be reused).

Each attempt is a job (``webhooks.deliver``) on the job engine, keyed by delivery and attempt number so a
duplicate enqueue collapses. An attempt is claimed in SQL before it is sent (the delivery's ``attempts``
moves from n-1 to n only once), so a job run twice sends at most once more, and it records a
:class:`~support.db.models.WebhookAttempt` row whatever happens. A failure schedules the next attempt with
exponential backoff and jitter; the last failure marks the delivery ``failed``. A job lost with its worker
(SIGKILL between the claim and the next enqueue) is found by the periodic sweep: a pending delivery whose
``next_attempt_at`` passed long ago gets its next attempt queued again.

``emit`` is called on the services' hot paths (a handoff, a resolution, a rating), so it never raises and
is cheap when nobody listens: the active endpoints are cached per process and reloaded only when a version
counter in Redis, read at most once a second, says an endpoint was created or deactivated.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import math
import random
import secrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select
from standardwebhooks.webhooks import Webhook

from support import __version__, keys, metrics
from support.audit import AuditSink, NoAudit
from support.db.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from support.errors import Conflict, NotFound, ValidationFailed, one_line
from support.events import EVENT_TYPES
from support.jobs import JobEngine
from support.redis_client import RedisClient
from support.settings import WebhookSettings
from support.webhooks.urls import UnsafeWebhookUrl, check_webhook_url

log = logging.getLogger(__name__)

DELIVER_JOB = "webhooks.deliver"
SWEEP_JOB = "webhooks.sweep"
SWEEP_EVERY_S = 30.0  # how often lost delivery jobs are looked for
# A pending delivery this far past its due time has lost its job: saq starts a delayed job within a second
# of its time, so a live one is never this late unless the workers are saturated (and then the keyed
# enqueue collapses into the job that is still waiting).
SWEEP_MARGIN_S = 10.0
SWEEP_BATCH = 500  # deliveries re-queued per sweep at most (the next sweep takes the rest)
ENDPOINTS_CHECK_S = 1.0  # how stale a process's list of active endpoints may be
SECRET_BYTES = 32  # HMAC-SHA256 key; Standard Webhooks asks for 24 to 64 bytes
ERROR_CHARS = 500  # the column's width
DELIVERIES_LIMIT_MAX = 200
JOB_TIMEOUT_MARGIN_S = 10  # beyond the request timeout, before saq gives up on an attempt's job
USER_AGENT = f"Switchboard-Webhooks/{__version__}"


def new_secret() -> str:
    """A signing secret in the Standard Webhooks form: ``whsec_`` and the base64 of random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def message_id_for(event_type: str, event_id: str | None) -> str:
    """The ``webhook-id`` of an event: derived from the caller's stable event id (so an event reported
    twice is one message), random otherwise."""
    if event_id is None:
        return f"msg_{uuid.uuid4().hex}"
    digest = hashlib.sha256(f"{event_type}\x00{event_id}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def backoff_s(attempt: int, base_s: float, max_s: float, rand: Callable[[], float] = random.random) -> float:
    """Delay after failed attempt ``attempt`` (1-based): ``base_s`` doubling per attempt up to ``max_s``,
    with "equal jitter" (between half and all of it) so receivers that failed together are not retried in
    lockstep."""
    delay: float = min(max_s, base_s * 2.0 ** min(attempt - 1, 62))
    return delay / 2 + rand() * delay / 2


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; they are stored as UTC.
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class EndpointView:
    """An endpoint as the admin API lists it (never its secret)."""

    id: str
    url: str
    events: list[str]
    active: bool
    created_at: datetime | None


@dataclass(frozen=True)
class CreatedEndpoint:
    """A new endpoint, with its secret: the only time the secret is shown."""

    id: str
    secret: str
    url: str
    events: list[str]


@dataclass(frozen=True)
class AttemptView:
    """One HTTP attempt of a delivery."""

    at: datetime | None
    status_code: int | None
    error: str | None
    duration_ms: float


@dataclass(frozen=True)
class DeliveryView:
    """One event sent to one endpoint, with its attempts (oldest first). ``attempts`` counts the attempts
    of the current round (since the delivery was created, or last replayed); ``attempt_log`` has them all."""

    id: str
    message_id: str
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime | None
    delivered_at: datetime | None
    next_attempt_at: datetime | None
    attempt_log: list[AttemptView]


@dataclass(frozen=True)
class _Active:
    id: str
    events: frozenset[str]


class WebhookService:
    """Endpoints, deliveries and their jobs; the process's :class:`~support.events.EventSink`.

    Everything is passed in: the SQL session factory, the Redis client (the endpoints' version counter),
    the job engine, and the HTTP client that sends deliveries (created and closed by the runtime).
    ``allow_private``: whether endpoints may resolve to non-public addresses (see support.webhooks.urls).
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        redis: RedisClient,
        jobs: JobEngine,
        http: httpx.AsyncClient,
        settings: WebhookSettings,
        *,
        allow_private: bool,
        audit: AuditSink | None = None,
    ) -> None:
        self.sessions = sessions
        self._audit: AuditSink = audit or NoAudit()
        self.redis = redis
        self.jobs = jobs
        self.http = http
        self.settings = settings
        self.allow_private = allow_private
        self._active: list[_Active] | None = None
        self._active_version: bytes | str | None = None
        self._checked_at = -math.inf
        self._reload = asyncio.Lock()

    def register_jobs(self, jobs: JobEngine) -> None:
        """The delivery job and the periodic sweep for lost ones (before the worker starts)."""
        jobs.register(DELIVER_JOB, self.deliver)
        jobs.every(SWEEP_JOB, SWEEP_EVERY_S, self.sweep)

    # --- endpoints (admin) --------------------------------------------------------------------------

    async def create_endpoint(
        self, url: str, events: Sequence[str], *, created_by: str | None
    ) -> CreatedEndpoint:
        """A new active endpoint for ``events``, with a fresh secret (returned here only)."""
        wanted = list(dict.fromkeys(events))  # deduplicated, in the given order
        if not wanted:
            raise ValidationFailed("`events` must name at least one event")
        unknown = [e for e in wanted if e not in EVENT_TYPES]
        if unknown:
            raise ValidationFailed(
                f"unknown events {', '.join(map(repr, unknown[:5]))}; known: {', '.join(EVENT_TYPES)}"
            )
        await check_webhook_url(url, allow_private=self.allow_private)
        endpoint = WebhookEndpoint(url=url, events=wanted, secret=new_secret(), created_by=created_by)
        async with self.sessions() as session:
            session.add(endpoint)
            await session.commit()
        await self._endpoints_changed()
        # The id and events only: a URL may carry a receiver's token.
        await self._audit.record(created_by, "webhook.created", "webhook", endpoint.id, {"events": wanted})
        return CreatedEndpoint(id=endpoint.id, secret=endpoint.secret, url=endpoint.url, events=wanted)

    async def list_endpoints(self) -> list[EndpointView]:
        """Every endpoint, newest first (inactive ones too), without secrets."""
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(WebhookEndpoint).order_by(col(WebhookEndpoint.created_at).desc())
                )
            ).scalars()
            return [
                EndpointView(
                    id=r.id, url=r.url, events=list(r.events), active=r.active, created_at=_utc(r.created_at)
                )
                for r in rows
            ]

    async def deactivate(self, endpoint_id: str, *, by: str | None = None) -> None:
        """Stop sending to an endpoint: no new deliveries, and pending ones end as failed at their next
        attempt. Idempotent; NotFound for an unknown id."""
        async with self.sessions() as session:
            endpoint = await session.get(WebhookEndpoint, endpoint_id)
            if endpoint is None:
                raise NotFound("no such webhook endpoint")
            endpoint.active = False
            await session.commit()
        await self._endpoints_changed()
        await self._audit.record(by, "webhook.deactivated", "webhook", endpoint_id)

    async def deliveries(self, endpoint_id: str, *, limit: int = 50) -> list[DeliveryView]:
        """An endpoint's deliveries, newest first, each with its attempts."""
        if not 1 <= limit <= DELIVERIES_LIMIT_MAX:
            raise ValidationFailed(f"`limit` must be 1 to {DELIVERIES_LIMIT_MAX}")
        async with self.sessions() as session:
            if await session.get(WebhookEndpoint, endpoint_id) is None:
                raise NotFound("no such webhook endpoint")
            rows = list(
                (
                    await session.execute(
                        select(WebhookDelivery)
                        .where(col(WebhookDelivery.endpoint_id) == endpoint_id)
                        .order_by(col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.id).desc())
                        .limit(limit)
                    )
                ).scalars()
            )
            attempts: dict[str, list[AttemptView]] = {r.id: [] for r in rows}
            if rows:
                for a in (
                    await session.execute(
                        select(WebhookAttempt)
                        .where(col(WebhookAttempt.delivery_id).in_(list(attempts)))
                        .order_by(col(WebhookAttempt.id))
                    )
                ).scalars():
                    attempts[a.delivery_id].append(
                        AttemptView(
                            at=_utc(a.at), status_code=a.status_code, error=a.error, duration_ms=a.duration_ms
                        )
                    )
        return [
            DeliveryView(
                id=r.id,
                message_id=r.message_id,
                event_type=r.event_type,
                status=r.status,
                attempts=r.attempts,
                last_status_code=r.last_status_code,
                last_error=r.last_error,
                created_at=_utc(r.created_at),
                delivered_at=_utc(r.delivered_at),
                next_attempt_at=_utc(r.next_attempt_at),
                attempt_log=attempts[r.id],
            )
            for r in rows
        ]

    async def replay(self, endpoint_id: str, delivery_id: str) -> None:
        """Send a delivery again (same body and ``webhook-id``, fresh timestamp and signature) with a new
        round of attempts. NotFound unless the delivery is the endpoint's; Conflict while it is still
        pending (its attempts are under way) or when the endpoint is deactivated."""
        async with self.sessions() as session:
            delivery = await session.get(WebhookDelivery, delivery_id)
            if delivery is None or delivery.endpoint_id != endpoint_id:
                raise NotFound("no such delivery for this webhook endpoint")
            endpoint = await session.get(WebhookEndpoint, endpoint_id)
            if endpoint is None or not endpoint.active:
                raise Conflict("the webhook endpoint is deactivated")
            # Conditional, so two replays at once start one round.
            claimed = await session.execute(
                update(WebhookDelivery)
                .where(col(WebhookDelivery.id) == delivery_id, col(WebhookDelivery.status) != "pending")
                .values(status="pending", attempts=0, next_attempt_at=datetime.now(UTC), delivered_at=None)
            )
            if not claimed.rowcount:  # type: ignore[attr-defined]
                raise Conflict("the delivery is pending already")
            await session.commit()
        await self._enqueue_attempt(delivery_id, 1)

    # --- the events port ----------------------------------------------------------------------------

    async def emit(self, event_type: str, data: Mapping[str, Any], *, event_id: str | None = None) -> None:
        """Record a delivery of the event for every active endpoint subscribed to it and queue the first
        attempts. Never raises: a failure is logged and the caller's work goes on."""
        try:
            await self._emit(event_type, data, event_id)
        except Exception:
            log.exception("webhook event %s could not be recorded", event_type)

    async def _emit(self, event_type: str, data: Mapping[str, Any], event_id: str | None) -> None:
        if event_type not in EVENT_TYPES:
            log.error("unknown webhook event type %r dropped", event_type)
            return
        subscribed = [e.id for e in await self._active_endpoints() if event_type in e.events]
        if not subscribed:
            return
        body = json.dumps(
            {"type": event_type, "timestamp": _iso_now(), "data": dict(data)},
            separators=(",", ":"), ensure_ascii=False,
        )  # fmt: skip
        message_id = message_id_for(event_type, event_id)
        created: list[str] = []
        async with self.sessions() as session:
            if event_id is not None:
                recorded = set(
                    (
                        await session.execute(
                            select(WebhookDelivery.endpoint_id).where(
                                col(WebhookDelivery.message_id) == message_id,
                                col(WebhookDelivery.endpoint_id).in_(subscribed),
                            )
                        )
                    ).scalars()
                )
                subscribed = [e for e in subscribed if e not in recorded]
        now = datetime.now(UTC)
        for endpoint_id in subscribed:
            delivery = WebhookDelivery(
                endpoint_id=endpoint_id, message_id=message_id, event_type=event_type, payload=body,
                next_attempt_at=now,
            )  # fmt: skip
            try:
                async with self.sessions() as session, session.begin():
                    session.add(delivery)
            except IntegrityError:
                continue  # the same event, reported at the same moment by another job: recorded there
            created.append(delivery.id)
        for delivery_id in created:
            # A failed enqueue leaves the delivery pending and due: the sweep queues it.
            with contextlib.suppress(Exception):
                await self._enqueue_attempt(delivery_id, 1)

    async def _active_endpoints(self) -> list[_Active]:
        if self._active is not None and time.monotonic() - self._checked_at < ENDPOINTS_CHECK_S:
            return self._active
        async with self._reload:
            if self._active is not None and time.monotonic() - self._checked_at < ENDPOINTS_CHECK_S:
                return self._active
            version = await self.redis.get(keys.webhook_endpoints_version())
            if self._active is None or version != self._active_version:
                async with self.sessions() as session:
                    rows = (
                        await session.execute(select(WebhookEndpoint).where(col(WebhookEndpoint.active)))
                    ).scalars()
                    self._active = [_Active(r.id, frozenset(r.events)) for r in rows]
                self._active_version = version
            self._checked_at = time.monotonic()
            return self._active

    async def _endpoints_changed(self) -> None:
        self._active = None  # this process sees the change at once; the others within ENDPOINTS_CHECK_S
        await self.redis.incr(keys.webhook_endpoints_version())

    # --- delivery jobs ------------------------------------------------------------------------------

    async def _enqueue_attempt(self, delivery_id: str, attempt: int, delay_s: float = 0.0) -> None:
        await self.jobs.enqueue(
            DELIVER_JOB,
            key=f"{DELIVER_JOB}:{delivery_id}:{attempt}",
            delay_s=delay_s,
            timeout_s=math.ceil(self.settings.timeout_s) + JOB_TIMEOUT_MARGIN_S,
            delivery_id=delivery_id,
            attempt=attempt,
        )

    async def deliver(self, delivery_id: str, attempt: int) -> None:
        """Attempt ``attempt`` of a delivery (the ``webhooks.deliver`` job); a stale or duplicate job (the
        attempt was made, the delivery is no longer pending) does nothing."""
        settings = self.settings
        async with self.sessions() as session:
            delivery = await session.get(WebhookDelivery, delivery_id)
            if delivery is None or delivery.status != "pending" or delivery.attempts != attempt - 1:
                return
            if attempt > settings.max_attempts:  # the sweep's re-run of a last attempt whose job was lost
                delivery.status = "failed"
                delivery.last_error = delivery.last_error or "the last attempt was lost with its worker"
                delivery.next_attempt_at = None
                await session.commit()
                return
            endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id)
            if endpoint is None or not endpoint.active:
                delivery.status = "failed"
                delivery.last_error = "the endpoint was deactivated"
                delivery.next_attempt_at = None
                await session.commit()
                return
            # Claim the attempt: if this job runs twice (a worker died after sending), only one sends.
            # Until it records a result, the delivery is due again after the request's timeout and the
            # backoff: a lost job is then picked up by the sweep.
            due = datetime.now(UTC) + timedelta(
                seconds=settings.timeout_s
                + backoff_s(attempt, settings.backoff_base_s, settings.backoff_max_s)
            )
            claimed = await session.execute(
                update(WebhookDelivery)
                .where(
                    col(WebhookDelivery.id) == delivery_id,
                    col(WebhookDelivery.status) == "pending",
                    col(WebhookDelivery.attempts) == attempt - 1,
                )
                .values(attempts=attempt, next_attempt_at=due)
            )
            if not claimed.rowcount:  # type: ignore[attr-defined]
                return
            await session.commit()
            url, secret, message_id, body = (
                endpoint.url,
                endpoint.secret,
                delivery.message_id,
                delivery.payload,
            )

        status_code, error, duration_ms = await self._send(url, secret, message_id, body)
        ok = status_code is not None and 200 <= status_code < 300
        metrics.WEBHOOK_DELIVERIES.labels(outcome="delivered" if ok else "failed").inc()
        final = not ok and attempt >= settings.max_attempts
        delay = 0.0 if ok or final else backoff_s(attempt, settings.backoff_base_s, settings.backoff_max_s)
        now = datetime.now(UTC)
        async with self.sessions() as session:
            session.add(
                WebhookAttempt(
                    delivery_id=delivery_id,
                    at=now,
                    status_code=status_code,
                    error=error,
                    duration_ms=duration_ms,
                )
            )
            values: dict[str, Any] = {"last_status_code": status_code, "last_error": error}
            if ok:
                values |= {"status": "delivered", "delivered_at": now, "next_attempt_at": None}
            elif final:
                values |= {"status": "failed", "next_attempt_at": None}
            else:
                values |= {"next_attempt_at": now + timedelta(seconds=delay)}
            await session.execute(
                update(WebhookDelivery)
                .where(col(WebhookDelivery.id) == delivery_id, col(WebhookDelivery.attempts) == attempt)
                .values(**values)
            )
            await session.commit()
        if ok:
            return
        if final:
            log.warning("webhook delivery %s failed after %d attempts: %s", delivery_id, attempt, error)
            return
        await self._enqueue_attempt(delivery_id, attempt + 1, delay_s=delay)

    async def _send(
        self, url: str, secret: str, message_id: str, body: str
    ) -> tuple[int | None, str | None, float]:
        """POST the signed body once: (status code or None, error or None, duration in ms)."""
        started = time.monotonic()
        payload = body.encode()
        sent_at = datetime.now(UTC)
        headers = {
            "webhook-id": message_id,
            "webhook-timestamp": str(math.floor(sent_at.timestamp())),
            "webhook-signature": Webhook(secret).sign(message_id, sent_at, payload),
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }
        status: int | None = None
        error: str | None = None
        try:
            # Again at every attempt: what the name resolves to may have changed since the endpoint was made.
            await check_webhook_url(url, allow_private=self.allow_private)
            async with asyncio.timeout(self.settings.timeout_s):
                # Streamed and closed unread: the answer's body is not needed, however large it is.
                async with self.http.stream("POST", url, content=payload, headers=headers) as response:
                    status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except UnsafeWebhookUrl as exc:
            error = exc.message
        except TimeoutError:
            error = f"no answer within {self.settings.timeout_s:g}s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {one_line(exc)}"
        return status, (error[:ERROR_CHARS] if error else None), round((time.monotonic() - started) * 1000, 1)

    async def sweep(self) -> int:
        """Queue the next attempt of each pending delivery whose job was lost (the periodic job); how many."""
        cutoff = datetime.now(UTC) - timedelta(seconds=SWEEP_MARGIN_S)
        async with self.sessions() as session:
            due = list(
                (
                    await session.execute(
                        select(WebhookDelivery.id, WebhookDelivery.attempts)
                        .where(
                            col(WebhookDelivery.status) == "pending",
                            col(WebhookDelivery.next_attempt_at) < cutoff,
                        )
                        .order_by(col(WebhookDelivery.next_attempt_at))
                        .limit(SWEEP_BATCH)
                    )
                ).all()
            )
        for delivery_id, attempts in due:
            await self._enqueue_attempt(delivery_id, attempts + 1)
        if due:
            log.info("webhooks: %d overdue deliveries queued again", len(due))
        return len(due)
