"""Alembic migrations, run programmatically (on start, by ``switchboard migrate``, and by tests).

Alembic is the standard migration tool for SQLAlchemy (which SQLModel is built on): versioned, reviewable
scripts that work the same on SQLite and PostgreSQL. Concurrent starters are serialised: PostgreSQL by an
advisory lock, SQLite by a file lock beside the database file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import AsyncIterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from support.db.engine import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Arbitrary constant shared by every Switchboard process: the key of the PostgreSQL advisory lock.
PG_MIGRATION_LOCK_KEY = 0x5B_0A_4D


def alembic_config() -> Config:
    """Config pointing at the packaged migration scripts."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


@contextlib.asynccontextmanager
async def _sqlite_file_lock(url: str) -> AsyncIterator[None]:
    """Exclusive lock beside the SQLite file; acquired in a thread so it never blocks the event loop."""
    database = make_url(url).database
    if not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_suffix(".migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _upgrade(connection: Connection, cfg: Config, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK_KEY})
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def upgrade_to_head(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``; safe to call from several processes at once."""
    cfg = alembic_config()
    engine = make_engine(url)
    try:
        lock = _sqlite_file_lock(url) if url.startswith("sqlite") else contextlib.nullcontext()
        async with lock, engine.begin() as conn:
            await conn.run_sync(_upgrade, cfg, revision)
    finally:
        await engine.dispose()
