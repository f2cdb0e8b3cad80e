"""The async SQL engine: created in the app's lifespan, disposed by whoever created it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, make_url, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry


def make_engine(url: str) -> AsyncEngine:
    """Create the engine; SQLite gets WAL and a busy timeout so several processes can share the file,
    PostgreSQL connections the session time zone UTC."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # WAL's recommended durability: no fsync per commit (a commit survives a process crash; a power
            # cut may lose the last ones, never corrupt the file). Production runs PostgreSQL.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    # Every connection's session time zone is UTC. The datetime columns are ``timestamp without time zone``
    # and hold UTC; PostgreSQL stores an aware value in such a column as its wall time in the session's zone,
    # so on a server (or database) set to another zone every stored time would be local, read back as UTC:
    # report days and weeks, durations and drill-down times off by hours.
    utc_session: dict[str, Any] = (
        {"server_settings": {"timezone": "UTC"}}
        if make_url(url).get_driver_name() == "asyncpg"
        else {"options": "-c timezone=UTC"}  # psycopg
    )
    return create_async_engine(
        url, pool_pre_ping=True, pool_size=10, max_overflow=20, connect_args=utc_session
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database cannot answer a trivial query."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


@asynccontextmanager
async def owned_engine(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine that is disposed when the block ends."""
    engine = make_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()
