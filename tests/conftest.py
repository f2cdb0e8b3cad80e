"""Shared fixtures: real Redis, real SQL databases (SQLite always, PostgreSQL when configured), the fake
model API.

Environment:
- ``SWITCHBOARD_TEST_REDIS_URL``: a Redis server to use; unset, an embedded one is started for the session.
  A ``redis+cluster://host:port`` URL runs the tests against that Redis Cluster (``python -m
  tests.redis_cluster`` starts a local one and prints its URL): every client the tests and the served
  processes make is then a cluster client, and "flush" is FLUSHDB on every master.
- ``SWITCHBOARD_TEST_POSTGRES_URL``: a PostgreSQL database; unset, PostgreSQL variants are skipped.
- ``SWITCHBOARD_TEST_REQUIRE_SERVICES=1``: skipping a PostgreSQL variant is an error instead (CI).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from support.db.engine import make_engine
from support.db.migrate import upgrade_to_head
from support.embedded_redis import EmbeddedRedis
from support.testing.fake_anthropic import FakeAnthropic
from tests.redis_cluster import redis_client_for

POSTGRES_URL = os.environ.get("SWITCHBOARD_TEST_POSTGRES_URL")
REQUIRE_SERVICES = os.environ.get("SWITCHBOARD_TEST_REQUIRE_SERVICES") == "1"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis server for this test session."""
    url = os.environ.get("SWITCHBOARD_TEST_REDIS_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="sb-test-redis-") as tmp:
        server = EmbeddedRedis(Path(tmp), persistent=False)
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client on a flushed database; closed after the test."""
    client = redis_client_for(redis_url, decode_responses=False)
    await client.flushdb()  # on a cluster client: on every master
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()


def _postgres_or_skip() -> str:
    if POSTGRES_URL:
        return POSTGRES_URL
    if REQUIRE_SERVICES:
        pytest.fail("SWITCHBOARD_TEST_REQUIRE_SERVICES=1 but SWITCHBOARD_TEST_POSTGRES_URL is not set")
    pytest.skip("PostgreSQL not configured (SWITCHBOARD_TEST_POSTGRES_URL)")


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated, empty database: SQLite in a temp dir, and PostgreSQL in a fresh schema-less database."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}"
        await upgrade_to_head(url)
        yield url
        return
    base = _postgres_or_skip()
    from sqlalchemy import text

    name = f"sbtest_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base)
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.rsplit("/", 1)[0] + "/" + name
    try:
        await upgrade_to_head(url)
        yield url
    finally:
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture
async def db_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the migrated test database, disposed after the test."""
    engine = make_engine(db_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    """The fake model API on a loopback port, one per test module (a module may define its own)."""
    with FakeAnthropic() as server:
        yield server
