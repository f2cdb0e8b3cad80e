"""A job worker whose Redis dies: it neither spins nor floods the log, and takes jobs again when Redis is
back (saq alone retries its dequeue at once, with a traceback per attempt per job slot)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from support.jobs import OUTAGE_RETRY_S, JobEngine
from tests.faults.own_redis import OwnRedis

OUTAGE_S = 3.0


async def test_a_worker_waits_out_a_redis_outage_quietly_and_then_runs_jobs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis = OwnRedis()
    redis.start()
    engine = JobEngine(redis.url, concurrency=10)
    ran: list[int] = []

    async def record(n: int) -> None:
        ran.append(n)

    engine.register("record", record)
    worker = asyncio.create_task(engine.run_worker())
    caplog.set_level(logging.INFO)
    try:
        await engine.enqueue("record", key="before", n=1)
        async with asyncio.timeout(10):
            while ran != [1]:  # noqa: ASYNC110 - polls what the worker changes
                await asyncio.sleep(0.05)
        port = redis.port
        redis.kill()
        caplog.clear()
        await asyncio.sleep(OUTAGE_S)
        records = list(caplog.records)
        unreachable = [r for r in records if "Redis unreachable" in r.getMessage()]
        tracebacks = [r for r in records if r.exc_info]
        # Ten job slots, each one attempt per OUTAGE_RETRY_S at most (saq alone: back to back, each
        # with a traceback); the outage said once.
        assert len(unreachable) == 1
        assert tracebacks == []
        assert len(records) < 10 * (OUTAGE_S / OUTAGE_RETRY_S + 2)
        again = OwnRedis()
        again.port = port
        again.start()
        redis = again
        await engine.enqueue("record", key="after", n=2)
        async with asyncio.timeout(15):
            while ran != [1, 2]:  # noqa: ASYNC110 - polls what the worker changes
                await asyncio.sleep(0.05)
        assert any("Redis is back" in r.getMessage() for r in caplog.records)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await engine.aclose()
        redis.kill()
