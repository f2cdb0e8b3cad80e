"""Presence and team hours as services over real Redis and real SQL (SQLite, and PostgreSQL when
configured): two service instances stand for two processes sharing one Redis."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from handoff.presence import AgentPresence
from handoff.queue import HandoffQueue
from handoff.teams import TeamService
from support.db.engine import make_engine
from support.errors import NotFound, ValidationFailed
from support.hours import parse_hours

CLOSED_ALWAYS = {"timezone": "UTC", "weekly": {}}


async def test_a_console_gone_on_one_process_is_set_away_once_by_whichever_sweeps_first(
    redis_client: Any,
) -> None:
    queue = HandoffQueue(redis_client, lease_s=30)
    here, there = AgentPresence(redis_client, away_after_s=0.3), AgentPresence(redis_client, away_after_s=0.3)
    await queue.renew("ada")  # her console, on "here", was seen
    await here.connected("ada")
    await there.set("bo", "away")
    assert (await there.effective())[1] == {
        "ada": {"presence": "online", "auto": False}, "bo": {"presence": "away", "auto": False},
    }  # fmt: skip
    await asyncio.sleep(0.5)  # no renewal: her console is gone
    assert (await there.effective())[1]["ada"] == {"presence": "away", "auto": True}  # before any sweep
    swept = await asyncio.gather(here.sweep(), there.sweep())
    assert sorted(swept, key=len) == [[], ["ada"]]  # made once, by one of them
    assert await here.online() == frozenset()
    # Her console opens again: online; Bo chose away, and a console does not change that.
    await queue.renew("ada")
    await queue.renew("bo")
    assert await here.connected("ada") is True
    assert await here.connected("bo") is False
    assert await there.online() == frozenset({"ada"})
    with pytest.raises(ValidationFailed):
        await here.set("ada", "busy")


async def test_hours_set_by_an_admin_persist_and_decide_availability(
    db_engine: AsyncEngine, redis_client: Any
) -> None:
    presence = AgentPresence(redis_client)
    await HandoffQueue(redis_client).renew("ada")
    await presence.set("ada", "online")
    teams = TeamService(async_sessionmaker(db_engine, expire_on_commit=False), presence)
    assert (await teams.availability()).available is True  # no hours: always open
    team = await teams.set_hours("default", CLOSED_ALWAYS, admin_id="root")
    assert (team["source"], team["open_now"]) == ("admin", False)
    who = await teams.availability()
    assert (who.online, who.available) == (True, False)
    # Another process (a new service on the same database) reads the same hours.
    other = TeamService(async_sessionmaker(db_engine, expire_on_commit=False), presence)
    assert await other.hours() == parse_hours(CLOSED_ALWAYS)
    with pytest.raises(ValidationFailed):
        await teams.set_hours("default", {"timezone": "Nowhere/Town"}, admin_id="root")
    with pytest.raises(NotFound):
        await teams.set_hours("sales", None, admin_id="root")
    assert (await teams.set_hours("default", None, admin_id="root"))["source"] == "setting"


async def test_unreadable_hours_fall_back_to_the_setting_instead_of_failing_a_handoff(
    tmp_path: Path, redis_client: Any
) -> None:
    setting = json.dumps(CLOSED_ALWAYS)
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'no-such-dir' / 'db.sqlite3'}")  # cannot open
    try:
        teams = TeamService(async_sessionmaker(engine), AgentPresence(redis_client), configured_hours=setting)
        assert await teams.hours() == parse_hours(setting)
        assert (await teams.availability()).available is False
    finally:
        await engine.dispose()
