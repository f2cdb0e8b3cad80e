"""``/api/v1/admin/teams`` and agents' skills: thin admin handlers over :class:`handoff.teams.TeamService`
(create and rename teams, set members, assignment policy and SLA targets; an agent's language and intent
skills). Listing and creating teams (``/api/v1/admin/teams``) and their hours are in :mod:`handoff.console`
(one path, one controller)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from litestar import Controller, Request, get, patch, put
from litestar.status_codes import HTTP_200_OK

from handoff.auth import admin_guard, agent_of
from support.openapi_errors import ADMIN_SECURITY, errors
from support.runtime import Runtime


@dataclass
class TeamIn:
    """``POST /api/v1/admin/teams``: a new team (id: lower-case letters, digits, - or _)."""

    id: str
    name: str


@dataclass
class TeamPatch:
    """A change to a team: any of these; ``reset`` names fields that go back to the setting's."""

    name: str | None = None
    assignment: str | None = None  # manual | capacity | round_robin | least_busy
    sla_first_reply_s: int | None = None
    sla_resolution_s: int | None = None
    reset: list[str] = field(default_factory=list)


@dataclass
class MembersIn:
    """``PUT /api/v1/admin/teams/{id}/members``: exactly these agents."""

    agent_ids: list[str]


@dataclass
class SkillsIn:
    """``PUT /api/v1/admin/agents/{id}/skills``: languages (en, fr, pt-BR counts as pt) and triage intents;
    an empty list takes anything."""

    languages: list[str] = field(default_factory=list)
    intents: list[str] = field(default_factory=list)


class TeamAdminController(Controller):
    """Teams, members, policy, SLA targets and skills (admins only)."""

    path = "/api/v1/admin"
    tags = ["admin"]  # noqa: RUF012
    guards = [admin_guard]  # noqa: RUF012
    security = ADMIN_SECURITY

    @patch("/teams/{team_id:str}", summary="Rename a team, set its policy or SLA targets",
           responses=errors(400, 404, 503))  # fmt: skip
    async def update_team(
        self, team_id: str, data: TeamPatch, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, Any]:
        """Bad values change nothing (400); the team's next handoffs carry the new targets."""
        team = await runtime.teams.update(
            team_id, admin_id=agent_of(request).id, name=data.name, assignment=data.assignment,
            sla_first_reply_s=data.sla_first_reply_s, sla_resolution_s=data.sla_resolution_s,
            reset=data.reset,
        )  # fmt: skip
        runtime.assigner.kick()
        return team

    @put("/teams/{team_id:str}/members", status_code=HTTP_200_OK, summary="Set a team's members",
         responses=errors(400, 404, 503))  # fmt: skip
    async def set_members(
        self, team_id: str, data: MembersIn, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, Any]:
        """Exactly these active agents; an unknown one is a 400 and nothing changes."""
        team = await runtime.teams.set_members(team_id, data.agent_ids, admin_id=agent_of(request).id)
        runtime.assigner.kick()
        return team

    @get("/agents/{agent_id:str}/skills", summary="An agent's skills", responses=errors(404, 503))
    async def skills(self, agent_id: str, runtime: Runtime) -> dict[str, Any]:
        """Languages and intents; empty lists: anything."""
        return await runtime.teams.skills(agent_id)

    @put("/agents/{agent_id:str}/skills", status_code=HTTP_200_OK, summary="Set an agent's skills",
         responses=errors(400, 404, 503))  # fmt: skip
    async def set_skills(
        self, agent_id: str, data: SkillsIn, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, Any]:
        """Automatic assignment gives the agent only conversations these cover (until the skill wait)."""
        out = await runtime.teams.set_skills(
            agent_id, data.languages, data.intents, admin_id=agent_of(request).id
        )
        runtime.assigner.kick()
        return out
