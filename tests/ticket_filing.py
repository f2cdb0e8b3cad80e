"""Filing tickets into a running test server's Redis and database from the test process.

A ticket is filed through the ticket service of a runtime that shares the server's Redis and database (the
service the REST channel calls); the server's own job worker triages it, drafts it and puts it in the
agents' queue, as for a ticket filed over HTTP. Browser tests have no event loop of their own (Playwright's
sync API), so :func:`file_ticket_sync` runs one in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from support.runtime import Runtime, open_runtime
from support.settings import AppSettings, DatabaseSettings, RedisSettings, Settings
from support.testing.fake_anthropic import FakeAnthropic
from support.tickets.service import TicketIn
from tests.integration.llm_fixtures import settings_for

T = TypeVar("T")


@contextlib.asynccontextmanager
async def ticket_runtime(
    data_dir: Path, fake: FakeAnthropic, redis_url: str, database_url: str
) -> AsyncIterator[Runtime]:
    """A runtime on the server's Redis and database that runs no jobs (the server's worker does)."""
    settings = Settings(
        app=AppSettings(data_dir=data_dir),
        redis=RedisSettings(url=redis_url),
        database=DatabaseSettings(url=database_url),
        llm=settings_for(fake),
    )
    async with open_runtime(settings, run_jobs=False) as runtime:
        yield runtime


def with_tickets_sync(
    data_dir: Path,
    fake: FakeAnthropic,
    redis_url: str,
    database_url: str,
    work: Callable[[Runtime], Awaitable[T]],
) -> T:
    """Run ``work`` on a :func:`ticket_runtime` from code with no event loop (in a thread of its own)."""

    async def run() -> T:
        async with ticket_runtime(data_dir, fake, redis_url, database_url) as runtime:
            return await work(runtime)

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run()).result(timeout=60)


def file_ticket_sync(
    data_dir: Path, fake: FakeAnthropic, redis_url: str, database_url: str, ticket: TicketIn
) -> str:
    """File ``ticket`` (from code with no event loop); returns its id."""

    async def file(runtime: Runtime) -> str:
        filed, _ = await runtime.tickets.create(ticket, key_id=None, idempotency_key=None)
        return filed.id

    return with_tickets_sync(data_dir, fake, redis_url, database_url, file)
