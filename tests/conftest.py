"""Shared fixtures: real Redis, real SQL databases (SQLite always, PostgreSQL when configured), the fake
model API.

Environment:
- ``SWITCHBOARD_TEST_REDIS_URL``: a Redis server to use; unset, an embedded one is started for the session.
  A ``redis+cluster://host:port`` URL runs the tests against that Redis Cluster (``python -m
  tests.redis_cluster`` starts a local one and prints its URL): every client the tests and the served
  processes make is then a cluster client, and "flush" is FLUSHDB on every master.
- ``SWITCHBOARD_TEST_REDIS_CLUSTER=1`` (instead of a URL): each test process starts a local three-master
  Redis Cluster of its own for the session and runs against it as above (parallel workers: one each).
- ``SWITCHBOARD_TEST_POSTGRES_URL``: a PostgreSQL database; unset, PostgreSQL variants are skipped.
- ``SWITCHBOARD_TEST_REQUIRE_SERVICES=1``: skipping a PostgreSQL variant is an error instead (CI).
- ``SWITCHBOARD_TEST_LOCK``: the lock file by which ``serial`` tests run alone, shared by every test run
  given the same file (CI gives one to the two passes it runs side by side); unset, a parallel run makes its
  own for its workers.

In parallel (pytest-xdist, ``-n``): every worker process starts its own embedded Redis; with a single Redis
in ``SWITCHBOARD_TEST_REDIS_URL`` worker ``gwN`` uses the URL's database number minus N (``/15`` with four
workers: databases 15, 14, 13 and 12), so no two workers flush each other's keys; a Redis Cluster has one
database, so a cluster URL with more than one worker is refused. PostgreSQL variants get a database of their
own per test (a random name). Tests marked ``serial`` (upper bounds on elapsed time) run while no other test
of the run does, whichever worker they land on.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from support.db.engine import make_engine
from support.db.migrate import upgrade_to_head
from support.embedded_redis import EmbeddedRedis
from support.redis_client import is_cluster
from support.testing.fake_anthropic import FakeAnthropic
from tests.redis_cluster import RedisClusterServers, redis_client_for

POSTGRES_URL = os.environ.get("SWITCHBOARD_TEST_POSTGRES_URL")
REQUIRE_SERVICES = os.environ.get("SWITCHBOARD_TEST_REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("SWITCHBOARD_TEST_REDIS_URL")
OWN_CLUSTER = os.environ.get("SWITCHBOARD_TEST_REDIS_CLUSTER") == "1"


def _worker_index() -> int:
    """This process's pytest-xdist worker number (``gw3`` is 3); 0 when not running under ``-n``."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw"))


def worker_redis_url(url: str, index: int) -> str:
    """The database of a single-Redis URL that worker ``index`` uses: the URL's database number minus the
    index (``redis://host:6379/15``, worker 2: ``/13``). Cluster URLs are returned unchanged."""
    if is_cluster(url) or index == 0:
        return url
    parts = urlsplit(url)
    path = parts.path.strip("/")
    base = int(path) if path else 0
    if base - index < 0:
        raise pytest.UsageError(
            f"SWITCHBOARD_TEST_REDIS_URL={url}: worker gw{index} would need database {base - index}; "
            "each parallel worker takes the URL's database number minus its index, so use a higher "
            "database number (e.g. /15) or fewer workers (-n)"
        )
    return urlunsplit(parts._replace(path=f"/{base - index}"))


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to share a Redis Cluster between parallel workers (it has one database, which every test
    flushes); give the workers of a parallel run a lock file for ``serial`` tests, unless one is given."""
    workers = getattr(config.option, "numprocesses", None) or 0
    if not isinstance(workers, int) or hasattr(config, "workerinput"):
        workers = 0  # a worker itself, or xdist not loaded
    if REDIS_URL and OWN_CLUSTER:
        raise pytest.UsageError(
            "set SWITCHBOARD_TEST_REDIS_URL or SWITCHBOARD_TEST_REDIS_CLUSTER=1, not both"
        )
    if REDIS_URL and is_cluster(REDIS_URL) and workers > 1:
        raise pytest.UsageError(
            f"SWITCHBOARD_TEST_REDIS_URL is a Redis Cluster ({REDIS_URL}): a cluster has a single database "
            f"that every test flushes, so {workers} parallel workers cannot share it; run with -n 0, "
            "or with SWITCHBOARD_TEST_REDIS_CLUSTER=1 instead (a cluster of its own per worker)"
        )
    if REDIS_URL and workers > 1:
        worker_redis_url(REDIS_URL, workers - 1)  # a clear error now rather than one per test
    if workers > 1 and not os.environ.get("SWITCHBOARD_TEST_LOCK"):
        fd, path = tempfile.mkstemp(prefix="switchboard-tests-", suffix=".lock")
        os.close(fd)
        os.environ["SWITCHBOARD_TEST_LOCK"] = path  # the workers start after this, with this environment
        config.add_cleanup(lambda: _remove_lock_files(path))


def _remove_lock_files(path: str) -> None:
    os.environ.pop("SWITCHBOARD_TEST_LOCK", None)
    for name in (path, path + ".turnstile"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    """Run each test under a lock shared by every worker of the run: ``serial`` tests take it alone,
    the others together. Outermost (before pytest-timeout's timer), so waiting for it is not test time.

    Two flock files: a turnstile that every test passes and a ``serial`` test holds while it waits, so
    tests that start meanwhile queue behind it instead of starving it, and the lock itself."""
    shared = os.environ.get("SWITCHBOARD_TEST_LOCK")
    if not shared:  # one process, nothing runs beside it
        yield
        return
    path = Path(shared)
    serial = item.get_closest_marker("serial") is not None
    with contextlib.ExitStack() as stack:
        turnstile = stack.enter_context(open(path.with_name(path.name + ".turnstile"), "a+"))
        lock = stack.enter_context(open(path, "a+"))
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if serial else fcntl.LOCK_SH)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis server for this test session (per xdist worker: see the module docstring)."""
    if REDIS_URL:
        yield worker_redis_url(REDIS_URL, _worker_index())
        return
    if OWN_CLUSTER:
        with RedisClusterServers() as cluster:
            yield cluster.url
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


class _Templates:
    """Migrated template databases, made once per test process: a test's database is a copy of one.

    Migrating from empty takes about 1.9 s on PostgreSQL and 0.4 s on SQLite; ``CREATE DATABASE ...
    TEMPLATE`` takes about 0.16 s and a file copy almost nothing. Migrating from empty stays tested: the
    templates are made by :func:`upgrade_to_head`, and tests/integration/test_migrations.py migrates empty
    databases of its own."""

    def __init__(self) -> None:
        self.sqlite: Path | None = None
        self.postgres: str | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    async def sqlite_copy(self, target: Path) -> None:
        if self.sqlite is None:
            self._dir = tempfile.TemporaryDirectory(prefix="sb-test-template-")
            path = Path(self._dir.name) / "template.sqlite3"
            await upgrade_to_head(f"sqlite+aiosqlite:///{path}")
            with contextlib.closing(sqlite3.connect(path)) as conn:
                conn.execute("PRAGMA journal_mode=DELETE")  # everything in the one file that is copied
            self.sqlite = path
        shutil.copyfile(self.sqlite, target)

    async def postgres_name(self, base: str) -> str:
        if self.postgres is None:
            name = f"sbtmpl_{uuid.uuid4().hex[:12]}"
            await _pg_admin(base, f'CREATE DATABASE "{name}"')
            await upgrade_to_head(_pg_database_url(base, name))
            self.postgres = name
        return self.postgres

    def drop(self) -> None:
        if self.postgres and POSTGRES_URL:
            import asyncio

            asyncio.run(_pg_admin(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{self.postgres}" WITH (FORCE)'))
        if self._dir is not None:
            self._dir.cleanup()


_TEMPLATES = _Templates()


def _pg_database_url(base: str, name: str) -> str:
    return base.rsplit("/", 1)[0] + "/" + name


async def _pg_admin(base: str, statement: str) -> None:
    """One statement outside a transaction (CREATE/DROP DATABASE) on the configured server."""
    from sqlalchemy import text

    admin = make_engine(base)
    try:
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(statement))
    finally:
        await admin.dispose()


@pytest.fixture(scope="session", autouse=True)
def _drop_template_databases() -> Iterator[None]:
    yield
    _TEMPLATES.drop()


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated, empty database of its own: SQLite in a temp dir, PostgreSQL a fresh database (each a
    copy of a migrated template)."""
    if request.param == "sqlite":
        path = tmp_path / "test.sqlite3"
        await _TEMPLATES.sqlite_copy(path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    base = _postgres_or_skip()
    template = await _TEMPLATES.postgres_name(base)
    name = f"sbtest_{uuid.uuid4().hex[:12]}"
    await _pg_admin(base, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield _pg_database_url(base, name)
    finally:
        await _pg_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
