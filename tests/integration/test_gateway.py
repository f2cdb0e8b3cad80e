"""ModelGateway against the fake Anthropic server through the real SDK, real Redis and real SQL ledgers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import pytest
import redis.asyncio as aioredis
from anthropic.types import MessageParam
from pydantic import SecretStr
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from support import keys
from support.db.engine import make_engine, session_factory
from support.db.models import ModelUsage
from support.errors import (
    CircuitOpen,
    ModelRejected,
    ModelRetriesExhausted,
    ModelTimedOut,
    ModelUnavailable,
)
from support.llm.gateway import ModelGateway, make_client
from support.settings import LLMSettings
from support.testing.fake_anthropic import FakeAnthropic, RecordedRequest, Reply
from tests.servers import free_port

HAIKU = "claude-haiku-4-5"
SONNET = "claude-sonnet-4-6"
HELLO: list[MessageParam] = [{"role": "user", "content": "hello"}]


class ManualClock:
    """Breaker clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


def settings_for(fake: FakeAnthropic, **overrides: Any) -> LLMSettings:
    values: dict[str, Any] = {
        "api_key": SecretStr("sk-test"),
        "base_url": fake.url,
        "max_attempts": 3,
        "backoff_base_s": 0.05,
        "backoff_max_s": 2.0,
        "breaker_failures": 5,
        "breaker_cooldown_s": 30.0,
        "answer_idle_timeout_s": 0.3,
        "requests_per_minute": 1000,
        "budget_wait_s": 0.5,
    }
    values.update(overrides)
    return LLMSettings().model_copy(update=values)


GatewayFactory = Callable[..., ModelGateway]


@pytest.fixture
async def make_gateway(
    fake: FakeAnthropic, redis_client: aioredis.Redis, db_engine: AsyncEngine
) -> AsyncIterator[GatewayFactory]:
    clients: list[anthropic.AsyncAnthropic] = []

    def factory(**overrides: Any) -> ModelGateway:
        clock = overrides.pop("breaker_clock", None)
        settings = settings_for(fake, **overrides)
        client = make_client(settings)
        clients.append(client)
        return ModelGateway(client, redis_client, session_factory(db_engine), settings, breaker_clock=clock)

    yield factory
    for client in clients:
        await client.close()


async def ledger(engine: AsyncEngine) -> list[ModelUsage]:
    async with session_factory(engine)() as session:
        return list((await session.execute(select(ModelUsage).order_by(ModelUsage.id))).scalars())  # type: ignore[arg-type]


def message_posts(fake: FakeAnthropic) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.method == "POST" and r.path == "/v1/messages"]


async def test_create_returns_message_and_writes_one_ledger_row(
    fake: FakeAnthropic, make_gateway: GatewayFactory, db_engine: AsyncEngine
) -> None:
    fake.add_rule(reply=Reply(text="Hi there"))
    gateway = make_gateway()
    message = await gateway.create(
        purpose="triage",
        model=HAIKU,
        conversation_id="c1",
        policy_version="p1",
        max_tokens=50,
        messages=HELLO,
    )
    assert message.content[0].type == "text"
    [row] = await ledger(db_engine)
    assert (row.purpose, row.model, row.conversation_id, row.policy_version) == ("triage", HAIKU, "c1", "p1")
    assert (row.outcome, row.attempts) == ("ok", 1)
    assert row.input_tokens == message.usage.input_tokens > 0
    assert row.output_tokens == message.usage.output_tokens > 0
    assert row.request_id == message._request_id
    assert row.request_id
    assert row.latency_ms > 0


@pytest.mark.serial
async def test_retry_after_from_429_is_honoured(
    fake: FakeAnthropic, make_gateway: GatewayFactory, db_engine: AsyncEngine
) -> None:
    fake.fail_next(429, retry_after=1)
    await make_gateway().create(purpose="triage", model=HAIKU, max_tokens=20, messages=HELLO)
    first, second = message_posts(fake)
    gap = second.arrived_at - first.arrived_at
    # At least the second the server asked for, and not that wait plus a backoff of its own (or twice it):
    # the rest is one loopback round trip and scheduling, up to 0.6 s when the parallel suite loads 2 cores.
    assert 1.0 <= gap < 1.6
    [row] = await ledger(db_engine)
    assert (row.outcome, row.attempts) == ("ok", 2)


@pytest.mark.serial
async def test_529_without_retry_after_backs_off_with_jitter_and_succeeds(
    fake: FakeAnthropic, make_gateway: GatewayFactory, db_engine: AsyncEngine
) -> None:
    fake.fail_next(529, n=2)
    await make_gateway(backoff_base_s=0.1).create(
        purpose="triage", model=HAIKU, max_tokens=20, messages=HELLO
    )
    times = [r.arrived_at for r in message_posts(fake)]
    assert len(times) == 3
    # full jitter: attempt n sleeps uniform(0, base * 2^(n-1))
    assert times[1] - times[0] < 0.1 + 0.1
    assert times[2] - times[1] < 0.2 + 0.1
    [row] = await ledger(db_engine)
    assert (row.outcome, row.attempts) == ("ok", 3)


async def test_exhausted_retries_raise_unavailable_with_last_status(
    fake: FakeAnthropic, make_gateway: GatewayFactory, db_engine: AsyncEngine
) -> None:
    fake.fail_next(529, n=3)
    with pytest.raises(ModelRetriesExhausted) as caught:
        await make_gateway().create(purpose="triage", model=HAIKU, max_tokens=20, messages=HELLO)
    assert (caught.value.last_status, caught.value.attempts) == (529, 3)
    assert len(message_posts(fake)) == 3
    [row] = await ledger(db_engine)
    assert (row.outcome, row.attempts, row.cost_usd) == ("error:529", 3, Decimal(0))


async def test_400_is_rejected_without_retry(
    fake: FakeAnthropic, make_gateway: GatewayFactory, db_engine: AsyncEngine
) -> None:
    fake.fail_next(400)
    with pytest.raises(ModelRejected):
        await make_gateway().create(purpose="triage", model=HAIKU, max_tokens=20, messages=HELLO)
    assert len(message_posts(fake)) == 1
    [row] = await ledger(db_engine)
    assert (row.outcome, row.attempts) == ("error:400", 1)


async def test_breaker_opens_then_half_opens_after_cooldown_and_closes_on_success(
    fake: FakeAnthropic, make_gateway: GatewayFactory, db_engine: AsyncEngine
) -> None:
    clock = ManualClock()
    gateway = make_gateway(max_attempts=1, breaker_failures=2, breaker_cooldown_s=30, breaker_clock=clock)
    fake.fail_next(500, n=2)
    for _ in range(2):
        with pytest.raises(ModelRetriesExhausted):
            await gateway.create(purpose="triage", model=HAIKU, max_tokens=20, messages=HELLO)
    with pytest.raises(CircuitOpen):
        await gateway.create(purpose="triage", model=HAIKU, max_tokens=20, messages=HELLO)
    assert len(message_posts(fake)) == 2  # the refused call never reached the API
    clock.now += 30
    await gateway.create(purpose="triage", model=HAIKU, max_tokens=20, messages=HELLO)  # the trial
    await gateway.create(purpose="triage", model=HAIKU, max_tokens=20, messages=HELLO)  # closed again
    assert len(message_posts(fake)) == 4
    outcomes = [row.outcome for row in await ledger(db_engine)]
    assert outcomes == ["error:500", "error:500", "circuit_open", "ok", "ok"]


async def test_a_call_refused_by_the_open_breaker_gives_its_budget_reservation_back(
    fake: FakeAnthropic, make_gateway: GatewayFactory, redis_client: aioredis.Redis
) -> None:
    gateway = make_gateway(
        max_attempts=1, breaker_failures=1, breaker_cooldown_s=30, breaker_clock=ManualClock()
    )
    fake.fail_next(500)
    with pytest.raises(ModelRetriesExhausted):
        await gateway.create(purpose="triage", model=HAIKU, max_tokens=20, messages=HELLO)
    before = await redis_client.hgetall(keys.budget_totals("account"))
    with pytest.raises(CircuitOpen):
        await gateway.create(purpose="triage", model=HAIKU, max_tokens=20, messages=HELLO)
    # breaker and budget are asked at once; the refused call holds no request and no tokens afterwards
    assert await redis_client.hgetall(keys.budget_totals("account")) == before
    assert before[b"requests"] == b"1"


async def test_cached_call_cost_in_ledger_matches_hand_computation(
    fake: FakeAnthropic, make_gateway: GatewayFactory, db_engine: AsyncEngine
) -> None:
    gateway = make_gateway()
    policy = "Refunds are accepted within thirty days of purchase with a receipt. " * 120  # ~2000 tokens
    system = [{"type": "text", "text": policy, "cache_control": {"type": "ephemeral"}}]
    for _ in range(2):
        await gateway.create(purpose="answer", model=SONNET, system=system, max_tokens=50, messages=HELLO)
    first, second = await ledger(db_engine)
    assert first.cache_write_5m_tokens > 0
    assert second.cache_read_tokens == first.cache_write_5m_tokens
    # Sonnet 4.6 list prices, USD per MTok: input 3, cache write 5m 3.75, 1h 6, cache read 0.30, output 15
    for row in (first, second):
        expected = (
            Decimal(row.input_tokens) * Decimal("3")
            + Decimal(row.cache_write_5m_tokens) * Decimal("3.75")
            + Decimal(row.cache_write_1h_tokens) * Decimal("6")
            + Decimal(row.cache_read_tokens) * Decimal("0.30")
            + Decimal(row.output_tokens) * Decimal("15")
        ) / Decimal(1_000_000)
        assert row.cost_usd == expected


async def test_streams_end_at_message_stop_and_still_reuse_one_connection(
    fake: FakeAnthropic, make_gateway: GatewayFactory, db_engine: AsyncEngine
) -> None:
    fake.add_rule(reply=Reply(text="Returns are free within thirty days."))
    gateway = make_gateway()
    for _ in range(3):
        async with gateway.stream(purpose="answer", model=SONNET, max_tokens=100, messages=HELLO) as s:
            assert "".join([d async for d in s.text_deltas()]) == "Returns are free within thirty days."
            assert s.final_message.stop_reason == "end_turn"
            assert s.final_message.usage.output_tokens > 0
    # the body after message_stop is read when the block exits, so the connection goes back to the pool
    assert fake.connections_accepted == 1
    assert [row.outcome for row in await ledger(db_engine)] == ["ok", "ok", "ok"]


async def test_stream_delivers_deltas_and_records_ttft(
    fake: FakeAnthropic, make_gateway: GatewayFactory, db_engine: AsyncEngine
) -> None:
    fake.add_rule(reply=Reply(text="Your refund is on its way, it takes five days."))
    fake.set_latency(ttft_s=0.1)
    gateway = make_gateway()
    async with gateway.stream(
        purpose="answer", model=SONNET, conversation_id="c9", max_tokens=100, messages=HELLO
    ) as s:
        deltas = [d async for d in s.text_deltas()]
    assert len(deltas) > 1
    assert "".join(deltas) == "Your refund is on its way, it takes five days."
    assert s.final_message.usage.output_tokens > 0
    [row] = await ledger(db_engine)
    assert row.outcome == "ok"
    assert row.ttft_ms is not None
    assert row.ttft_ms >= 100
    assert row.output_tokens == s.final_message.usage.output_tokens
    assert row.request_id


@pytest.mark.serial
async def test_stalled_stream_times_out_within_idle_timeout_and_is_recorded(
    fake: FakeAnthropic, make_gateway: GatewayFactory, db_engine: AsyncEngine
) -> None:
    fake.add_rule(reply=Reply(text="a long answer " * 20))
    fake.stall_next(after_events=4)
    gateway = make_gateway(answer_idle_timeout_s=0.3)
    started = time.monotonic()
    received: list[str] = []
    with pytest.raises(ModelTimedOut):
        async with gateway.stream(purpose="answer", model=SONNET, max_tokens=100, messages=HELLO) as s:
            received.extend([d async for d in s.text_deltas()])
    assert time.monotonic() - started < 0.3 + 0.5
    assert len(message_posts(fake)) == 1  # a started stream is never retried
    [row] = await ledger(db_engine)
    assert row.outcome == "timeout"
    assert row.input_tokens > 0  # message_start had arrived: the prompt is billed


async def test_stream_that_stalls_before_its_first_event_is_retried(
    fake: FakeAnthropic, make_gateway: GatewayFactory, db_engine: AsyncEngine
) -> None:
    fake.stall_next(after_events=0)
    gateway = make_gateway(answer_idle_timeout_s=0.2)
    async with gateway.stream(purpose="answer", model=SONNET, max_tokens=100, messages=HELLO) as s:
        text = "".join([d async for d in s.text_deltas()])
    assert text
    assert len(message_posts(fake)) == 2
    [row] = await ledger(db_engine)
    assert (row.outcome, row.attempts) == ("ok", 2)


@pytest.mark.serial
async def test_stream_that_stalls_on_every_start_gives_up_at_the_start_timeout(
    fake: FakeAnthropic, make_gateway: GatewayFactory, db_engine: AsyncEngine
) -> None:
    """Headers and then nothing, on every attempt: the call ends at ``answer_start_timeout_s`` (the caller
    falls back), not after max_attempts stalls of the idle timeout each."""
    fake.stall_next(after_events=0, n=10)
    gateway = make_gateway(
        answer_idle_timeout_s=0.4, answer_start_timeout_s=0.6, max_attempts=3, backoff_base_s=0.01
    )
    started = time.monotonic()
    with pytest.raises(ModelTimedOut):
        async with gateway.stream(purpose="answer", model=SONNET, max_tokens=100, messages=HELLO):
            pass
    assert 0.6 <= time.monotonic() - started < 0.6 + 0.4
    assert len(message_posts(fake)) == 2  # the second attempt had what was left of the 0.6 s
    [row] = await ledger(db_engine)
    assert (row.outcome, row.attempts) == ("timeout", 2)


async def test_count_tokens_passes_through(fake: FakeAnthropic, make_gateway: GatewayFactory) -> None:
    assert await make_gateway().count_tokens(model=HAIKU, messages=HELLO, system="x" * 400) > 100


async def test_batch_results_are_recorded_at_batch_prices(
    fake: FakeAnthropic, make_gateway: GatewayFactory, db_engine: AsyncEngine
) -> None:
    gateway = make_gateway()
    batch = await gateway.create_batch(
        [{"custom_id": "t-1", "params": {"model": HAIKU, "max_tokens": 20, "messages": HELLO}}]
    )
    assert (await gateway.retrieve_batch(batch.id)).processing_status == "ended"
    results = [r async for r in gateway.batch_results(batch.id)]
    assert [r.custom_id for r in results] == ["t-1"]
    await gateway.record_batch_result(results[0], model=HAIKU, ticket_id="t-1")
    [row] = await ledger(db_engine)
    assert row.batch
    assert row.ticket_id == "t-1"
    # Haiku, halved: input 1 -> 0.5, output 5 -> 2.5 USD per MTok
    assert row.cost_usd == (
        Decimal(row.input_tokens) * Decimal("0.5") + Decimal(row.output_tokens) * Decimal("2.5")
    ) / Decimal(1_000_000)


async def test_stream_retries_a_429_before_it_starts(
    fake: FakeAnthropic, make_gateway: GatewayFactory, db_engine: AsyncEngine
) -> None:
    fake.fail_next(429, retry_after=0.1)
    async with make_gateway().stream(purpose="answer", model=SONNET, max_tokens=50, messages=HELLO) as s:
        assert "".join([d async for d in s.text_deltas()])
    [row] = await ledger(db_engine)
    assert (row.outcome, row.attempts) == ("ok", 2)


async def test_ledger_failure_is_logged_not_raised(
    fake: FakeAnthropic, redis_client: aioredis.Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(fake)
    client = make_client(settings)
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'unmigrated.sqlite3'}")  # no model_usage table
    try:
        gateway = ModelGateway(client, redis_client, session_factory(engine), settings)
        message = await gateway.create(purpose="triage", model=HAIKU, max_tokens=20, messages=HELLO)
    finally:
        await client.close()
        await engine.dispose()
    assert message.content
    assert "ledger write failed" in caplog.text


async def test_concurrent_calls_share_ledger_commits_and_every_row_is_written(
    fake: FakeAnthropic, make_gateway: GatewayFactory, db_engine: AsyncEngine
) -> None:
    commits: list[int] = []
    event.listen(db_engine.sync_engine, "commit", lambda _conn: commits.append(1))
    gateway = make_gateway()
    replies = await asyncio.gather(
        *(gateway.create(purpose="triage", model=HAIKU, max_tokens=20, messages=HELLO) for _ in range(30))
    )
    rows = await ledger(db_engine)
    assert len(replies) == len(rows) == 30  # each call's row was committed before the call returned
    assert {r.outcome for r in rows} == {"ok"}
    assert len({r.request_id for r in rows}) == 30
    assert 1 <= len(commits) < 30  # rows that arrived during a commit shared the next one


async def test_redis_unreachable_at_the_gate_is_model_unavailable_at_once(
    fake: FakeAnthropic, db_engine: AsyncEngine
) -> None:
    """The breaker and budget live in Redis. Redis gone as a call starts must be a ``ModelError`` the turn
    falls back on (offline answer or a person), not a raw Redis error that kills the turn's model task and
    leaves the turn to wait out its deadline. No request reaches the model API; the ledger says why."""
    dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5)
    settings = settings_for(fake)
    client = make_client(settings)
    gateway = ModelGateway(client, dead, session_factory(db_engine), settings)
    try:
        started = time.monotonic()
        with pytest.raises(ModelUnavailable):
            await gateway.create(purpose="triage", model=HAIKU, max_tokens=20, messages=HELLO)
        with pytest.raises(ModelUnavailable):
            await _stream_all(gateway)
        assert time.monotonic() - started < 10.0  # at once: not a turn deadline's wait
    finally:
        await client.close()
        await dead.aclose()
    assert message_posts(fake) == []
    assert [row.outcome for row in await ledger(db_engine)] == ["redis_unavailable", "redis_unavailable"]


async def _stream_all(gateway: ModelGateway) -> list[str]:
    async with gateway.stream(purpose="answer", model=SONNET, max_tokens=50, messages=HELLO) as stream:
        return [delta async for delta in stream.text_deltas()]
