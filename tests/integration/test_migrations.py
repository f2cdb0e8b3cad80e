"""Migrations bring SQLite and PostgreSQL to the same schema, idempotently, even when raced."""

from __future__ import annotations

import asyncio

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from support.db.migrate import upgrade_to_head


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
