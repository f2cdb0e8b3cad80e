"""Widget ratings become SQL rows and the satisfaction report aggregates them (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from support.conversation.store import ConversationStore
from support.db.engine import make_engine, session_factory
from support.db.models import Agent, Rating
from support.errors import NotFound, ValidationFailed
from support.reports.ratings import RatingNotExpected, RatingService
from support.reports.satisfaction import group_label, intent_words, satisfaction_report
from tests.servers import ServerProcess, create_agent

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


async def conversation(
    store: ConversationStore, cid: str, *, intent: str | None, agent: dict[str, str] | None, at: datetime
) -> None:
    """A conversation that was triaged, optionally handled by a person, then resolved."""
    await store.create_conversation(cid, widget_key="pk_test", visitor={}, now=at)
    event, _ = await store.append_customer_message(cid, "c-1", "My tent pole snapped", now=at)
    if intent is not None:
        await store.record_triage(cid, event.seq, {"intent": intent, "confidence": 0.9})
    if agent is not None:
        await store.append_event(
            cid, type="status", role="system", text="", extra={"state": "queued"}, now=at
        )
        await store.append_event(
            cid,
            type="status",
            role="system",
            text="",
            extra={"state": "agent", "agent": {"name": agent["name"]}},
            now=at,
        )
        await store.append_event(
            cid, type="message", role="agent", text="A new pole is on its way.", author=agent, now=at
        )
    else:
        await store.append_event(cid, type="message", role="assistant", text="Here is how.", now=at)
    await store.append_event(cid, type="status", role="system", text="", extra={"state": "resolved"}, now=at)
    await store.set_state(cid, state="resolved", resolved_by=agent["id"] if agent else None)


async def test_a_rating_is_stored_once_per_resolution_with_who_resolved_it(
    redis_client: Any, db_engine: AsyncEngine
) -> None:
    store = ConversationStore(redis_client)
    sessions = session_factory(db_engine)
    service = RatingService(store, sessions)
    await conversation(store, "conv-bot", intent="returns_refunds", agent=None, at=T0)
    await conversation(
        store, "conv-agent", intent="warranty_repairs", agent={"id": "ag1", "name": "Sam"}, at=T0
    )

    first = await service.record("conv-bot", score=2, comment="  slow  ", now=T0)
    again = await service.record("conv-bot", score=4, comment=None, now=T0 + timedelta(minutes=1))
    by_agent = await service.record("conv-agent", score=5, comment="Great help", now=T0)

    assert again.id == first.id, "rating the same resolution again updates the row"
    async with sessions() as session:
        rows = (await session.execute(Rating.__table__.select().order_by("conversation_id"))).all()  # type: ignore[attr-defined]
    assert [(r.conversation_id, r.score, r.comment, r.resolution, r.intent, r.agent_id) for r in rows] == [
        ("conv-agent", 5, "Great help", "agent", "warranty_repairs", "ag1"),
        ("conv-bot", 4, None, "bot", "returns_refunds", None),
    ]
    assert by_agent.resolved_seq == 5  # customer 1, queued 2, agent 3, agent message 4, resolved 5
    assert rows[1].resolved_seq == 3


async def test_a_rating_before_resolution_is_refused_and_stores_nothing(
    redis_client: Any, db_engine: AsyncEngine
) -> None:
    store = ConversationStore(redis_client)
    sessions = session_factory(db_engine)
    service = RatingService(store, sessions)
    await store.create_conversation("open", widget_key="pk_test", visitor={}, now=T0)
    await store.append_customer_message("open", "c-1", "Hello", now=T0)
    with pytest.raises(RatingNotExpected):
        await service.record("open", score=5, comment=None, now=T0)
    with pytest.raises(NotFound):
        await service.record("nobody", score=5, comment=None, now=T0)
    async with sessions() as session:
        assert (await session.execute(Rating.__table__.select())).all() == []  # type: ignore[attr-defined]


async def seed(db_engine: AsyncEngine) -> None:
    sessions = session_factory(db_engine)
    rows = [
        # (score, resolution, intent, agent_id, created_at)
        (5, "agent", "returns_refunds", "ag1", T0),
        (4, "agent", "shipping", "ag1", T0 + timedelta(hours=2)),
        (2, "bot", "returns_refunds", None, T0 + timedelta(hours=3)),
        (3, "bot", None, None, T0 + timedelta(days=1)),
        (1, "agent", "shipping", "ag2", T0 + timedelta(days=1, hours=1)),
        (5, "bot", "shipping", None, T0 + timedelta(days=5)),  # outside the ranges below
    ]
    async with sessions() as session:
        session.add(Agent(id="ag1", email="sam@example.test", name="Sam", password_hash="x"))
        session.add(Agent(id="ag2", email="kim@example.test", name="Kim", password_hash="x"))
        for i, (score, resolution, intent, agent_id, at) in enumerate(rows):
            session.add(
                Rating(
                    conversation_id=f"c{i}", resolved_seq=i + 1, score=score, resolution=resolution,
                    intent=intent, agent_id=agent_id, created_at=at,
                )
            )  # fmt: skip
        await session.commit()


def summary(report: Any) -> list[tuple[Any, ...]]:
    return [
        (g.key, g.label, g.count, g.average, [g.distribution[s] for s in range(1, 6)]) for g in report.groups
    ]


async def test_the_report_groups_averages_and_distributions_within_the_date_range(
    db_engine: AsyncEngine,
) -> None:
    await seed(db_engine)
    sessions = session_factory(db_engine)
    start, end = T0, T0 + timedelta(days=2)

    by_resolution = await satisfaction_report(sessions, group_by="resolution", start=start, end=end)
    assert (by_resolution.count, by_resolution.average) == (5, 3.0)
    assert by_resolution.distribution == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}
    assert summary(by_resolution) == [
        ("agent", "Resolved by an agent", 3, 3.333, [1, 0, 0, 1, 1]),
        ("bot", "Resolved by the bot", 2, 2.5, [0, 1, 1, 0, 0]),
    ]
    by_intent = await satisfaction_report(sessions, group_by="intent", start=start, end=end)
    assert summary(by_intent) == [
        ("returns_refunds", "Returns and refunds", 2, 3.5, [0, 1, 0, 0, 1]),
        ("shipping", "Shipping", 2, 2.5, [1, 0, 0, 1, 0]),
        (None, "Not triaged", 1, 3.0, [0, 0, 1, 0, 0]),
    ]
    by_agent = await satisfaction_report(sessions, group_by="agent", start=start, end=end)
    assert [(g.key, g.label, g.count, g.average) for g in by_agent.groups] == [
        ("ag1", "Sam", 2, 4.5),
        ("ag2", "Kim", 1, 1.0),
        (None, "No agent (the bot)", 2, 2.5),
    ]
    by_day = await satisfaction_report(sessions, group_by="day", start=start, end=end)
    assert [(g.key, g.count, g.average) for g in by_day.groups] == [
        ("2026-11-20", 3, 3.667),
        ("2026-11-21", 2, 2.0),
    ]
    everything = await satisfaction_report(sessions, group_by="day")
    assert everything.count == 6
    assert [g.key for g in everything.groups][-1] == "2026-11-25"
    empty = await satisfaction_report(sessions, start=T0 - timedelta(days=9), end=T0 - timedelta(days=8))
    assert (empty.count, empty.average, empty.groups) == (0, None, [])


async def test_the_report_refuses_unknown_groupings_and_empty_ranges(db_engine: AsyncEngine) -> None:
    sessions = session_factory(db_engine)
    with pytest.raises(ValidationFailed):
        await satisfaction_report(sessions, group_by="colour")
    with pytest.raises(ValidationFailed):
        await satisfaction_report(sessions, start=T0, end=T0)


async def test_the_http_report_is_for_admins_and_speaks_json_and_csv(tmp_path: Path, redis_url: str) -> None:
    data = tmp_path / "srv"
    database_url = f"sqlite+aiosqlite:///{data / 'db.sqlite3'}"
    proc = ServerProcess(
        data, env={"SWITCHBOARD_REDIS_URL": redis_url, "SWITCHBOARD_DATABASE_URL": database_url}
    )
    proc.start()
    try:
        engine = make_engine(database_url)
        try:
            await seed(engine)
        finally:
            await engine.dispose()
        tokens = {}
        for role in ("admin", "agent"):
            await asyncio.to_thread(
                create_agent, proc.env, data, f"{role}@example.test", "long enough password",
                role.title(), role,
            )  # fmt: skip
            login = httpx.post(
                f"{proc.url}/api/v1/agent/login",
                json={"email": f"{role}@example.test", "password": "long enough password"},
            )
            tokens[role] = {"Authorization": f"Bearer {login.json()['token']}"}
        url = f"{proc.url}/api/v1/reports/satisfaction"
        async with httpx.AsyncClient() as client:
            assert (await client.get(url)).status_code == 401
            assert (await client.get(url, headers=tokens["agent"])).status_code == 403
            bad = await client.get(url, params={"group_by": "colour"}, headers=tokens["admin"])
            assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_request")
            bad_date = await client.get(url, params={"from": "yesterday"}, headers=tokens["admin"])
            assert bad_date.status_code == 400
            ok = await client.get(
                url,
                params={"group_by": "agent", "from": "2026-11-20", "to": "2026-11-21"},
                headers=tokens["admin"],
            )
            csv_resp = await client.get(
                url, params={"group_by": "day", "from": "2026-11-20", "to": "2026-11-21", "format": "csv"},
                headers=tokens["admin"],
            )  # fmt: skip
    finally:
        proc.kill()
    assert ok.status_code == 200
    body = ok.json()
    assert (body["count"], body["average"], body["distribution"]) == (
        5, 3.0, {"1": 1, "2": 1, "3": 1, "4": 1, "5": 1}
    )  # fmt: skip
    assert [(g["key"], g["label"], g["count"]) for g in body["groups"]] == [
        ("ag1", "Sam", 2), ("ag2", "Kim", 1), (None, "No agent (the bot)", 2)
    ]  # fmt: skip
    assert csv_resp.headers["content-type"].startswith("text/csv")
    assert csv_resp.text.splitlines() == [
        "day,label,count,average,score_1,score_2,score_3,score_4,score_5",
        "2026-11-20,2026-11-20,3,3.667,0,1,0,1,1",
        "2026-11-21,2026-11-21,2,2.0,1,0,1,0,0",
        "total,,5,3.0,1,1,1,1,1",
    ]


def test_groups_are_labelled_in_words_not_keys() -> None:
    """Intent keys from any configured taxonomy read as words; the no-value group says what it means."""
    assert intent_words("refund_request") == "Refund request"
    assert intent_words("returns_refunds") == "Returns and refunds"
    assert group_label("intent", None, {}) == "Not triaged"
    assert group_label("agent", None, {}) == "No agent (the bot)"
    assert group_label("agent", "ag1", {"ag1": "Sam"}) == "Sam"
    assert group_label("resolution", "bot", {}) == "Resolved by the bot"
    assert group_label("day", "2026-11-20", {}) == "2026-11-20"
