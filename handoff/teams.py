"""Teams and their business hours, in SQL; and whether anybody can answer a customer now.

There is one team for now, ``default`` (created by migration 0013): hours are per team so that teams and
assignment by team can come later without moving them. A team's hours are the ones an admin set through the
API, else the ``SWITCHBOARD_BUSINESS_HOURS`` setting, else none (always open).

Every process reads the hours at most every :data:`HOURS_CACHE_S` seconds (a handoff reads them, and
handoffs may come many a second); an admin's change is seen at once by the process that made it and within
that time by the others.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from handoff.presence import AgentPresence
from support.audit import AuditSink, NoAudit
from support.db.models import Team
from support.errors import NotFound
from support.hours import BusinessHours, available, open_at, parse_hours

log = logging.getLogger(__name__)

DEFAULT_TEAM = "default"
HOURS_CACHE_S = 5.0  # how stale another process's view of an admin's change may be


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
    ) -> None:
        self._sessions = sessions
        self._audit: AuditSink = audit or NoAudit()
        self.presence = presence
        self.configured = parse_hours(configured_hours)
        self._cache: dict[str, tuple[float, BusinessHours | None]] = {}

    async def teams(self) -> list[dict[str, Any]]:
        """Every team with its hours, where they come from and whether it is open now."""
        async with self._sessions() as session:
            rows = list((await session.execute(select(Team).order_by(col(Team.id)))).scalars().all())
        now = datetime.now(UTC)
        return [self._json(team, now) for team in rows]

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
