"""Teams, automatic assignment and SLA as services over real Redis and real SQL (SQLite, and PostgreSQL
when configured): roster rules, each policy's pick, skills and their fallback, and the SLA report."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from handoff.assign import Assigner, Candidate, Roster, choose
from handoff.presence import AgentPresence
from handoff.queue import HandoffQueue
from handoff.teams import AssignmentDefaults, TeamService
from support.db.models import Agent, HandoffRecord
from support.errors import Conflict, NotFound, ValidationFailed
from support.reports.sla import sla_csv, sla_report


def agent(i: str, capacity: int = 3, **skills: list[str]) -> Candidate:
    return Candidate(
        id=i, name=i.title(), capacity=capacity, teams=frozenset({"default"}),
        languages=frozenset(skills.get("languages", [])), intents=frozenset(skills.get("intents", [])),
    )  # fmt: skip


def test_each_policy_picks_its_agent_and_ties_go_to_the_lower_id() -> None:
    a, b, c = agent("a", 2), agent("b", 8), agent("c", 4)
    load = {"a": 0, "b": 3, "c": 1}
    assert choose("capacity", [a, b, c], load, None).id == "b"  # spare 2, 5, 3
    assert choose("least_busy", [a, b, c], load, None).id == "a"  # holds 0
    assert choose("capacity", [a, c], {"a": 0, "c": 2}, None).id == "a"  # spare 2 and 2: the lower id
    assert [choose("round_robin", [a, b, c], load, last).id for last in (None, "a", "b", "c")] == [
        "a", "b", "c", "a",
    ]  # fmt: skip
    assert agent("f", languages=["fr"]).skilled_for("fr-CA", "billing")
    assert not agent("f", languages=["fr"]).skilled_for("en", "billing")
    assert not agent("b", intents=["billing"]).skilled_for("en", None)
    assert agent("any").skilled_for(None, None)


async def _setup(
    redis_client: Any, agents: list[Candidate], policy: str, **kw: Any
) -> tuple[Assigner, list[Any]]:
    queue, presence = HandoffQueue(redis_client), AgentPresence(redis_client)
    for a in agents:
        await queue.renew(a.id)
        await presence.set(a.id, "online")
    seen: list[Any] = []

    async def roster() -> Roster:
        return Roster(agents=tuple(agents), policies={"default": policy})

    async def on_assigned(cid: str, who: Candidate) -> None:
        seen.append((cid, who.id))

    return Assigner(queue, presence, redis_client, roster, on_assigned=on_assigned, **kw), seen


async def test_skills_decide_until_the_skill_wait_then_anyone_of_the_team_takes_it(redis_client: Any) -> None:
    assigner, seen = await _setup(
        redis_client, [agent("fr1", languages=["fr"]), agent("bill", intents=["billing"])], "least_busy",
        skill_wait_s=0.4,
    )  # fmt: skip
    queue = assigner.queue
    await queue.enqueue("c-de", reason="requested_human", priority="normal", fields={"language": "de"})
    await queue.enqueue("c-fr", reason="requested_human", priority="normal", fields={"language": "fr"})
    await queue.enqueue(
        "c-bill", reason="requested_human", priority="normal", fields={"language": "en", "intent": "billing"}
    )
    assert sorted(await assigner.assign_once()) == [("c-bill", "bill"), ("c-fr", "fr1")]
    assert await queue.position("c-de") == 1  # nobody speaks German: it waits
    await asyncio.sleep(0.5)
    assert await assigner.assign_once() == [("c-de", "bill")]  # fewest held (tie: lower id), after the wait
    assert len(seen) == 3


async def test_round_robin_takes_agents_in_turn_and_offline_or_full_agents_get_nothing(
    redis_client: Any,
) -> None:
    agents = [agent("a", 1), agent("b", 5), agent("c", 5), agent("off", 5)]
    assigner, _seen = await _setup(redis_client, agents, "round_robin")
    await AgentPresence(redis_client).set("off", "offline")
    for i in range(6):
        await assigner.queue.enqueue(f"c{i}", reason="requested_human", priority="normal")
    done = await assigner.assign_once()
    assert done == [("c0", "a"), ("c1", "b"), ("c2", "c"), ("c3", "b"), ("c4", "c"), ("c5", "b")]
    assert await assigner.queue.load(["a", "b", "c", "off"]) == {"a": 1, "b": 3, "c": 2, "off": 0}


async def test_manual_assigns_nothing(redis_client: Any) -> None:
    assigner, _seen = await _setup(redis_client, [agent("a")], "manual")
    await assigner.queue.enqueue("c0", reason="requested_human", priority="normal")
    assert await assigner.assign_once() == []
    assert await assigner.queue.position("c0") == 1


async def test_teams_members_skills_and_policy_persist_and_bad_input_changes_nothing(
    db_engine: AsyncEngine, redis_client: Any
) -> None:
    sessions = async_sessionmaker(db_engine, expire_on_commit=False)
    async with sessions() as session:
        ada, bo = (
            Agent(email="ada@x.test", name="Ada", password_hash="x"),
            Agent(email="bo@x.test", name="Bo", password_hash="x", capacity=5),
        )
        session.add_all([ada, bo])
        await session.commit()
    teams = TeamService(
        sessions, AgentPresence(redis_client),
        defaults=AssignmentDefaults(
            policy="manual", sla_first_reply_s=120, intent_teams={"billing": "money"}
        ),
    )  # fmt: skip
    # Nobody is in a team yet: both work the default queue, whose policy and SLA come from the settings.
    (default,) = await teams.teams()
    assert (default["members"], default["assignment"], default["sla"]["first_reply_s"]) == (
        sorted([ada.id, bo.id]), "manual", 120,
    )  # fmt: skip
    assert await teams.team_for("billing") == "default"  # no team "money" yet
    money = await teams.create("money", "Billing", admin_id=None)
    assert (money["members"], money["sla"]["source"]) == ([], "setting")
    with pytest.raises(Conflict):
        await teams.create("money", "Again", admin_id=None)
    for bad in ("Money", "", "x" * 33, "a b"):
        with pytest.raises(ValidationFailed):
            await teams.create(bad, "Bad", admin_id=None)
    await teams.set_members("money", [bo.id])
    with pytest.raises(ValidationFailed):
        await teams.set_members("money", [bo.id, "nobody"])
    with pytest.raises(NotFound):
        await teams.set_members("nope", [bo.id])
    for change in ({"assignment": "fastest"}, {"sla_first_reply_s": -1}, {"name": " "}, {"reset": ["name"]}):
        with pytest.raises(ValidationFailed):
            await teams.update("money", admin_id=None, **change)
    updated = await teams.update("money", admin_id=None, assignment="capacity", sla_resolution_s=900)
    assert (updated["assignment"], updated["sla"]["resolution_s"], updated["sla"]["first_reply_s"]) == (
        "capacity", 900, 120,
    )  # fmt: skip
    assert await teams.team_for("billing") == "money"
    assert await teams.sla_targets("money") == (120, 900)
    with pytest.raises(ValidationFailed):
        await teams.set_skills(ada.id, ["en", "not a code"], [])
    assert await teams.set_skills(ada.id, ["pt-BR", "EN"], ["billing"]) == {
        "agent_id": ada.id, "languages": ["en", "pt"], "intents": ["billing"],
    }  # fmt: skip
    roster = await teams.roster()
    by_id = {a.id: a for a in roster.agents}
    assert by_id[bo.id].teams == frozenset({"money"})  # in a team now: no longer in default
    assert by_id[ada.id].teams == frozenset({"default"})
    assert (by_id[ada.id].languages, by_id[bo.id].capacity) == (frozenset({"en", "pt"}), 5)
    assert roster.policy("money") == "capacity"
    reset = await teams.update("money", admin_id=None, reset=["assignment", "sla_resolution_s"])
    assert (reset["assignment"], reset["assignment_source"], reset["sla"]["resolution_s"]) == (
        "manual", "setting", 3600,
    )  # fmt: skip


async def test_the_sla_report_counts_met_breached_and_pending_per_team(db_engine: AsyncEngine) -> None:
    sessions = async_sessionmaker(db_engine, expire_on_commit=False)
    now = datetime.now(UTC)
    t0 = now - timedelta(hours=2)

    def record(
        team: str | None, reply_s: float | None, end_s: float | None, sla: bool = True
    ) -> HandoffRecord:
        return HandoffRecord(
            conversation_id=f"c-{team}-{reply_s}-{end_s}", reason="requested_human", priority="normal",
            queued_at=t0, team_id=team, sla_first_reply_s=60 if sla else None,
            sla_resolution_s=600 if sla else None,
            first_response_at=None if reply_s is None else t0 + timedelta(seconds=reply_s),
            ended_at=None if end_s is None else t0 + timedelta(seconds=end_s),
        )  # fmt: skip

    async with sessions() as session:
        session.add_all([
            record("default", 30, 300),  # both met
            record("default", 90, 900),  # both breached
            record("money", None, None),  # two hours on: both breached though still open
            record(None, 5, 5, sla=False),  # before targets existed
        ])  # fmt: skip
        await session.commit()
    report = await sla_report(sessions, now=now)
    teams = {t["team"]: t for t in report["teams"]}
    assert teams["default"]["first_reply"] == {"met": 1, "breached": 1, "pending": 0, "breach_rate": 0.5}
    assert teams["default"]["untracked"] == 1  # the old row has no team: counted in default, untracked
    assert teams["money"]["resolution"] == {"met": 0, "breached": 1, "pending": 0, "breach_rate": 1.0}
    assert report["total"]["handoffs"] == 4
    early = await sla_report(sessions, now=t0 + timedelta(seconds=10))
    assert {t["team"]: t for t in early["teams"]}["money"]["first_reply"]["pending"] == 1
    lines = sla_csv(report).splitlines()
    assert lines[0].startswith("team,handoffs,untracked,first_reply_met,first_reply_breached")
    assert lines[-1].startswith("total,4,1,1,2,0")


async def test_a_released_conversation_goes_to_someone_else_not_back_to_who_released_it(
    redis_client: Any,
) -> None:
    assigner, _seen = await _setup(redis_client, [agent("a"), agent("b", 1)], "least_busy")
    await assigner.queue.enqueue("c0", reason="requested_human", priority="normal")
    assert await assigner.assign_once() == [("c0", "a")]
    assert await assigner.queue.release("c0", "a")
    await assigner.queue.enqueue("c1", reason="requested_human", priority="normal")
    # a (holding nothing) is least busy, but gave c0 up: c0 goes to b, c1 to a
    assert await assigner.assign_once() == [("c0", "b"), ("c1", "a")]
