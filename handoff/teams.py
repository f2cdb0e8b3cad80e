"""Teams, in SQL: their business hours, members, agents' skills, assignment policy and SLA targets; and
whether anybody can answer a customer now.

``default`` (created by migration 0013) always exists; admins add more. A team's hours are the ones an admin
set through the API, else the ``SWITCHBOARD_BUSINESS_HOURS`` setting, else none (always open). Its
assignment policy and SLA targets likewise: the admin's (``team_routing``), else the
``SWITCHBOARD_ASSIGNMENT`` and ``SWITCHBOARD_SLA_*`` settings. An agent in no team works the default
team's queue. A handoff goes to the team ``SWITCHBOARD_ASSIGNMENT_INTENT_TEAMS`` names for its intent,
else to ``default``.

Every process reads the hours (and the roster automatic assignment works from) at most every
:data:`HOURS_CACHE_S` seconds (a handoff reads them, and
handoffs may come many a second); an admin's change is seen at once by the process that made it and within
that time by the others.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, delete, select

from handoff.assign import POLICIES, Candidate, Roster
from handoff.presence import AgentPresence
from support.audit import AuditSink, NoAudit
from support.db.models import Agent, AgentSkills, Team, TeamMember, TeamRouting
from support.errors import Conflict, NotFound, ValidationFailed
from support.hours import BusinessHours, available, open_at, parse_hours

log = logging.getLogger(__name__)

DEFAULT_TEAM = "default"
HOURS_CACHE_S = 5.0  # how stale another process's view of an admin's change may be
TEAM_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")  # the column's length; lower-case: it appears in URLs
MAX_TEAM_NAME_CHARS = 120
MAX_SKILLS = 50  # per list: more is a typo, not a skill set
SKILL = re.compile(r"[a-z][a-z0-9_-]{0,63}")
MAX_SLA_S = 30 * 86400


@dataclass(frozen=True)
class AssignmentDefaults:
    """The settings' policy, SLA targets and intent routing (``AssignmentSettings``), passed in."""

    policy: str = "manual"
    sla_first_reply_s: int = 300
    sla_resolution_s: int = 3600
    intent_teams: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Availability:
    """What a waiting customer is told: ``online`` (an agent is online) and ``available`` (and the team is
    open: someone can answer now)."""

    online: bool
    available: bool


class TeamService:
    """Teams' hours (SQL) and availability (hours + presence). Sessions and presence are passed in."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        presence: AgentPresence,
        *,
        configured_hours: str = "",
        audit: AuditSink | None = None,
        defaults: AssignmentDefaults | None = None,
    ) -> None:
        self._sessions = sessions
        self._audit: AuditSink = audit or NoAudit()
        self.presence = presence
        self.configured = parse_hours(configured_hours)
        self.defaults = defaults or AssignmentDefaults()
        self._cache: dict[str, tuple[float, BusinessHours | None]] = {}
        self._roster: tuple[float, Roster, dict[str, tuple[int, int]]] | None = None

    async def teams(self) -> list[dict[str, Any]]:
        """Every team with its hours (where they come from, open now), members, policy and SLA targets."""
        async with self._sessions() as session:
            rows = list((await session.execute(select(Team).order_by(col(Team.id)))).scalars().all())
            routing = {r.team_id: r for r in (await session.execute(select(TeamRouting))).scalars().all()}
            members = list((await session.execute(select(TeamMember))).scalars().all())
            agents = list((await session.execute(select(Agent.id).where(col(Agent.active)))).scalars().all())
        placed = {m.agent_id for m in members}
        now = datetime.now(UTC)
        out = []
        for team in rows:
            ids = sorted(m.agent_id for m in members if m.team_id == team.id)
            if team.id == DEFAULT_TEAM:
                ids = sorted({*ids, *(a for a in agents if a not in placed)})
            out.append({**self._json(team, now), **self._routing_json(routing.get(team.id)), "members": ids})
        return out

    def _routing_json(self, routing: TeamRouting | None) -> dict[str, Any]:
        d = self.defaults
        policy = routing.assignment if routing and routing.assignment else None
        first = routing.sla_first_reply_s if routing else None
        resolution = routing.sla_resolution_s if routing else None
        return {
            "assignment": policy or d.policy,
            "assignment_source": "admin" if policy else "setting",
            "sla": {
                "first_reply_s": d.sla_first_reply_s if first is None else first,
                "resolution_s": d.sla_resolution_s if resolution is None else resolution,
                "source": "admin" if (first is not None or resolution is not None) else "setting",
            },
        }

    def _json(self, team: Team, now: datetime) -> dict[str, Any]:
        hours = parse_hours(team.business_hours) if team.business_hours is not None else self.configured
        return {
            "id": team.id,
            "name": team.name,
            "business_hours": hours.to_json() if hours else None,
            "source": "admin" if team.business_hours is not None else "setting",
            "open_now": open_at(now, hours),
            "updated_at": (team.updated_at.replace(tzinfo=UTC) if team.updated_at.tzinfo is None
                           else team.updated_at).isoformat(),
        }  # fmt: skip

    async def set_hours(
        self, team_id: str, value: dict[str, Any] | None, *, admin_id: str | None
    ) -> dict[str, Any]:
        """Set a team's hours (None: back to the setting); :class:`ValidationFailed` for bad hours,
        :class:`NotFound` for an unknown team."""
        hours = parse_hours(value) if value is not None else None
        async with self._sessions() as session, session.begin():
            team = await session.get(Team, team_id, with_for_update=True)
            if team is None:
                raise NotFound(f"no team {team_id}")
            team.business_hours = hours.to_json() if hours is not None else None
            team.updated_at, team.updated_by = datetime.now(UTC), admin_id
            session.add(team)
        self._cache[team_id] = (time.monotonic(), hours if hours is not None else self.configured)
        await self._audit.record(
            admin_id, "team.hours_changed", "team", team_id, {"source": "admin" if hours else "setting"}
        )
        return self._json(team, datetime.now(UTC))

    async def hours(self, team_id: str = DEFAULT_TEAM) -> BusinessHours | None:
        """The team's hours in force (cached for :data:`HOURS_CACHE_S`)."""
        cached = self._cache.get(team_id)
        if cached is not None and time.monotonic() - cached[0] < HOURS_CACHE_S:
            return cached[1]
        try:
            async with self._sessions() as session:
                team = await session.get(Team, team_id)
        except (SQLAlchemyError, OSError) as exc:
            # A handoff must not fail for want of the database: the last hours read, else the setting's.
            log.warning("business hours unreadable (%s): using the last known", type(exc).__name__)
            return cached[1] if cached is not None else self.configured
        hours = (
            parse_hours(team.business_hours)
            if team is not None and team.business_hours is not None
            else self.configured
        )
        self._cache[team_id] = (time.monotonic(), hours)
        return hours

    async def availability(self, team_id: str = DEFAULT_TEAM) -> Availability:
        """Whether an agent is online, and whether someone can answer now (online and within hours)."""
        now_ms, states = await self.presence.effective()
        presence = {agent: state["presence"] for agent, state in states.items()}
        now = datetime.fromtimestamp(now_ms / 1000, UTC)  # Redis time: one clock for every process
        hours = await self.hours(team_id)
        online = any(state == "online" for state in presence.values())
        return Availability(online=online, available=available(now, hours, presence))

    # --- teams, members, skills, policy and SLA (admin) --------------------------------------------

    async def create(self, team_id: str, name: str, *, admin_id: str | None) -> dict[str, Any]:
        """A new team (no members, the settings' hours, policy and SLA); :class:`Conflict` if it exists."""
        if not isinstance(team_id, str) or not TEAM_ID.fullmatch(team_id):
            raise ValidationFailed("`id` must be 1 to 32 lower-case letters, digits, - or _")
        name = _team_name(name)
        async with self._sessions() as session, session.begin():
            if await session.get(Team, team_id) is not None:
                raise Conflict(f"a team {team_id} exists")
            session.add(Team(id=team_id, name=name, updated_by=admin_id))
        await self._audit.record(admin_id, "team.created", "team", team_id)
        return await self.team(team_id)

    async def team(self, team_id: str) -> dict[str, Any]:
        """One team as :meth:`teams` lists it; :class:`NotFound`."""
        for team in await self.teams():
            if team["id"] == team_id:
                return team
        raise NotFound(f"no team {team_id}")

    async def update(
        self,
        team_id: str,
        *,
        admin_id: str | None,
        name: str | None = None,
        assignment: str | None = None,
        sla_first_reply_s: int | None = None,
        sla_resolution_s: int | None = None,
        reset: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Rename a team, set its policy or SLA targets (``reset`` names fields to return to the setting's:
        ``assignment``, ``sla_first_reply_s``, ``sla_resolution_s``). Everything is checked first."""
        if name is not None:
            name = _team_name(name)
        if assignment is not None and assignment not in POLICIES:
            raise ValidationFailed(f"`assignment` must be one of {', '.join(POLICIES)}")
        for label, value in (
            ("sla_first_reply_s", sla_first_reply_s),
            ("sla_resolution_s", sla_resolution_s),
        ):
            if value is not None and (isinstance(value, bool) or not 0 <= value <= MAX_SLA_S):
                raise ValidationFailed(f"`{label}` must be between 0 and {MAX_SLA_S} seconds (0: no target)")
        unknown = set(reset) - {"assignment", "sla_first_reply_s", "sla_resolution_s"}
        if unknown:
            raise ValidationFailed(
                f"`reset` may name assignment, sla_first_reply_s, sla_resolution_s, not {sorted(unknown)}"
            )
        async with self._sessions() as session, session.begin():
            team = await session.get(Team, team_id, with_for_update=True)
            if team is None:
                raise NotFound(f"no team {team_id}")
            routing = await session.get(TeamRouting, team_id) or TeamRouting(team_id=team_id)
            if name is not None:
                team.name = name
            changes: dict[str, str | int | None] = {
                "assignment": assignment, "sla_first_reply_s": sla_first_reply_s,
                "sla_resolution_s": sla_resolution_s,
            }  # fmt: skip
            for attr, change in changes.items():
                if attr in reset:
                    setattr(routing, attr, None)
                elif change is not None:
                    setattr(routing, attr, change)
            team.updated_at, team.updated_by = datetime.now(UTC), admin_id
            session.add_all([team, routing])
        self._roster = None
        changed = [k for k, v in changes.items() if v is not None or k in reset] + (["name"] if name else [])
        await self._audit.record(admin_id, "team.updated", "team", team_id, {"fields": sorted(changed)})
        return await self.team(team_id)

    async def set_members(
        self, team_id: str, agent_ids: list[str], *, admin_id: str | None = None
    ) -> dict[str, Any]:
        """The team's members are exactly ``agent_ids`` (active agents); :class:`ValidationFailed` names an
        unknown one and changes nothing."""
        wanted = sorted(set(agent_ids))
        async with self._sessions() as session, session.begin():
            if await session.get(Team, team_id) is None:
                raise NotFound(f"no team {team_id}")
            known = set(
                (await session.execute(select(Agent.id).where(col(Agent.id).in_(wanted), col(Agent.active))))
                .scalars()
                .all()
            )
            missing = [a for a in wanted if a not in known]
            if missing:
                raise ValidationFailed(f"no active agent {', '.join(missing)}")
            await session.execute(delete(TeamMember).where(col(TeamMember.team_id) == team_id))
            session.add_all([TeamMember(team_id=team_id, agent_id=a) for a in wanted])
        self._roster = None
        await self._audit.record(admin_id, "team.members_changed", "team", team_id, {"agent_ids": wanted})
        return await self.team(team_id)

    async def skills(self, agent_id: str) -> dict[str, Any]:
        """An agent's skills and teams."""
        async with self._sessions() as session:
            if await session.get(Agent, agent_id) is None:
                raise NotFound(f"no agent {agent_id}")
            row = await session.get(AgentSkills, agent_id)
        return {
            "agent_id": agent_id,
            "languages": row.languages if row else [],
            "intents": row.intents if row else [],
        }

    async def set_skills(
        self, agent_id: str, languages: list[str], intents: list[str], *, admin_id: str | None = None
    ) -> dict[str, Any]:
        """What the agent can take (empty lists: anything)."""
        langs, wants = _skills(languages, "languages"), _skills(intents, "intents")
        async with self._sessions() as session, session.begin():
            if await session.get(Agent, agent_id) is None:
                raise NotFound(f"no agent {agent_id}")
            row = await session.get(AgentSkills, agent_id) or AgentSkills(agent_id=agent_id)
            row.languages, row.intents = langs, wants
            session.add(row)
        self._roster = None
        await self._audit.record(
            admin_id, "account.skills_changed", "agent", agent_id, {"languages": langs, "intents": wants}
        )
        return {"agent_id": agent_id, "languages": langs, "intents": wants}

    # --- what assignment and handoffs read ----------------------------------------------------------

    async def roster(self) -> Roster:
        """Active agents (capacity, teams, skills) and each team's policy (cached, see HOURS_CACHE_S)."""
        return (await self._routing())[0]

    async def sla_targets(self, team_id: str) -> tuple[int, int]:
        """The team's (first reply, resolution) targets in seconds; 0: none."""
        targets = (await self._routing())[1]
        return targets.get(team_id, (self.defaults.sla_first_reply_s, self.defaults.sla_resolution_s))

    async def team_for(self, intent: str | None) -> str:
        """The team whose queue a handoff with this intent goes to."""
        team = self.defaults.intent_teams.get(intent or "")
        if team is None:
            return DEFAULT_TEAM
        roster_teams = (await self._routing())[1]
        return team if team in roster_teams else DEFAULT_TEAM

    async def _routing(self) -> tuple[Roster, dict[str, tuple[int, int]]]:
        cached = self._roster
        if cached is not None and time.monotonic() - cached[0] < HOURS_CACHE_S:
            return cached[1], cached[2]
        try:
            async with self._sessions() as session:
                team_ids = list((await session.execute(select(Team.id))).scalars().all())
                routing = {r.team_id: r for r in (await session.execute(select(TeamRouting))).scalars().all()}
                members = list((await session.execute(select(TeamMember))).scalars().all())
                skills = {s.agent_id: s for s in (await session.execute(select(AgentSkills))).scalars().all()}
                agents = list((await session.execute(select(Agent).where(col(Agent.active)))).scalars().all())
        except (SQLAlchemyError, OSError) as exc:
            # A handoff must not fail for want of the database: the last roster read, else none (the default
            # team, the configured SLA targets, nobody assigned automatically until the database is back).
            log.warning("teams unreadable (%s): using the last known", type(exc).__name__)
            if cached is not None:
                return cached[1], cached[2]
            return Roster(agents=(), policies={}), {}
        teams_of: dict[str, set[str]] = {}
        for m in members:
            teams_of.setdefault(m.agent_id, set()).add(m.team_id)
        candidates = tuple(
            Candidate(
                id=a.id, name=a.name, capacity=a.capacity,
                teams=frozenset(teams_of.get(a.id) or {DEFAULT_TEAM}),
                languages=frozenset(skills[a.id].languages) if a.id in skills else frozenset(),
                intents=frozenset(skills[a.id].intents) if a.id in skills else frozenset(),
            )
            for a in agents
        )  # fmt: skip
        policies, targets = {}, {}
        for team_id in team_ids:
            shown = self._routing_json(routing.get(team_id))
            policies[team_id] = shown["assignment"]
            targets[team_id] = (shown["sla"]["first_reply_s"], shown["sla"]["resolution_s"])
        roster = Roster(agents=candidates, policies=policies)
        self._roster = (time.monotonic(), roster, targets)
        return roster, targets


def _team_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_TEAM_NAME_CHARS:
        raise ValidationFailed(f"`name` must have 1 to {MAX_TEAM_NAME_CHARS} characters")
    return name.strip()


def _skills(values: Any, label: str) -> list[str]:
    if not isinstance(values, list) or len(values) > MAX_SKILLS:
        raise ValidationFailed(f"`{label}` must be a list of at most {MAX_SKILLS} codes")
    out = []
    for value in values:
        code = value.strip().lower() if isinstance(value, str) else ""
        if label == "languages":
            code = code.split("-")[0]
        if not SKILL.fullmatch(code):
            raise ValidationFailed(f"`{label}` holds {value!r}: use codes such as en, fr or payments_billing")
        out.append(code)
    return sorted(set(out))
