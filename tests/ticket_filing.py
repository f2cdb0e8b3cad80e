"""Filing tickets into a running test server's Redis and database from the test process, and the fake-model
and settings helpers the ticket tests share.

A ticket is filed through the ticket service of a runtime that shares the server's Redis and database (the
service the REST channel calls); the server's own job worker triages it, drafts it and puts it in the
agents' queue, as for a ticket filed over HTTP. Browser tests have no event loop of their own (Playwright's
sync API), so :func:`file_ticket_sync` runs one in a thread.

For the fake model API: :func:`is_triage` and :func:`is_answer` tell a ticket's two requests apart and
:func:`triage_reply` is the triage verdict to answer with; :func:`ticket_settings` is a process's settings
on the test Redis, a database and the fake; :func:`until` polls until a check holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from support.runtime import Runtime, open_runtime
from support.settings import AppSettings, DatabaseSettings, RedisSettings, Settings
from support.testing.fake_anthropic import FakeAnthropic, Reply
from support.tickets.service import TicketIn
from tests.integration.llm_fixtures import settings_for

T = TypeVar("T")


def is_triage(body: dict[str, Any]) -> bool:
    """A triage request: it offers the tool that records the verdict."""
    return any(t.get("name") == "record_triage" for t in body.get("tools") or [])


def is_answer(body: dict[str, Any]) -> bool:
    """A draft request (chat streams it, a ticket asks for it whole): it offers the escalation tool."""
    return any(t.get("name") == "escalate_to_human" for t in body.get("tools") or [])


def triage_reply(urgency: str, confidence: float = 0.95) -> Reply:
    """The fake model's triage verdict: a refunds question of ``urgency``, sure to ``confidence``."""
    return Reply(
        tool_use={
            "name": "record_triage",
            "input": {
                "intent": "returns_refunds", "urgency": urgency, "sentiment": "neutral", "language": "en",
                "wants_human": False, "confidence": confidence, "reason": "test",
            },
        }
    )  # fmt: skip


def ticket_settings(
    data_dir: Path, fake: FakeAnthropic, redis_url: str, database_url: str | None = None, **sections: Any
) -> Settings:
    """Settings on ``redis_url`` and ``database_url`` (by default a SQLite file in ``data_dir``) with the
    model API at ``fake``; ``sections`` replace other sections of :class:`Settings` (``tickets=...``)."""
    return Settings(
        app=AppSettings(data_dir=data_dir),
        redis=RedisSettings(url=redis_url),
        database=DatabaseSettings(url=database_url or f"sqlite+aiosqlite:///{data_dir / 'db.sqlite3'}"),
        llm=settings_for(fake),
        **sections,
    )


async def until(check: Callable[[], Awaitable[Any]], timeout_s: float = 15.0) -> Any:
    """Await ``check`` every 50 ms until it gives something truthy, and return that; time out after
    ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def ticket_runtime(
    data_dir: Path, fake: FakeAnthropic, redis_url: str, database_url: str
) -> AsyncIterator[Runtime]:
    """A runtime on the server's Redis and database that runs no jobs (the server's worker does)."""
    async with open_runtime(
        ticket_settings(data_dir, fake, redis_url, database_url), run_jobs=False
    ) as runtime:
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
