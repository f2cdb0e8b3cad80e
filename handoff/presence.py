"""Agent presence: online, away or offline, as the agent chose it, and away when their console is gone.

Two Redis structures under the ``{handoff}`` hash tag (keys in :mod:`support.keys`):

- ``presence_state`` (hash): what each agent chose; ``auto_away`` when they were online and every console
  socket of theirs stayed closed for longer than the grace period (``SWITCHBOARD_HANDOFF_AWAY_AFTER_S``).
- ``presence`` (sorted set, kept by :meth:`handoff.queue.HandoffQueue.renew`): when one of the agent's
  console sockets was last seen. Every open socket renews it every third of the claim lease, from
  whichever process holds it, so "all sockets closed" is "not seen for a while", shared by all processes.

The effective presence is computed when read (an online agent not seen within the grace period already
counts as away before any sweep has run); :meth:`AgentPresence.sweep` then writes it down and tells the
consoles. An agent who opens a console again while ``auto_away`` (or with no presence yet) is online again;
one who chose away or offline stays so until they change it. Changes are published on the handoff events
channel as ``{"type": "presence", "agent_id", "presence", "auto"}`` (every console forwards them).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from support import keys
from support.errors import ValidationFailed
from support.hours import PRESENCE_STATES
from support.redis_client import RedisClient, as_text

log = logging.getLogger(__name__)

AUTO_AWAY = "auto_away"  # stored, never shown: consoles see "away" with "auto": true

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

# KEYS: states. ARGV: agent. A console opened: online unless the agent chose away or offline.
_CONNECTED = """
local s = redis.call('HGET', KEYS[1], ARGV[1])
if s and s ~= 'auto_away' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 'online')
return 1
"""

# KEYS: states, seen. ARGV: grace_ms. Online agents not seen within the grace period become auto_away.
_SWEEP = (
    _NOW
    + """
local out = {}
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  if flat[i + 1] == 'online' then
    local seen = redis.call('ZSCORE', KEYS[2], flat[i])
    if not seen or tonumber(seen) < now - tonumber(ARGV[1]) then
      redis.call('HSET', KEYS[1], flat[i], 'auto_away')
      table.insert(out, flat[i])
    end
  end
end
return out
"""
)


class AgentPresence:
    """Read and change agents' presence. The Redis client is passed in."""

    def __init__(self, redis: RedisClient, *, away_after_s: float = 60.0) -> None:
        self._redis = redis
        self.away_after_ms = int(away_after_s * 1000)
        self._connected = redis.register_script(_CONNECTED)
        self._sweep = redis.register_script(_SWEEP)

    async def set(self, agent_id: str, presence: str) -> str:
        """The agent chose ``presence``; :class:`ValidationFailed` for anything but online, away, offline."""
        if presence not in PRESENCE_STATES:
            raise ValidationFailed(f"`status` must be one of {', '.join(PRESENCE_STATES)}")
        await self._redis.hset(keys.agent_presence(), agent_id, presence)  # type: ignore[misc,unused-ignore]
        await self._announce(agent_id, presence, auto=False)
        return presence

    async def connected(self, agent_id: str) -> bool:
        """A console socket of the agent opened (after the queue marked it seen); True when that made the
        agent online."""
        if int(await self._connected(keys=[keys.agent_presence()], args=[agent_id])):
            await self._announce(agent_id, "online", auto=False)
            return True
        return False

    async def of(self, agent_id: str) -> dict[str, Any]:
        """``{"presence", "auto"}`` of one agent."""
        return (await self.effective())[1].get(agent_id, {"presence": "offline", "auto": False})

    async def effective(self) -> tuple[int, dict[str, dict[str, Any]]]:
        """Redis time (ms) and every agent's effective presence: ``{"presence", "auto"}``. An agent with no
        presence yet is not listed (offline)."""
        # TIME on its own: a Redis Cluster pipeline refuses it (it names no key, so no node).
        seconds, micros = await self._redis.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.agent_presence())
            pipe.zrange(keys.handoff_presence(), 0, -1, withscores=True)
            states, seen_rows = await pipe.execute()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        seen = {as_text(member): float(score) for member, score in seen_rows}
        out: dict[str, dict[str, Any]] = {}
        for raw_agent, raw_state in states.items():
            agent, state = as_text(raw_agent), as_text(raw_state)
            if state == AUTO_AWAY:
                out[agent] = {"presence": "away", "auto": True}
            elif state == "online" and seen.get(agent, 0.0) < now_ms - self.away_after_ms:
                out[agent] = {"presence": "away", "auto": True}  # the sweep will write it down
            else:
                out[agent] = {"presence": state, "auto": False}
        return now_ms, out

    async def online(self) -> frozenset[str]:
        """Agents whose effective presence is online."""
        _now, states = await self.effective()
        return frozenset(agent for agent, state in states.items() if state["presence"] == "online")

    async def sweep(self) -> list[str]:
        """Set away every online agent whose consoles have all been gone past the grace period (each change
        made and announced once, by whichever process gets there first); returns their ids."""
        flat = await self._sweep(
            keys=[keys.agent_presence(), keys.handoff_presence()], args=[self.away_after_ms]
        )
        changed = [as_text(v) for v in flat]
        for agent_id in changed:
            log.info("agent %s set away: no console for %.0f s", agent_id, self.away_after_ms / 1000)
            await self._announce(agent_id, "away", auto=True)
        return changed

    async def forget(self, agent_id: str) -> None:
        """A deactivated account has no presence."""
        await self._redis.hdel(keys.agent_presence(), agent_id)  # type: ignore[misc,unused-ignore]
        await self._announce(agent_id, "offline", auto=False)

    async def _announce(self, agent_id: str, presence: str, *, auto: bool) -> None:
        payload = {"type": "presence", "agent_id": agent_id, "presence": presence, "auto": auto}
        await self._redis.publish(keys.handoff_events(), json.dumps(payload))
