"""Migrations bring SQLite and PostgreSQL to the same schema, idempotently, even when raced."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from support.db.engine import make_engine
from support.db.migrate import upgrade_to_head
from tests.conftest import _pg_admin, _pg_database_url, _postgres_or_skip


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    return set(names)


async def test_head_creates_the_ledger_table(db_engine: AsyncEngine) -> None:
    assert {"model_usage", "alembic_version"} <= await _tables(db_engine)


async def test_upgrading_again_and_concurrently_is_harmless(db_url: str, db_engine: AsyncEngine) -> None:
    before = await _tables(db_engine)
    await asyncio.gather(upgrade_to_head(db_url), upgrade_to_head(db_url), upgrade_to_head(db_url))
    assert await _tables(db_engine) == before


async def test_an_empty_database_migrates_to_the_same_schema_as_the_tests_use(
    db_url: str, db_engine: AsyncEngine, tmp_path: Path
) -> None:
    """Test databases are copies of a template migrated once per process; this one migrates from empty."""
    if db_url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}"
        drop = None
    else:
        base = _postgres_or_skip()
        name = f"sbtest_{uuid.uuid4().hex[:12]}"
        await _pg_admin(base, f'CREATE DATABASE "{name}"')
        url, drop = _pg_database_url(base, name), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    engine = make_engine(url)
    try:
        assert await _tables(engine) == set()
        await upgrade_to_head(url)
        assert await _tables(engine) == await _tables(db_engine)
    finally:
        await engine.dispose()
        if drop:
            await _pg_admin(_postgres_or_skip(), drop)
