"""Administering agent accounts: change one, and make the change take effect everywhere at once.

Deactivating an agent or changing its role revokes every token it holds (:mod:`handoff.tokens`): its next
request gets 401 and its console socket is closed, on whichever process holds it. A deactivated agent's
conversations go back to the queue at their original places, so no customer waits on someone who left.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

from handoff.agents import AgentService, identity
from handoff.desk import AgentDesk
from handoff.tokens import AgentTokens
from support.audit import AuditSink, NoAudit
from support.db.models import Agent
from support.errors import Conflict

log = logging.getLogger(__name__)


@dataclass
class AgentAccounts:
    """Account changes with their consequences; everything is passed in (built in the lifespan)."""

    agents: AgentService
    tokens: AgentTokens
    desk: AgentDesk
    audit: AuditSink = field(default_factory=NoAudit)

    async def create(
        self, *, email: str, password: str, name: str, role: str, capacity: int | None, by: str | None
    ) -> Agent:
        """A new account (see :meth:`AgentService.create` for the errors), recorded by ``by``."""
        agent = await self.agents.create(
            email=email, password=password, name=name, role=role, capacity=capacity
        )
        await self.audit.record(by, "account.created", "agent", agent.id, {"role": agent.role})
        return agent

    async def update(
        self,
        agent_id: str,
        *,
        active: bool | None = None,
        role: str | None = None,
        name: str | None = None,
        capacity: int | None = None,
        by: str | None = None,
    ) -> Agent:
        """Change an account (see :meth:`AgentService.update` for the errors); revoke and requeue."""
        agent, revoked = await self.agents.update(
            agent_id, active=active, role=role, name=name, capacity=capacity
        )
        changed = {"active": active, "role": role, "capacity": capacity}
        await self.audit.record(
            by, "account.updated", "agent", agent.id,
            {**{k: v for k, v in changed.items() if v is not None}, "name_changed": name is not None},
        )  # fmt: skip
        if revoked or active is not None or role is not None:
            # Also when nothing changed: an admin retrying after Redis failed under the first attempt
            # (committed in SQL, not yet in the cache) makes the revocation take effect.
            await self.tokens.revoked(agent.id, agent.token_generation)
        if revoked:
            log.info("tokens of agent %s revoked (active=%s, role=%s)", agent.id, agent.active, agent.role)
        if not agent.active:
            await self._requeue_held(agent)
        return agent

    async def _requeue_held(self, agent: Agent) -> None:
        holder = identity(agent)
        for conversation_id in await self.desk.queue.held(agent.id):
            # Conflict: it was resolved, transferred or lapsed meanwhile; nothing left to give back.
            with contextlib.suppress(Conflict):
                await self.desk.release(conversation_id, holder)
                log.info("%s went back to the queue: agent %s was deactivated", conversation_id, agent.id)
