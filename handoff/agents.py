"""Agent accounts in SQL: create, authenticate (argon2id via argon2-cffi), list.

Hashing is deliberately slow (that is its point), so it runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from support.db.models import Agent
from support.errors import Conflict, NotFound, Unauthorized, ValidationFailed

ROLES = ("agent", "admin")
MIN_PASSWORD_CHARS = 8

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

    @property
    def is_admin(self) -> bool:
        """Admins may do everything agents may, and manage examples and reports."""
        return self.role == "admin"

    def to_json(self) -> dict[str, str]:
        """The ``agent`` object of the login response."""
        return {"id": self.id, "name": self.name, "role": self.role, "email": self.email}


def identity(agent: Agent) -> AgentIdentity:
    """The identity of a stored agent."""
    return AgentIdentity(id=agent.id, name=agent.name, role=agent.role, email=agent.email)


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
