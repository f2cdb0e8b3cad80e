"""``ModelGateway``: the ONLY place that calls the model API.

Every call goes through the same steps, in this order, for every attempt:

1. the model's circuit breaker (:mod:`support.llm.breaker`) – an open breaker raises ``CircuitOpen`` at
   once, so callers fall back instead of queueing behind a failing model;
2. the shared per-minute budget (:mod:`support.llm.budget`) – waits a bounded time or ``OverBudget``;
3. the SDK call, with the purpose's deadline as its timeout. The SDK client is built with
   ``max_retries=0`` (:func:`make_client`) because retries live here, where they can consult the breaker
   and the budget before each attempt; two retry layers would multiply attempts.

Retries: 408/409/429/5xx/529, connection errors and timeouts, with exponential backoff and full jitter,
or the server's ``retry-after-ms``/``retry-after`` when given (capped by ``backoff_max_s``); never past
the purpose's deadline. Other 4xx raise ``ModelRejected`` at once. A stream is retried only until its
first event arrives (and only within ``answer_start_timeout_s``, all attempts together): after that, text
has reached the customer and a retry would repeat it.

The ledger: every call – success or failure, including ``circuit_open`` and ``over_budget`` – writes one
``ModelUsage`` row with the billed token counts and their exact cost. The row is written after the answer
has been delivered (after the stream ended), with a short timeout; a failing ledger is logged, never raised:
losing a row is better than losing a customer's answer. Rows are group-committed (:class:`LedgerWriter`):
a call's row is committed when its call returns, but rows that arrive while a commit is running share the
next one, so under load the database sees one transaction per batch instead of one per model call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import anthropic
import httpx2
from anthropic.lib.streaming import AsyncMessageStream
from anthropic.types import Message, MessageParam
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from support import metrics
from support.db.models import ModelUsage
from support.errors import (
    REDIS_OUTAGES,
    CircuitOpen,
    ModelError,
    ModelRejected,
    ModelRetriesExhausted,
    ModelTimedOut,
    ModelUnavailable,
    OverBudget,
    UnpricedModel,
)
from support.llm.breaker import Breaker, BreakerRegistry, Clock, RedisBreaker
from support.llm.budget import Limits, Reservation, SharedBudget
from support.llm.pricing import TokenCounts, cost
from support.redaction import Redactor
from support.redis_client import RedisClient
from support.settings import LLMSettings

log = logging.getLogger(__name__)

CallPurpose = Literal["triage", "answer", "summary", "batch", "predict_csat", "other"]

CHARS_PER_TOKEN = 4  # rough prompt-size estimate for budget reservations; settle() corrects it
LEDGER_WRITE_TIMEOUT_S = 2.0  # a stuck database must not hold a customer's turn for long
RETRYABLE_STATUSES = frozenset({408, 409, 429})  # plus every status >= 500
NOT_A_BREAKER_FAILURE = frozenset({409})  # a conflict says nothing about the model API's health


def make_client(settings: LLMSettings) -> anthropic.AsyncAnthropic:
    """The SDK client the app lifespan creates (and closes): no SDK retries, explicit connect timeout.

    The per-call timeouts are passed on every call; the client-wide one only bounds calls that forget.
    """
    return anthropic.AsyncAnthropic(
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        base_url=settings.base_url,
        max_retries=0,
        timeout=httpx2.Timeout(settings.answer_timeout_s, connect=settings.connect_timeout_s),
    )


@dataclass
class _Call:
    """What the ledger records about one gateway call, filled in as it progresses."""

    purpose: str
    model: str
    conversation_id: str | None
    ticket_id: str | None
    policy_version: str | None
    started: float = field(default_factory=time.monotonic)
    attempts: int = 0
    outcome: str = "ok"
    usage: TokenCounts = field(default_factory=TokenCounts)
    request_id: str | None = None
    ttft_ms: float | None = None
    batch: bool = False
    latency_ms: float | None = None
    redactions: dict[str, int] | None = None


@dataclass(frozen=True)
class _Failure:
    """A classified failed attempt."""

    outcome: str
    retryable: bool
    breaker_failure: bool
    status: int | None
    retry_after_s: float | None


def _retry_after_s(headers: httpx2.Headers) -> float | None:
    """The server's requested wait: ``retry-after-ms`` first (more precise), then ``retry-after`` seconds."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) / scale
        except ValueError:
            continue
        if value >= 0:
            return value
    return None


def _classify(exc: Exception) -> _Failure:
    """Map an SDK exception to a ledger outcome and a retry/breaker decision."""
    if isinstance(exc, anthropic.APITimeoutError | TimeoutError):
        return _Failure("timeout", True, True, None, None)
    if isinstance(exc, anthropic.APIConnectionError):
        return _Failure("error:connection", True, True, None, None)
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        if status == 200:  # `event: error` inside a started stream (e.g. overloaded_error)
            return _Failure(f"error:{exc.type or 'stream'}"[:32], True, True, status, None)
        retryable = status in RETRYABLE_STATUSES or status >= 500
        should_retry = exc.response.headers.get("x-should-retry")
        if should_retry in ("true", "false"):
            retryable = should_retry == "true"
        return _Failure(
            f"error:{status}",
            retryable,
            retryable and status not in NOT_A_BREAKER_FAILURE,
            status,
            _retry_after_s(exc.response.headers),
        )
    return _Failure(f"error:{type(exc).__name__}"[:32], False, False, None, None)


def estimate_input_tokens(params: Mapping[str, Any]) -> int:
    """A cheap upper-ish estimate of a prompt's tokens (~4 chars each) for the budget reservation."""
    size = sum(_chars(params.get(part)) for part in ("system", "messages", "tools"))
    return size // CHARS_PER_TOKEN + 1


def _chars(value: Any) -> int:
    """Characters of every key and string in a JSON-like value, plus a few per item for the JSON around
    them: within a few percent of ``len(json.dumps(value))`` without building that string (the policy
    alone is ~80 KB, and this runs before every model request)."""
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, Mapping):
        return sum(len(str(k)) + 4 + _chars(v) for k, v in value.items()) + 2
    if isinstance(value, list | tuple):
        return sum(_chars(v) + 2 for v in value) + 2
    if value is None:
        return 0
    return len(str(value))


class GatewayStream:
    """One streamed answer: iterate :meth:`text_deltas`, then read :attr:`final_message`.

    Created by :meth:`ModelGateway.stream` after the first event arrived; each further event must come
    within ``answer_idle_timeout_s`` and before the call's deadline, else ``ModelTimedOut``.
    """

    def __init__(self, sdk_stream: _Prepend, call: _Call, *, idle_timeout_s: float, deadline: float) -> None:
        self._sdk = sdk_stream
        self._call = call
        self._idle_timeout_s = idle_timeout_s
        self._deadline = deadline
        self._final: Message | None = None
        self._consumed = False

    @property
    def ttft_ms(self) -> float | None:
        """Milliseconds from the gateway call to the first text delta (what the customer waits)."""
        return self._call.ttft_ms

    @property
    def request_id(self) -> str | None:
        """The API's ``request-id`` of the attempt that is streaming."""
        return self._call.request_id

    @property
    def final_message(self) -> Message:
        """The complete message with its usage; only after :meth:`text_deltas` ran to the end."""
        if self._final is None:
            raise RuntimeError("the stream has not finished; iterate text_deltas() first")
        return self._final

    async def _next_event(self) -> Any:
        remaining = self._deadline - time.monotonic()
        idle = min(self._idle_timeout_s, remaining)
        if idle <= 0:
            raise ModelTimedOut("model stream exceeded its deadline")
        try:
            async with asyncio.timeout(idle):
                return await anext(self._sdk)
        except TimeoutError as exc:
            what = "stalled" if idle == self._idle_timeout_s else "exceeded its deadline"
            raise ModelTimedOut(f"model stream {what}") from exc

    async def text_deltas(self) -> AsyncIterator[str]:
        """Text deltas as they arrive; raises ``ModelTimedOut`` / ``ModelUnavailable`` on a broken stream."""
        if self._consumed:
            return
        self._consumed = True
        while True:
            try:
                event = await self._next_event()
            except StopAsyncIteration:
                break
            except ModelTimedOut:
                self._call.outcome = "timeout"
                raise
            except anthropic.APIError as exc:
                failure = _classify(exc)
                self._call.outcome = failure.outcome
                raise ModelRetriesExhausted(
                    f"model stream broke after it started: {exc}",
                    last_status=failure.status,
                    attempts=self._call.attempts,
                ) from exc
            if event.type == "text":
                if self._call.ttft_ms is None:
                    self._call.ttft_ms = (time.monotonic() - self._call.started) * 1000
                yield event.text
            elif event.type == "message_stop":
                # The message is complete: the reply need not wait for the HTTP body's last bytes (often
                # one more network read); the stream is drained and closed when the gateway block exits.
                break
        # The SDK's snapshot accessor is private; if a release drops it, fall back to the public (slower)
        # get_final_message rather than break every answer.
        peek = getattr(self._sdk, "_current_snapshot_or_none", None)
        snapshot = peek() if callable(peek) else None
        self._final = snapshot if snapshot is not None else await self._sdk.get_final_message()
        self._call.usage = TokenCounts.from_usage(self._final.usage)


class LedgerWriter:
    """Group commit of ledger rows: :meth:`write` returns once its row is committed; rows written while a
    commit is in flight are committed together by the next one. A failing batch is retried row by row,
    so one bad row cannot lose the others."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._pending: list[tuple[ModelUsage, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, row: ModelUsage) -> None:
        """Commit ``row`` (possibly together with others); raises what the commit raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="ledger-flush")
        await future

    async def _commit(self, rows: list[ModelUsage]) -> None:
        async with self._sessions() as session:
            session.add_all(rows)
            await session.commit()

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            outcomes: list[BaseException | None]
            try:
                await self._commit([row for row, _ in batch])
                outcomes = [None] * len(batch)
            except Exception as exc:
                if len(batch) == 1:
                    outcomes = [exc]
                else:
                    outcomes = []
                    for row, _ in batch:
                        try:
                            await self._commit([row])
                            outcomes.append(None)
                        except Exception as row_exc:
                            outcomes.append(row_exc)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # the writer gave up (timeout, cancellation)
                    continue
                if outcome is None:
                    future.set_result(None)
                else:
                    future.set_exception(outcome)


class ModelGateway:
    """Calls the model API with timeouts, retries, a breaker, a shared budget and a cost ledger.

    The clients are passed in and owned by the app lifespan; the gateway closes none of them.
    """

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        redis: RedisClient,
        sessions: async_sessionmaker[AsyncSession],
        settings: LLMSettings,
        *,
        breaker_clock: Clock | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self._client = client
        # What every prompt builder (triage, answer, summary) runs customer text through before it is
        # sent; on by default so that no caller can forget it.
        self.redactor = redactor if redactor is not None else Redactor()
        self._sessions = sessions
        self._ledger = LedgerWriter(sessions)
        self._settings = settings
        self.budget = SharedBudget(
            redis,
            Limits(
                settings.requests_per_minute,
                settings.input_tokens_per_minute,
                settings.output_tokens_per_minute,
            ),
            max_wait_s=settings.budget_wait_s,
        )

        def make_breaker(model: str) -> Breaker:
            return RedisBreaker(
                redis,
                model,
                failures=settings.breaker_failures,
                cooldown_s=settings.breaker_cooldown_s,
                clock=breaker_clock,
            )

        self.breakers = BreakerRegistry(make_breaker)

    # -- helpers -----------------------------------------------------------------------------------

    def timeout_for(self, purpose: str) -> float:
        """The whole-call deadline of a purpose, in seconds."""
        s = self._settings
        return {
            "triage": s.triage_timeout_s,
            "answer": s.answer_timeout_s,
            "summary": s.summary_timeout_s,
            "batch": s.batch_timeout_s,
        }.get(purpose, s.summary_timeout_s)

    def _backoff_s(self, attempt: int, retry_after_s: float | None) -> float:
        """Server-requested wait if any, else full jitter: uniform(0, base * 2^(attempt-1)); both capped."""
        cap = self._settings.backoff_max_s
        if retry_after_s is not None:
            return min(retry_after_s, cap)
        return random.uniform(0, min(cap, self._settings.backoff_base_s * 2 ** (attempt - 1)))

    async def _gate(self, call: _Call, breaker: Breaker, params: Mapping[str, Any]) -> Reservation:
        """Breaker and budget before one attempt; both refusals are final for this call.

        The two Redis steps run concurrently (they live on different cluster slots, so one script cannot
        do both): every turn pays one round trip instead of two. The price is paid only when the breaker
        is open: the reservation just taken is given back at once.

        Redis unreachable here is ``ModelUnavailable`` (outcome ``redis_unavailable``), not a raw Redis error:
        the turn falls back (offline answer or a person) at once, as for a model outage, instead of its task
        dying and the turn waiting out its deadline.
        """
        allowed, reserved = await asyncio.gather(
            breaker.allow(),
            self.budget.acquire(
                requests=1,
                input_tokens=estimate_input_tokens(params),
                output_tokens=int(params.get("max_tokens", 0)),
            ),
            return_exceptions=True,
        )
        outage = next((r for r in (allowed, reserved) if isinstance(r, REDIS_OUTAGES)), None)
        if outage is not None:
            if isinstance(reserved, Reservation):
                with contextlib.suppress(Exception):
                    await self.budget.settle(reserved, requests=0, input_tokens=0, output_tokens=0)
            call.outcome = "redis_unavailable"
            raise ModelUnavailable(f"the model gate's Redis is unavailable: {outage!r}") from outage
        if isinstance(allowed, BaseException):
            if isinstance(reserved, Reservation):  # no request was made: give all of it back
                with contextlib.suppress(Exception):
                    await self.budget.settle(reserved, requests=0, input_tokens=0, output_tokens=0)
            if isinstance(allowed, CircuitOpen):
                call.outcome = "circuit_open"
            raise allowed
        if isinstance(reserved, BaseException):
            if isinstance(reserved, OverBudget):
                call.outcome = "over_budget"
            raise reserved
        return reserved

    async def _settle(self, reservation: Reservation, usage: TokenCounts | None) -> None:
        """Correct the reservation: billed input (cache reads are not rate-limited) and output tokens."""
        try:
            if usage is None:
                await self.budget.settle(reservation, input_tokens=0, output_tokens=0)
            else:
                await self.budget.settle(
                    reservation,
                    input_tokens=usage.input + usage.cache_write_5m + usage.cache_write_1h,
                    output_tokens=usage.output,
                )
        except REDIS_OUTAGES as exc:  # the reservation simply stays at its estimate
            log.warning("budget settle skipped: Redis unavailable (%r)", exc)
        except Exception:
            log.warning("budget settle failed", exc_info=True)

    async def _after_failure(
        self, call: _Call, breaker: Breaker, exc: Exception, attempt: int, deadline: float
    ) -> float:
        """Classify a failed attempt; return the sleep before the next one, or raise the final error."""
        failure = _classify(exc)
        call.outcome = failure.outcome
        if isinstance(exc, anthropic.APIStatusError):
            call.request_id = exc.request_id or call.request_id
        if failure.breaker_failure:
            await breaker.record_failure()
        else:
            await breaker.record_success()  # the API answered: it is reachable
        if not failure.retryable:
            raise ModelRejected(f"model API rejected the request ({failure.status}): {exc}") from exc
        sleep_s = self._backoff_s(attempt, failure.retry_after_s)
        if attempt >= self._settings.max_attempts or time.monotonic() + sleep_s >= deadline:
            if failure.outcome == "timeout" and attempt < self._settings.max_attempts:
                raise ModelTimedOut(
                    f"model call exceeded its {self.timeout_for(call.purpose)}s deadline"
                ) from exc
            raise ModelRetriesExhausted(
                f"model API failed {attempt} time(s), last: {failure.outcome}",
                last_status=failure.status,
                attempts=attempt,
            ) from exc
        return sleep_s

    def _sdk_timeout(self, deadline: float) -> httpx2.Timeout:
        remaining = max(0.001, deadline - time.monotonic())
        return httpx2.Timeout(remaining, connect=min(remaining, self._settings.connect_timeout_s))

    # -- calls -------------------------------------------------------------------------------------

    async def create(
        self,
        *,
        purpose: CallPurpose,
        model: str,
        conversation_id: str | None = None,
        ticket_id: str | None = None,
        policy_version: str | None = None,
        redactions: Mapping[str, int] | None = None,
        **params: Any,
    ) -> Message:
        """One non-streaming ``messages.create`` (tools, tool_choice, output_config... pass through).

        ``redactions``: per kind, how many values the caller redacted out of this prompt (for the ledger).
        """
        call = _Call(purpose, model, conversation_id, ticket_id, policy_version)
        call.redactions = dict(redactions) if redactions is not None else None
        deadline = call.started + self.timeout_for(purpose)
        breaker = self.breakers.get(model)
        try:
            for attempt in range(1, self._settings.max_attempts + 1):
                reservation = await self._gate(call, breaker, params)
                call.attempts = attempt
                try:
                    message: Message = await self._client.messages.create(
                        model=model, timeout=self._sdk_timeout(deadline), **params
                    )
                except anthropic.APIError as exc:
                    await self._settle(reservation, None)
                    await asyncio.sleep(await self._after_failure(call, breaker, exc, attempt, deadline))
                    continue
                await breaker.record_success()
                call.outcome = "ok"
                call.usage = TokenCounts.from_usage(message.usage)
                call.request_id = message._request_id
                await self._settle(reservation, call.usage)
                return message
            raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover
        finally:
            await self._record(call)

    @asynccontextmanager
    async def stream(
        self,
        *,
        purpose: CallPurpose,
        model: str,
        conversation_id: str | None = None,
        ticket_id: str | None = None,
        policy_version: str | None = None,
        redactions: Mapping[str, int] | None = None,
        **params: Any,
    ) -> AsyncIterator[GatewayStream]:
        """A streamed answer: ``async with gw.stream(...) as s: async for t in s.text_deltas(): ...``.

        Attempts are retried until the first SSE event arrives, and only within ``answer_start_timeout_s``
        of the call (then ``ModelTimedOut``: the caller falls back); the ledger row is written when the block
        exits (after the customer got the answer), with outcome ``timeout`` for a stalled stream.
        ``redactions`` as for :meth:`create`.
        """
        call = _Call(purpose, model, conversation_id, ticket_id, policy_version)
        call.redactions = dict(redactions) if redactions is not None else None
        deadline = call.started + self.timeout_for(purpose)
        # Attempts to start the stream share a shorter bound: three stalled starts of idle_s each would
        # otherwise keep the customer waiting, with nothing on screen, for the whole answer deadline.
        start_deadline = min(deadline, call.started + self._settings.answer_start_timeout_s)
        idle_s = self._settings.answer_idle_timeout_s
        breaker = self.breakers.get(model)
        manager: Any = None
        reservation: Reservation | None = None
        gateway_stream: GatewayStream | None = None
        try:
            for attempt in range(1, self._settings.max_attempts + 1):
                reservation = await self._gate(call, breaker, params)
                call.attempts = attempt
                manager = self._client.messages.stream(
                    model=model, timeout=self._sdk_timeout(deadline), **params
                )
                try:
                    async with asyncio.timeout(max(0.001, min(start_deadline - time.monotonic(), idle_s))):
                        sdk_stream = await manager.__aenter__()
                        call.request_id = sdk_stream.request_id
                        first = await anext(sdk_stream)
                except (anthropic.APIError, TimeoutError, StopAsyncIteration) as exc:
                    await manager.__aexit__(None, None, None)
                    manager = None
                    await self._settle(reservation, None)
                    error = exc if isinstance(exc, Exception) else RuntimeError("empty stream")
                    if isinstance(exc, StopAsyncIteration):
                        error = anthropic.APIConnectionError(
                            message="stream ended before any event",
                            request=httpx2.Request("POST", "/v1/messages"),
                        )
                    await asyncio.sleep(
                        await self._after_failure(call, breaker, error, attempt, start_deadline)
                    )
                    continue
                # The first event is in: from here on, nothing is retried.
                call.outcome = "ok"
                gateway_stream = GatewayStream(
                    _Prepend(first, sdk_stream), call, idle_timeout_s=idle_s, deadline=deadline
                )
                break
            assert gateway_stream is not None  # the loop broke with a stream or raised
            try:
                yield gateway_stream
            except BaseException:
                if call.outcome == "ok":
                    call.outcome = "error:abandoned"
                raise
            if call.outcome == "ok" and gateway_stream._final is None:
                call.outcome = "error:abandoned"  # the caller left the block without reading it all
        except asyncio.CancelledError:
            # Cancelled before the stream started (the turn no longer wants it): still one ledger row.
            if call.outcome == "ok":
                call.outcome = "error:abandoned"
            raise
        finally:
            if gateway_stream is not None:
                # Feed the breaker with how the started stream ended (attempt failures were fed already).
                if call.outcome == "ok":
                    await breaker.record_success()
                elif call.outcome != "error:abandoned":  # timeout or a broken stream
                    await breaker.record_failure()
                if gateway_stream._final is None:
                    snapshot = (
                        gateway_stream._sdk._current_snapshot_or_none()
                    )  # billed input of a broken stream
                    if snapshot is not None:
                        call.usage = TokenCounts.from_usage(snapshot.usage)
            if manager is not None:
                try:
                    if gateway_stream is not None and gateway_stream._final is not None:
                        # Read the body to its end (text_deltas stopped at message_stop), so the HTTP
                        # connection goes back to the pool instead of being closed half-read.
                        async with asyncio.timeout(idle_s):
                            await gateway_stream._sdk.get_final_message()
                    await manager.__aexit__(None, None, None)
                except Exception:
                    log.debug("closing the SDK stream failed", exc_info=True)
            if reservation is not None and gateway_stream is not None:
                await self._settle(reservation, call.usage)
            await self._record(call)

    async def count_tokens(
        self,
        *,
        model: str,
        messages: Iterable[MessageParam],
        system: Any = anthropic.omit,
        tools: Any = anthropic.omit,
    ) -> int:
        """Tokens the API would count for this prompt (not budgeted: it has its own limits)."""
        try:
            result = await self._client.messages.count_tokens(
                model=model,
                messages=messages,
                system=system,
                tools=tools,
                timeout=httpx2.Timeout(
                    self._settings.triage_timeout_s, connect=self._settings.connect_timeout_s
                ),
            )
        except anthropic.APIError as exc:
            raise self._plain_error(exc) from exc
        return result.input_tokens

    # -- batches -----------------------------------------------------------------------------------

    def _batch_timeout(self) -> httpx2.Timeout:
        return httpx2.Timeout(self._settings.batch_timeout_s, connect=self._settings.connect_timeout_s)

    @staticmethod
    def _plain_error(exc: anthropic.APIError) -> ModelError:
        failure = _classify(exc)
        if failure.retryable:
            return ModelRetriesExhausted(str(exc), last_status=failure.status, attempts=1)
        return ModelRejected(str(exc))

    async def create_batch(self, requests: Iterable[Any]) -> MessageBatch:
        """Submit a Message Batch (``[{"custom_id", "params"}]``); no retry: the caller re-submits."""
        try:
            return await self._client.messages.batches.create(
                requests=requests, timeout=self._batch_timeout()
            )
        except anthropic.APIError as exc:
            raise self._plain_error(exc) from exc

    async def retrieve_batch(self, batch_id: str) -> MessageBatch:
        """The batch's processing status and counts."""
        try:
            return await self._client.messages.batches.retrieve(batch_id, timeout=self._batch_timeout())
        except anthropic.APIError as exc:
            raise self._plain_error(exc) from exc

    async def batch_results(self, batch_id: str) -> AsyncIterator[MessageBatchIndividualResponse]:
        """The results of an ended batch, in any order (match them by ``custom_id``)."""
        try:
            decoder = await self._client.messages.batches.results(batch_id, timeout=self._batch_timeout())
            async for item in decoder:
                yield item
        except anthropic.APIError as exc:
            raise self._plain_error(exc) from exc

    async def record_batch_result(
        self,
        result: MessageBatchIndividualResponse,
        *,
        model: str,
        purpose: CallPurpose = "batch",
        conversation_id: str | None = None,
        ticket_id: str | None = None,
        policy_version: str | None = None,
    ) -> None:
        """Write the ledger row of one batch result, priced at the batch discount (through the group-commit
        writer; :func:`batch_usage_row` gives the row to a caller that commits it with its own changes)."""
        row = batch_usage_row(
            result, model=model, purpose=purpose, conversation_id=conversation_id, ticket_id=ticket_id,
            policy_version=policy_version,
        )  # fmt: skip
        await self._write(row, purpose, row.model, row.outcome)

    # -- ledger ------------------------------------------------------------------------------------

    async def _record(self, call: _Call) -> None:
        """Write the call's ledger row; log, never raise, on failure."""
        await self._write(_usage_row(call), call.purpose, call.model, call.outcome)

    async def _write(self, row: ModelUsage, purpose: str, model: str, outcome: str) -> None:
        metrics.model_call(row.model, purpose, row.outcome, row.cost_usd, row.ttft_ms)
        try:
            async with asyncio.timeout(LEDGER_WRITE_TIMEOUT_S):
                await self._ledger.write(row)
        except Exception:
            log.exception("ledger write failed for %s/%s (%s)", purpose, model, outcome)


def batch_usage_row(
    result: MessageBatchIndividualResponse,
    *,
    model: str,
    purpose: CallPurpose = "batch",
    conversation_id: str | None = None,
    ticket_id: str | None = None,
    policy_version: str | None = None,
    redactions: Mapping[str, int] | None = None,
) -> ModelUsage:
    """The ledger row of one batch result, priced at the batch discount, for the caller to commit (so a
    result's cost is recorded in the transaction that applies it, exactly once). An errored, expired or
    canceled request is billed nothing: its row has zero tokens and outcome ``error:batch_<type>``."""
    call = _Call(purpose, model, conversation_id, ticket_id, policy_version, batch=True, latency_ms=0.0)
    call.redactions = dict(redactions) if redactions is not None else None
    call.attempts = 1
    if result.result.type == "succeeded":
        message = result.result.message
        call.model = message.model or model
        call.usage = TokenCounts.from_usage(message.usage)
        call.request_id = message.id
    else:
        call.outcome = f"error:batch_{result.result.type}"[:32]
    return _usage_row(call)


def _usage_row(call: _Call) -> ModelUsage:
    """The ledger row of a finished call, costed (an unpriced model is logged and costed at 0)."""
    try:
        cost_usd = cost(call.model, call.usage, batch=call.batch)
    except UnpricedModel:
        log.error("no price for model %r; ledger row costed at 0", call.model)
        cost_usd = Decimal(0)
    latency_ms = call.latency_ms if call.latency_ms is not None else (time.monotonic() - call.started) * 1000
    return ModelUsage(
        purpose=call.purpose,
        model=call.model,
        conversation_id=call.conversation_id,
        ticket_id=call.ticket_id,
        policy_version=call.policy_version,
        input_tokens=call.usage.input,
        cache_write_5m_tokens=call.usage.cache_write_5m,
        cache_write_1h_tokens=call.usage.cache_write_1h,
        cache_read_tokens=call.usage.cache_read,
        output_tokens=call.usage.output,
        cost_usd=cost_usd,
        latency_ms=latency_ms,
        ttft_ms=call.ttft_ms,
        request_id=call.request_id,
        outcome=call.outcome,
        attempts=call.attempts,
        batch=call.batch,
        redactions=call.redactions,
    )


class _Prepend:
    """The SDK stream with its already-received first event put back in front."""

    def __init__(self, first: Any, stream: AsyncMessageStream[Any]) -> None:
        self._first: Any = first
        self._pending = True
        self._stream = stream

    def __aiter__(self) -> _Prepend:
        return self

    async def __anext__(self) -> Any:
        if self._pending:
            self._pending = False
            return self._first
        return await anext(self._stream)

    async def get_final_message(self) -> Message:
        return await self._stream.get_final_message()

    def _current_snapshot_or_none(self) -> Message | None:
        return self._stream._current_snapshot_or_none()
