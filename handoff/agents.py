"""Agent accounts in SQL: create, authenticate (argon2id via argon2-cffi), list, change.

Hashing is deliberately slow (that is its point), so it runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, func, select, update

from support.db.models import Agent
from support.errors import Conflict, NotFound, Unauthorized, ValidationFailed

ROLES = ("agent", "admin")
MIN_PASSWORD_CHARS = 8
MAX_NAME_CHARS = 120  # the column's length
# Conversations one person can follow at once; more is a typo, not a staffing decision.
MAX_CAPACITY = 50
# The generation the token cache holds for an agent that is missing or inactive: no token matches it.
NO_GENERATION = -1

_hasher = PasswordHasher()
# Verified against when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("switchboard-no-such-agent")


@dataclass(frozen=True)
class AgentIdentity:
    """Who is calling: what a valid agent token says."""

    id: str
    name: str
    role: str
    email: str = ""
    generation: int = 0  # the account's token generation when the token was issued (see handoff.tokens)

    @property
    def is_admin(self) -> bool:
        """Admins may do everything agents may, and manage examples and reports."""
        return self.role == "admin"

    def to_json(self) -> dict[str, str]:
        """The ``agent`` object of the login response."""
        return {"id": self.id, "name": self.name, "role": self.role, "email": self.email}


def identity(agent: Agent) -> AgentIdentity:
    """The identity of a stored agent."""
    return AgentIdentity(
        id=agent.id, name=agent.name, role=agent.role, email=agent.email, generation=agent.token_generation
    )


def account_json(agent: Agent) -> dict[str, Any]:
    """An account as the admin API shows it (never the password hash)."""
    return {
        "id": agent.id, "email": agent.email, "name": agent.name, "role": agent.role,
        "capacity": agent.capacity, "active": agent.active,
        "created_at": agent.created_at.isoformat().replace("+00:00", "Z"),
    }  # fmt: skip


class AgentService:
    """Agent accounts; the session factory is passed in."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, default_capacity: int = 3) -> None:
        self._sessions = sessions
        self._default_capacity = default_capacity

    async def create(
        self, *, email: str, password: str, name: str, role: str = "agent", capacity: int | None = None
    ) -> Agent:
        """A new account; :class:`ValidationFailed` for bad input, :class:`Conflict` if the email exists."""
        email = email.strip().lower()
        if "@" not in email or len(email) > 254:
            raise ValidationFailed("email must be an email address")
        if role not in ROLES:
            raise ValidationFailed(f"role must be one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD_CHARS:
            raise ValidationFailed(f"password must have at least {MIN_PASSWORD_CHARS} characters")
        if not name.strip():
            raise ValidationFailed("name must not be empty")
        password_hash = await asyncio.to_thread(_hasher.hash, password)
        agent = Agent(
            email=email, name=name.strip(), role=role, password_hash=password_hash,
            capacity=capacity or self._default_capacity,
        )  # fmt: skip
        async with self._sessions() as session:
            session.add(agent)
            try:
                await session.commit()
            except IntegrityError as exc:
                raise Conflict(f"an agent with email {email} exists") from exc
            await session.refresh(agent)
        return agent

    async def authenticate(self, email: str, password: str) -> Agent:
        """The active agent with these credentials, else :class:`Unauthorized` (same for either mistake)."""
        async with self._sessions() as session:
            agent = (
                await session.execute(select(Agent).where(col(Agent.email) == email.strip().lower()))
            ).scalar_one_or_none()
        stored = agent.password_hash if agent is not None and agent.active else _DUMMY_HASH
        try:
            await asyncio.to_thread(_hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            raise Unauthorized("wrong email or password") from None
        if agent is None or not agent.active:
            raise Unauthorized("wrong email or password")
        return agent

    async def get(self, agent_id: str) -> Agent:
        """One agent, else :class:`NotFound`."""
        async with self._sessions() as session:
            agent = await session.get(Agent, agent_id)
        if agent is None:
            raise NotFound(f"no agent {agent_id}")
        return agent

    async def all(self) -> list[Agent]:
        """Every active agent, by name."""
        async with self._sessions() as session:
            rows = await session.execute(select(Agent).where(col(Agent.active)).order_by(col(Agent.name)))
            return list(rows.scalars().all())

    async def everyone(self) -> list[Agent]:
        """Every account, inactive ones too: active first, then by name."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(Agent).order_by(col(Agent.active).desc(), col(Agent.name), col(Agent.email))
            )
            return list(rows.scalars().all())

    async def generation(self, agent_id: str) -> int:
        """The agent's token generation; :data:`NO_GENERATION` if it is missing or inactive."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(Agent.token_generation, Agent.active).where(col(Agent.id) == agent_id)
                )
            ).one_or_none()
        if row is None or not row.active:
            return NO_GENERATION
        return int(row.token_generation)

    async def update(
        self,
        agent_id: str,
        *,
        active: bool | None = None,
        role: str | None = None,
        name: str | None = None,
        capacity: int | None = None,
    ) -> tuple[Agent, bool]:
        """Change an account; returns it and whether its tokens were revoked (``active`` or ``role``
        changed: the token generation is bumped in the same transaction).

        :class:`ValidationFailed` for bad values, :class:`NotFound`, and :class:`Conflict` when the change
        would leave no active admin (nobody could manage accounts any more).
        """
        changes: dict[str, Any] = {}
        if active is not None:
            changes["active"] = active
        if role is not None:
            if role not in ROLES:
                raise ValidationFailed(f"role must be one of {', '.join(ROLES)}")
            changes["role"] = role
        if name is not None:
            if not name.strip() or len(name.strip()) > MAX_NAME_CHARS:
                raise ValidationFailed(f"name must have 1 to {MAX_NAME_CHARS} characters")
            changes["name"] = name.strip()
        if capacity is not None:
            if not 1 <= capacity <= MAX_CAPACITY:
                raise ValidationFailed(f"capacity must be between 1 and {MAX_CAPACITY}")
            changes["capacity"] = capacity
        if not changes:
            raise ValidationFailed("nothing to change: give active, role, name or capacity")
        async with self._sessions() as session, session.begin():
            # Lock the active admins (FOR UPDATE on PostgreSQL; SQLite has one writer at a time anyway), so
            # two admins demoting each other at once cannot both succeed and leave nobody in charge.
            await session.execute(
                select(Agent.id)
                .where(col(Agent.role) == "admin", col(Agent.active))
                .order_by(col(Agent.id))
                .with_for_update()
            )
            before = (
                await session.execute(select(Agent.active, Agent.role).where(col(Agent.id) == agent_id))
            ).one_or_none()
            if before is None:
                raise NotFound(f"no agent {agent_id}")
            revoke = changes.get("active", before.active) != before.active or (
                changes.get("role", before.role) != before.role
            )
            values = dict(changes)
            if revoke:
                values["token_generation"] = col(Agent.token_generation) + 1
            await session.execute(update(Agent).where(col(Agent.id) == agent_id).values(**values))
            admins = (
                await session.execute(
                    select(func.count())
                    .select_from(Agent)
                    .where(col(Agent.role) == "admin", col(Agent.active))
                )
            ).scalar_one()
            if admins == 0:
                raise Conflict("this would leave no active admin; make someone else an admin first")
            agent = (
                await session.execute(
                    select(Agent).where(col(Agent.id) == agent_id).execution_options(populate_existing=True)
                )
            ).scalar_one()
        return agent, revoke
