"""The breaker state machine, run against the in-process and the Redis implementation alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from support.errors import CircuitOpen
from support.llm.breaker import (
    CLEAN_CACHE_S,
    Breaker,
    BreakerCore,
    BreakerState,
    LocalBreaker,
    RedisBreaker,
)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["local", "redis"])
async def breaker(
    request: pytest.FixtureRequest, clock: FakeClock, redis_url: str
) -> AsyncIterator[LocalBreaker | RedisBreaker]:
    if request.param == "local":
        yield LocalBreaker("m", failures=3, cooldown_s=10, trial_lease_s=5, clock=clock)
        return
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    try:
        yield RedisBreaker(client, "m", failures=3, cooldown_s=10, trial_lease_s=5, clock=clock)
    finally:
        await client.flushdb()
        await client.aclose()


async def fail(b: Breaker, n: int) -> None:
    for _ in range(n):
        await b.allow()
        await b.record_failure()


async def test_opens_after_consecutive_failures(breaker: LocalBreaker | RedisBreaker) -> None:
    await fail(breaker, 2)
    await breaker.allow()  # two failures: still closed
    await breaker.record_failure()
    assert await breaker.state() is BreakerState.OPEN
    with pytest.raises(CircuitOpen):
        await breaker.allow()


async def test_success_resets_the_failure_count(breaker: LocalBreaker | RedisBreaker) -> None:
    await fail(breaker, 2)
    await breaker.record_success()
    await fail(breaker, 2)
    await breaker.allow()
    assert await breaker.state() is BreakerState.CLOSED


async def test_half_open_admits_one_trial_then_closes_on_success(
    breaker: LocalBreaker | RedisBreaker, clock: FakeClock
) -> None:
    await fail(breaker, 3)
    clock.now += 9.9
    with pytest.raises(CircuitOpen):
        await breaker.allow()
    clock.now += 0.1
    await breaker.allow()  # the trial
    with pytest.raises(CircuitOpen):
        await breaker.allow()  # only one trial at a time
    await breaker.record_success()
    assert await breaker.state() is BreakerState.CLOSED
    await breaker.allow()


async def test_failed_trial_reopens_for_a_full_cooldown(
    breaker: LocalBreaker | RedisBreaker, clock: FakeClock
) -> None:
    await fail(breaker, 3)
    clock.now += 10
    await breaker.allow()
    await breaker.record_failure()
    assert await breaker.state() is BreakerState.OPEN
    clock.now += 9
    with pytest.raises(CircuitOpen):
        await breaker.allow()
    clock.now += 1
    await breaker.allow()


async def test_lost_trial_is_handed_to_the_next_caller_after_its_lease(
    breaker: LocalBreaker | RedisBreaker, clock: FakeClock
) -> None:
    await fail(breaker, 3)
    clock.now += 10
    await breaker.allow()  # this trial never reports back
    clock.now += 4.9
    with pytest.raises(CircuitOpen):
        await breaker.allow()
    clock.now += 0.1
    await breaker.allow()


@pytest.fixture
async def two_processes(redis_url: str, clock: FakeClock) -> AsyncIterator[tuple[RedisBreaker, RedisBreaker]]:
    """Two Redis breakers of one model on separate clients: two processes' views of one breaker."""
    a_client, b_client = aioredis.Redis.from_url(redis_url), aioredis.Redis.from_url(redis_url)
    await a_client.flushdb()
    try:
        yield (
            RedisBreaker(a_client, "shared", failures=2, cooldown_s=10, clock=clock),
            RedisBreaker(b_client, "shared", failures=2, cooldown_s=10, clock=clock),
        )
    finally:
        await a_client.flushdb()
        await a_client.aclose()
        await b_client.aclose()


async def test_two_redis_breakers_on_one_model_share_state(
    two_processes: tuple[RedisBreaker, RedisBreaker],
) -> None:
    a, b = two_processes
    await a.record_failure()
    await b.record_failure()
    with pytest.raises(CircuitOpen):
        await a.allow()
    with pytest.raises(CircuitOpen):
        await b.allow()


def test_core_retry_in_reports_the_remaining_cooldown() -> None:
    core = BreakerCore(failures=1, cooldown_s=30)
    core.record_failure(100.0)
    assert core.retry_in(110.0) == 20.0
    assert not core.allow(110.0)


async def test_a_clean_view_is_trusted_for_a_bounded_time_and_a_failure_drops_it(
    two_processes: tuple[RedisBreaker, RedisBreaker], clock: FakeClock
) -> None:
    """The healthy path skips Redis: another process's opening is seen here within CLEAN_CACHE_S."""
    a, b = two_processes
    await a.allow()  # seen clean: cached
    await b.record_failure()
    await b.record_failure()
    assert await b.state() is BreakerState.OPEN
    await a.allow()  # still inside a's clean window
    clock.now += CLEAN_CACHE_S
    with pytest.raises(CircuitOpen):
        await a.allow()
    # a failure here drops the cached view at once
    clock.now += 10
    await a.allow()  # a's half-open trial
    await a.record_success()  # closed again, and clean
    await a.allow()
    await a.record_failure()
    await b.record_failure()  # two consecutive failures across the processes: open
    with pytest.raises(CircuitOpen):
        await a.allow()
