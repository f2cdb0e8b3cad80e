"""The shared per-minute budget: atomic across clients, bounded waits, settling to actual usage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from support import keys
from support.db.engine import session_factory
from support.db.models import ModelUsage
from support.errors import OverBudget
from support.llm.budget import Limits, SharedBudget
from support.llm.gateway import ModelGateway, make_client
from support.settings import LLMSettings
from support.testing.fake_anthropic import FakeAnthropic
from tests.redis_cluster import redis_client_for

HELLO: list[dict[str, Any]] = [{"role": "user", "content": "hello"}]


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
async def second_redis(redis_url: str, redis_client: aioredis.Redis) -> AsyncIterator[aioredis.Redis]:
    """Another connection pool on the same (already flushed) Redis: a second process's view."""
    client = redis_client_for(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.mark.serial
async def test_grants_up_to_the_limit_then_refuses_fast_when_waiting_cannot_help(
    redis_client: aioredis.Redis,
) -> None:
    budget = SharedBudget(redis_client, Limits(3, 1000, 1000), max_wait_s=0.2)
    for _ in range(3):
        await budget.acquire(input_tokens=10, output_tokens=10)
    started = time.monotonic()
    with pytest.raises(OverBudget):
        await budget.acquire(input_tokens=10, output_tokens=10)
    assert time.monotonic() - started < 0.1  # room frees in ~60 s, beyond the 0.2 s allowed: no sleep


async def test_token_limits_apply_independently_of_request_count(redis_client: aioredis.Redis) -> None:
    budget = SharedBudget(redis_client, Limits(100, 1000, 500), max_wait_s=0)
    await budget.acquire(input_tokens=900, output_tokens=10)
    with pytest.raises(OverBudget):
        await budget.acquire(input_tokens=200, output_tokens=10)
    await budget.acquire(input_tokens=100, output_tokens=490)
    with pytest.raises(OverBudget):
        await budget.acquire(input_tokens=0, output_tokens=1)


@pytest.mark.serial
async def test_request_larger_than_the_limit_is_refused_at_once(redis_client: aioredis.Redis) -> None:
    budget = SharedBudget(redis_client, Limits(10, 1000, 1000), max_wait_s=5)
    started = time.monotonic()
    with pytest.raises(OverBudget):
        await budget.acquire(input_tokens=1001)
    assert time.monotonic() - started < 0.1


async def test_settle_gives_back_unused_reserved_tokens(redis_client: aioredis.Redis) -> None:
    budget = SharedBudget(redis_client, Limits(10, 1000, 1000), max_wait_s=0)
    reservation = await budget.acquire(input_tokens=100, output_tokens=1000)
    await budget.settle(reservation, input_tokens=100, output_tokens=40)
    await budget.acquire(input_tokens=100, output_tokens=960)
    with pytest.raises(OverBudget):
        await budget.acquire(output_tokens=1)


async def test_settlements_asked_for_together_share_round_trips_and_all_land(
    redis_client: aioredis.Redis,
) -> None:
    budget = SharedBudget(redis_client, Limits(100, 100_000, 100_000), max_wait_s=0)
    reservations = [await budget.acquire(input_tokens=100, output_tokens=500) for _ in range(40)]
    script = budget._settle
    calls = 0

    async def counting(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await script(**kwargs)

    budget._settle = counting  # type: ignore[assignment]
    await asyncio.gather(
        *(budget.settle(r, input_tokens=10 + i, output_tokens=i) for i, r in enumerate(reservations))
    )
    assert calls <= 2  # the first alone, the 39 that queued behind it in one more
    totals = await redis_client.hgetall(keys.budget_totals("account"))
    assert int(totals[b"input_tokens"]) == sum(10 + i for i in range(40))
    assert int(totals[b"output_tokens"]) == sum(range(40))
    assert int(totals[b"requests"]) == 40


async def test_an_expired_reservation_of_zero_tokens_does_not_break_later_calls(
    redis_client: aioredis.Redis,
) -> None:
    # Found by `switchboard bench`: a call settled at 0 input and 0 output tokens, once out of the window,
    # made every later acquire fail ("value is not an integer") for every process of the account.
    budget = SharedBudget(redis_client, Limits(10, 1000, 1000), max_wait_s=0)
    reservation = await budget.acquire(input_tokens=0, output_tokens=0)
    await budget.settle(reservation, input_tokens=0, output_tokens=0)
    seconds, micros = await redis_client.time()
    an_old_ms = seconds * 1000 + micros // 1000 - 61_000
    await redis_client.zadd(keys.budget_log("account"), {reservation.id: an_old_ms})
    await budget.acquire(input_tokens=10, output_tokens=10)
    totals = await redis_client.hgetall(keys.budget_totals("account"))
    assert {k.decode(): int(v) for k, v in totals.items()} == {
        "requests": 1,
        "input_tokens": 10,
        "output_tokens": 10,
    }


async def test_two_clients_share_one_budget(
    redis_client: aioredis.Redis, second_redis: aioredis.Redis
) -> None:
    a = SharedBudget(redis_client, Limits(4, 10_000, 10_000), max_wait_s=0)
    b = SharedBudget(second_redis, Limits(4, 10_000, 10_000), max_wait_s=0)
    outcomes = await asyncio.gather(*(x.acquire() for x in (a, b) * 5), return_exceptions=True)
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 4
    assert all(isinstance(o, OverBudget) for o in outcomes if isinstance(o, BaseException))


@pytest.mark.serial
async def test_two_gateways_never_exceed_the_requests_per_minute_budget_together(
    fake: FakeAnthropic, redis_client: aioredis.Redis, second_redis: aioredis.Redis, db_engine: AsyncEngine
) -> None:
    settings = LLMSettings().model_copy(
        update={
            "api_key": SecretStr("sk-test"),
            "base_url": fake.url,
            "requests_per_minute": 5,
            "budget_wait_s": 0.3,
        }
    )
    client_a, client_b = make_client(settings), make_client(settings)
    sessions = session_factory(db_engine)
    gateways = [
        ModelGateway(client_a, redis_client, sessions, settings),
        ModelGateway(client_b, second_redis, sessions, settings),
    ]
    try:
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(
                gateways[i % 2].create(
                    purpose="triage", model="claude-haiku-4-5", max_tokens=10, messages=HELLO
                )
                for i in range(14)
            ),
            return_exceptions=True,
        )
        elapsed = time.monotonic() - started
    finally:
        await client_a.close()
        await client_b.close()
    reached = [r for r in fake.requests if r.path == "/v1/messages"]
    assert len(reached) == 5
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 5
    assert all(isinstance(o, OverBudget) for o in outcomes if isinstance(o, BaseException))
    assert elapsed < 0.3 + 1.0  # refusals come within the bounded wait
    async with sessions() as session:
        rows = list((await session.execute(select(ModelUsage))).scalars())
    assert sorted(r.outcome for r in rows) == ["ok"] * 5 + ["over_budget"] * 9
