"""The job engine on a real Redis (or Redis Cluster): keyed jobs run once, periodic jobs keep running, and
two workers never run one job twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from support.jobs import JobEngine


async def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polls what other tasks change
            await asyncio.sleep(0.05)


async def test_a_keyed_job_is_queued_once_and_run_once(redis_url: str, redis_client) -> None:  # type: ignore[no-untyped-def]
    await redis_client.flushdb()
    engine = JobEngine(redis_url)
    ran: list[int] = []

    async def record(n: int) -> None:
        ran.append(n)

    engine.register("record", record)
    assert await engine.enqueue("record", key="same", n=1) is True
    assert await engine.enqueue("record", key="same", n=2) is False  # deduplicated while queued
    worker = asyncio.create_task(engine.run_worker())
    try:
        await _until(lambda: ran == [1])
        await asyncio.sleep(0.3)
        assert ran == [1]
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await engine.aclose()


async def test_two_workers_share_jobs_without_running_one_twice(redis_url: str, redis_client) -> None:  # type: ignore[no-untyped-def]
    await redis_client.flushdb()
    runs: Counter[int] = Counter()
    engines = [JobEngine(redis_url, concurrency=4) for _ in range(2)]

    async def work(n: int) -> None:
        await asyncio.sleep(0.01)
        runs[n] += 1

    for engine in engines:
        engine.register("work", work)
    for n in range(40):
        await engines[n % 2].enqueue("work", key=f"w{n}", n=n)
    workers = [asyncio.create_task(e.run_worker()) for e in engines]
    try:
        await _until(lambda: len(runs) == 40)
        await asyncio.sleep(0.3)
        assert set(runs.values()) == {1}
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for e in engines:
            await e.aclose()


async def test_a_periodic_job_runs_on_every_slot_on_one_worker_of_two(redis_url: str, redis_client) -> None:  # type: ignore[no-untyped-def]
    await redis_client.flushdb()
    ticks: list[float] = []
    engines = [JobEngine(redis_url) for _ in range(2)]

    async def tick() -> None:
        ticks.append(asyncio.get_running_loop().time())

    for engine in engines:
        engine.every("tick", 1.0, tick)
    workers = [asyncio.create_task(e.run_worker()) for e in engines]
    try:
        await _until(lambda: len(ticks) >= 3, timeout_s=8)
        start = ticks[0]
        await asyncio.sleep(2.0)
        # One run per one-second slot however many workers schedule it.
        assert len(ticks) <= (ticks[-1] - start) + 2
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for e in engines:
            await e.aclose()
