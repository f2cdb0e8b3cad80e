"""Revoking agent tokens at once, on every process: a per-agent token generation.

Every agent token carries the account's ``token_generation`` (SQL) as of its login. Deactivating an agent
or changing its role bumps that number in the same transaction, so every token issued before is stale.
The guard compares a token's generation with the current one on every request; Redis caches the current
one (``keys.agent_token_generation``), so a request costs one GET, and SQL is read only on a miss.

The cache is only ever raised (a Lua "set if greater"), so a slow reader filling it from SQL can never
overwrite a newer generation with an older one; its TTL bounds how long a cache that missed a bump (Redis
restored from an old snapshot) can be wrong. A revocation is also published (``keys.agent_revocations``):
whichever process holds the agent's console socket closes it (policy violation, 1008).
"""

from __future__ import annotations

import json

from handoff.agents import AgentIdentity, AgentService
from support import keys
from support.errors import Unauthorized
from support.redis_client import RedisClient

# A cached generation lives this long: after it, one SQL read per agent refreshes it. Short enough that a
# cache which missed a bump heals within the hour; long enough that SQL sees ~1 read per agent per hour.
GENERATION_CACHE_TTL_S = 3600

_RAISE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '-2')
local new = tonumber(ARGV[1])
if new > current then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return new
end
return current
"""


class AgentTokens:
    """Checks that an agent token is of its account's current generation; revokes older ones."""

    def __init__(self, redis: RedisClient, agents: AgentService) -> None:
        self._redis = redis
        self._agents = agents
        self._raise = redis.register_script(_RAISE)

    async def current(self, agent_id: str) -> int:
        """The account's current token generation (-1: missing or inactive, no token is current)."""
        cached = await self._redis.get(keys.agent_token_generation(agent_id))
        if cached is not None:
            return int(cached)
        return int(await self._store(agent_id, await self._agents.generation(agent_id)))

    async def is_current(self, agent: AgentIdentity) -> bool:
        """Whether ``agent``'s token was issued at the account's current generation."""
        return agent.generation == await self.current(agent.id)

    async def check(self, agent: AgentIdentity) -> None:
        """:class:`Unauthorized` unless the token is current (the account was not deactivated or changed)."""
        if not await self.is_current(agent):
            raise Unauthorized("agent token revoked; log in again")

    async def revoked(self, agent_id: str, generation: int) -> None:
        """The account is now at ``generation`` (already committed to SQL): every older token stops
        working on the next request, and every process closes the agent's sockets."""
        await self._store(agent_id, generation)
        payload = json.dumps({"agent_id": agent_id, "generation": generation})
        await self._redis.publish(keys.agent_revocations(), payload)

    async def _store(self, agent_id: str, generation: int) -> int:
        result = await self._raise(
            keys=[keys.agent_token_generation(agent_id)], args=[generation, GENERATION_CACHE_TTL_S]
        )
        return int(result)
