"""The integration-key service on real databases (SQLite, and PostgreSQL when configured): keys are
stored only as their hash, authenticate with their scopes until revoked, and record their use sparingly."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from support.db.engine import session_factory
from support.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from support.tickets.integration_keys import SCOPES, TICKETS_READ, TICKETS_WRITE, IntegrationKeys


@pytest.fixture
def service(db_engine: AsyncEngine) -> IntegrationKeys:
    return IntegrationKeys(session_factory(db_engine))


async def stored_rows(engine: AsyncEngine) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT * FROM integration_key"))
        return [dict(row._mapping) for row in rows]


async def test_a_new_key_is_stored_only_as_its_sha256_and_authenticates_with_both_scopes(
    service: IntegrationKeys, db_engine: AsyncEngine
) -> None:
    key, plaintext = await service.create("contact form", created_by="agent-1")
    assert plaintext.startswith("sbk_")
    assert len(plaintext) == 47
    assert key.scopes == list(SCOPES)
    assert key.prefix == plaintext[:12]
    assert key.created_by == "agent-1"
    (row,) = await stored_rows(db_engine)
    assert row["key_hash"] == hashlib.sha256(plaintext.encode()).hexdigest()
    assert all(plaintext not in str(value) for value in row.values())
    for scope in (TICKETS_WRITE, TICKETS_READ, None):
        assert (await service.authenticate(plaintext, scope)).id == key.id


async def test_a_key_without_the_scope_is_forbidden_and_a_wrong_or_malformed_key_unauthorized(
    service: IntegrationKeys,
) -> None:
    _key, reader = await service.create("reporting", [TICKETS_READ])
    with pytest.raises(Forbidden):
        await service.authenticate(reader, TICKETS_WRITE)
    near_miss = reader[:-1] + ("A" if reader[-1] != "A" else "B")
    for wrong in ("", "sbk_", near_miss, reader[4:], "sbk_" + "x" * 200, "sbk_é" + reader[5:], reader + "\n"):
        with pytest.raises(Unauthorized):
            await service.authenticate(wrong, TICKETS_READ)


async def test_a_revoked_key_never_authenticates_again_and_revoking_twice_changes_nothing(
    service: IntegrationKeys,
) -> None:
    key, plaintext = await service.create("e-mail bridge")
    first = await service.revoke(key.id)
    assert first.revoked_at is not None
    with pytest.raises(Unauthorized):
        await service.authenticate(plaintext, TICKETS_WRITE)
    again = await service.revoke(key.id)
    assert again.revoked_at == first.revoked_at
    with pytest.raises(NotFound):
        await service.revoke("no-such-key")
    assert [k.id for k in await service.list()] == [key.id]  # still listed, as revoked


@pytest.mark.parametrize(
    ("name", "scopes"),
    [("", None), ("   ", None), ("x" * 121, None), ("form", []), ("form", ["tickets:delete"]),
     ("form", ["tickets:read", "admin"]), ("form", "tickets:read")],
)  # fmt: skip
async def test_bad_names_and_unknown_or_empty_scopes_are_refused_and_nothing_is_stored(
    service: IntegrationKeys, db_engine: AsyncEngine, name: str, scopes: list[str] | None
) -> None:
    with pytest.raises(ValidationFailed):
        await service.create(name, scopes)
    assert await stored_rows(db_engine) == []


async def test_last_used_is_written_on_first_use_and_then_at_most_once_a_minute(
    service: IntegrationKeys, db_engine: AsyncEngine
) -> None:
    key, plaintext = await service.create("form")
    assert key.last_used_at is None
    await service.authenticate(plaintext)
    first = (await service.get(key.id)).last_used_at
    assert first is not None
    await service.authenticate(plaintext)
    assert (await service.get(key.id)).last_used_at == first  # not written again within the minute
    # Two minutes later (as the database sees it), the next use is recorded.
    async with db_engine.begin() as conn:
        await conn.execute(
            text("UPDATE integration_key SET last_used_at = :at"),
            {"at": datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=2)},  # stored as naive UTC
        )
    await service.authenticate(plaintext)
    later = (await service.get(key.id)).last_used_at
    assert later is not None
    assert later.replace(tzinfo=UTC) > datetime.now(UTC) - timedelta(seconds=30)
