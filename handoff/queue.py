"""The agent queue in Redis: priority by urgency, FIFO within a priority, claims with leases.

Every change is one Lua script, so several server processes and several agents may race freely: a
conversation is claimed by exactly one agent, an agent never holds more than its capacity, and a claim
whose lease lapses (the agent's console went away) puts the conversation back where it was in the queue.

Layout (keys in :mod:`support.keys`, all under the ``{handoff}`` hash tag, so the scripts' keys share
one cluster slot; the scripts build per-conversation and per-agent keys from prefixes for that reason):

- ``queue``: sorted set of waiting conversation ids; score = priority rank * 1e13 + waiting-since ms, so
  a lower score is served first, and a released or lapsed conversation keeps its original place.
- ``item:<cid>``: hash of one handoff (reason, priority, score, waiting_since, assignee, triage digest).
- ``leases``: sorted set cid -> lease expiry ms; ``held:<agent>``: set of cids an agent holds.

Times are Redis ``TIME`` (one clock for every process).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

from handoff.routing import PRIORITIES
from support import keys
from support.redis_client import RedisClient, as_text

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

# KEYS: queue, item. ARGV: cid, rank, reason, priority, fields-json.
_ENQUEUE = (
    _NOW
    + """
if redis.call('HEXISTS', KEYS[2], 'assignee') == 1 then return 0 end
local score = redis.call('HGET', KEYS[2], 'score')
local created = 1
if not score then
  created = 2
  score = tonumber(ARGV[2]) * 10000000000000 + now
  redis.call('HSET', KEYS[2], 'score', score, 'waiting_since', now)
elseif tonumber(ARGV[2]) * 10000000000000 < math.floor(tonumber(score) / 10000000000000) * 10000000000000 then
  -- a more urgent reason moves it up, keeping its waiting time
  score = tonumber(ARGV[2]) * 10000000000000 + (tonumber(score) % 10000000000000)
  redis.call('HSET', KEYS[2], 'score', score)
end
redis.call('HSET', KEYS[2], 'reason', ARGV[3], 'priority', ARGV[4], 'fields', ARGV[5])
redis.call('ZADD', KEYS[1], score, ARGV[1])
return created
"""
)

# KEYS: queue, item, leases, held(agent). ARGV: cid, agent, capacity, lease_ms.
_CLAIM = (
    _NOW
    + """
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local assignee = redis.call('HGET', KEYS[2], 'assignee')
if assignee == ARGV[2] then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[1])
  return 2
end
if assignee then return 0 end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return -1 end
if redis.call('SCARD', KEYS[4]) >= tonumber(ARGV[3]) then return -2 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'assignee', ARGV[2], 'claimed_at', now)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
return 1
"""
)

# KEYS: queue, item, leases, held(agent). ARGV: cid, agent.
_RELEASE = """
if redis.call('HGET', KEYS[2], 'assignee') ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], 'assignee', 'claimed_at')
redis.call('HSET', KEYS[2], 'released_by', ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[1], redis.call('HGET', KEYS[2], 'score'), ARGV[1])
return 1
"""

# KEYS: item, leases, held(from), held(to). ARGV: cid, from, to, to_capacity, lease_ms.
_TRANSFER = (
    _NOW
    + """
if redis.call('HGET', KEYS[1], 'assignee') ~= ARGV[2] then return 0 end
if ARGV[2] == ARGV[3] then return 1 end
if redis.call('SCARD', KEYS[4]) >= tonumber(ARGV[4]) then return -2 end
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('HSET', KEYS[1], 'assignee', ARGV[3], 'claimed_at', now)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[1])
return 1
"""
)

# KEYS: queue, item, leases. ARGV: cid, agent ('' = whoever holds it), held-key prefix.
_FINISH = """
local assignee = redis.call('HGET', KEYS[2], 'assignee')
if ARGV[2] ~= '' and assignee ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if assignee then redis.call('SREM', ARGV[3] .. assignee, ARGV[1]) end
redis.call('DEL', KEYS[2])
return 1
"""

# KEYS: queue, leases. ARGV: item-key prefix, held-key prefix, max.
_EXPIRE = (
    _NOW
    + """
local out = {}
for _, cid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))) do
  local item = ARGV[1] .. cid
  local assignee = redis.call('HGET', item, 'assignee')
  redis.call('ZREM', KEYS[2], cid)
  if assignee then
    redis.call('SREM', ARGV[2] .. assignee, cid)
    redis.call('HDEL', item, 'assignee', 'claimed_at')
    redis.call('HSET', item, 'lapsed_from', assignee)
    redis.call('ZADD', KEYS[1], redis.call('HGET', item, 'score'), cid)
    table.insert(out, cid)
    table.insert(out, assignee)
  end
end
return out
"""
)

# KEYS: leases, held(agent), presence. ARGV: agent, lease_ms.
_RENEW = (
    _NOW
    + """
redis.call('ZADD', KEYS[3], now, ARGV[1])
local n = 0
for _, cid in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('ZSCORE', KEYS[1], cid) then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), cid)
    n = n + 1
  end
end
return n
"""
)


# KEYS: item. ARGV: none. The first agent reply of this stay (SLA), kept across releases and transfers.
_REPLIED = (
    _NOW
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HSETNX', KEYS[1], 'first_reply_at', now)
"""
)


class ClaimResult(IntEnum):
    """Outcome of a claim."""

    OVER_CAPACITY = -2
    NOT_QUEUED = -1
    TAKEN = 0  # someone else holds it
    CLAIMED = 1
    ALREADY_MINE = 2


def _ticket_id_of(conversation_id: str) -> str | None:
    # Imported when used: the tickets service pulls in the model SDK, which processes that only run the
    # queue (the assignment benchmark's workers) do not need.
    from support.tickets.service import ticket_id_of

    return ticket_id_of(conversation_id)


def _iso_ms(ms: str | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(int(float(ms)) / 1000, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class QueueItem:
    """One handoff as agents see it in the queue."""

    conversation_id: str
    reason: str
    priority: str
    waiting_since: str | None
    position: int | None = None  # 1-based, None when claimed
    assignee: str | None = None
    lease_expires_at: str | None = None
    lapsed_from: str | None = None
    first_reply_at: str | None = None  # the first agent reply of this stay (SLA)
    released_by: str | None = None  # the last agent who gave it back (automatic assignment skips them)
    # intent, urgency, sentiment, preview, customer, and a ticket's card
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``ticket`` for a ticket's conversation, else ``chat``."""
        return "ticket" if _ticket_id_of(self.conversation_id) is not None else "chat"

    def to_json(self) -> dict[str, Any]:
        """The ``GET /api/v1/agent/queue`` item: ``kind`` says what the conversation is; a ticket's also
        carries ``ticket`` (``{"id", "subject", "channel", "email"}``), a chat's ``ticket`` is null."""
        ticket = None
        if self.kind == "ticket":
            card = self.fields.get("ticket") or {}
            ticket = {
                "id": _ticket_id_of(self.conversation_id),
                **{k: card.get(k) for k in ("subject", "channel", "email")},
            }
        return {
            "kind": self.kind,
            "ticket": ticket,
            "conversation_id": self.conversation_id,
            "reason": self.reason,
            "priority": self.priority,
            "waiting_since": self.waiting_since,
            "position": self.position,
            "assignee": self.assignee,
            "lease_expires_at": self.lease_expires_at,
            **{k: self.fields.get(k) for k in ("intent", "urgency", "sentiment", "preview", "language")},
            "customer": self.fields.get("customer") or {},
            "team": self.team,
            "first_reply_at": self.first_reply_at,
        }

    @property
    def team(self) -> str:
        """The team whose queue it is in (``default`` for handoffs queued before teams)."""
        return str(self.fields.get("team") or "default")


class HandoffQueue:
    """Enqueue, claim (with a lease), renew, release, transfer, finish, expire. The client is passed in."""

    def __init__(self, redis: RedisClient, *, lease_s: float = 30.0) -> None:
        self._redis = redis
        self.lease_ms = int(lease_s * 1000)
        self._enqueue = redis.register_script(_ENQUEUE)
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)
        self._transfer = redis.register_script(_TRANSFER)
        self._finish = redis.register_script(_FINISH)
        self._expire = redis.register_script(_EXPIRE)
        self._renew = redis.register_script(_RENEW)
        self._replied = redis.register_script(_REPLIED)
        self._item_prefix = keys.handoff_item("")
        self._held_prefix = keys.handoff_held("")

    async def enqueue(
        self, conversation_id: str, *, reason: str, priority: str, fields: dict[str, Any] | None = None
    ) -> int:
        """Put a conversation in the queue (idempotent; keeps its place). 2: a new handoff, 1: it was
        already waiting, 0: an agent holds it (nothing changed)."""
        if priority not in PRIORITIES:
            raise ValueError(f"unknown priority {priority!r}")
        result = await self._enqueue(
            keys=[keys.handoff_queue(), keys.handoff_item(conversation_id)],
            args=[conversation_id, PRIORITIES.index(priority), reason, priority, json.dumps(fields or {})],
        )
        return int(result)

    async def claim(self, conversation_id: str, agent_id: str, capacity: int) -> ClaimResult:
        """Take a waiting conversation for ``agent_id`` if it is under ``capacity``."""
        result = await self._claim(
            keys=[
                keys.handoff_queue(), keys.handoff_item(conversation_id), keys.handoff_leases(),
                keys.handoff_held(agent_id),
            ],
            args=[conversation_id, agent_id, capacity, self.lease_ms],
        )  # fmt: skip
        return ClaimResult(int(result))

    async def release(self, conversation_id: str, agent_id: str) -> bool:
        """Back to the queue at its original place; False unless ``agent_id`` holds it."""
        result = await self._release(
            keys=[
                keys.handoff_queue(), keys.handoff_item(conversation_id), keys.handoff_leases(),
                keys.handoff_held(agent_id),
            ],
            args=[conversation_id, agent_id],
        )  # fmt: skip
        return bool(result)

    async def transfer(self, conversation_id: str, from_agent: str, to_agent: str, to_capacity: int) -> int:
        """1 moved, 0 ``from_agent`` does not hold it, -2 the target is at capacity."""
        result = await self._transfer(
            keys=[
                keys.handoff_item(conversation_id), keys.handoff_leases(), keys.handoff_held(from_agent),
                keys.handoff_held(to_agent),
            ],
            args=[conversation_id, from_agent, to_agent, to_capacity, self.lease_ms],
        )  # fmt: skip
        return int(result)

    async def finish(self, conversation_id: str, agent_id: str | None = None) -> bool:
        """The handoff is over (resolved, returned to the bot): forget it. With ``agent_id``, only if
        that agent holds it."""
        result = await self._finish(
            keys=[keys.handoff_queue(), keys.handoff_item(conversation_id), keys.handoff_leases()],
            args=[conversation_id, agent_id or "", self._held_prefix],
        )
        return bool(result)

    async def expire(self, limit: int = 100) -> list[tuple[str, str]]:
        """Requeue every claim whose lease lapsed; returns ``(conversation_id, agent_id)`` pairs. Each
        lapse is returned to exactly one caller, whichever process runs this first."""
        flat = await self._expire(
            keys=[keys.handoff_queue(), keys.handoff_leases()],
            args=[self._item_prefix, self._held_prefix, limit],
        )
        values = [as_text(v) for v in flat]
        return list(zip(values[::2], values[1::2], strict=True))

    async def renew(self, agent_id: str) -> int:
        """Extend the leases of everything ``agent_id`` holds and mark it present; returns how many."""
        result = await self._renew(
            keys=[keys.handoff_leases(), keys.handoff_held(agent_id), keys.handoff_presence()],
            args=[agent_id, self.lease_ms],
        )
        return int(result)

    async def replied(self, conversation_id: str) -> bool:
        """An agent replied: the first reply time of this stay is kept (True when this was the first)."""
        return bool(await self._replied(keys=[keys.handoff_item(conversation_id)], args=[]))

    async def held(self, agent_id: str) -> list[str]:
        """Conversation ids ``agent_id`` holds."""
        members: set[bytes | str] = await self._redis.smembers(keys.handoff_held(agent_id))
        return sorted(as_text(v) for v in members)

    async def load(self, agent_ids: list[str]) -> dict[str, int]:
        """How many conversations each agent holds."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for agent_id in agent_ids:
                pipe.scard(keys.handoff_held(agent_id))
            counts = await pipe.execute()
        return dict(zip(agent_ids, (int(c) for c in counts), strict=True))

    async def now_ms(self) -> int:
        """Redis time in ms: one clock for every process."""
        seconds, micros = await self._redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def online(self, within_s: float) -> set[str]:
        """Agents whose console was seen in the last ``within_s`` seconds."""
        seconds, micros = await self._redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        members: list[Any] = await self._redis.zrangebyscore(
            keys.handoff_presence(), now_ms - within_s * 1000, "+inf"
        )
        return {as_text(m) for m in members}

    async def depth(self) -> int:
        """How many conversations wait for a person (claimed ones are not waiting)."""
        count: int = await self._redis.zcard(keys.handoff_queue())  # type: ignore[assignment,unused-ignore]
        return count

    async def position(self, conversation_id: str) -> int | None:
        """1-based place in the queue, or None if not waiting."""
        rank: int | None = await self._redis.zrank(keys.handoff_queue(), conversation_id)  # type: ignore[assignment]
        return None if rank is None else rank + 1

    async def item(self, conversation_id: str) -> QueueItem | None:
        """The handoff of a conversation (waiting or claimed), or None."""
        items = await self._items([conversation_id])
        return items[0] if items else None

    async def waiting(self, limit: int = 200) -> list[QueueItem]:
        """Waiting conversations in the order they will be served."""
        members: list[Any] = await self._redis.zrange(keys.handoff_queue(), 0, limit - 1)
        ids = [as_text(v) for v in members]
        return await self._items(ids)

    async def _items(self, conversation_ids: list[str]) -> list[QueueItem]:
        if not conversation_ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for cid in conversation_ids:
                pipe.hgetall(keys.handoff_item(cid))
                pipe.zrank(keys.handoff_queue(), cid)
                pipe.zscore(keys.handoff_leases(), cid)
            raw = await pipe.execute()
        items = []
        for i, cid in enumerate(conversation_ids):
            h, rank, lease = raw[3 * i], raw[3 * i + 1], raw[3 * i + 2]
            if not h:
                continue
            f = {as_text(k): as_text(v) for k, v in h.items()}
            items.append(
                QueueItem(
                    conversation_id=cid,
                    reason=f.get("reason", ""),
                    priority=f.get("priority", "normal"),
                    waiting_since=_iso_ms(f.get("waiting_since")),
                    position=None if rank is None else int(rank) + 1,
                    assignee=f.get("assignee"),
                    lease_expires_at=_iso_ms(str(int(lease))) if lease is not None else None,
                    lapsed_from=f.get("lapsed_from"),
                    first_reply_at=_iso_ms(f.get("first_reply_at")),
                    released_by=f.get("released_by"),
                    fields=json.loads(f.get("fields") or "{}"),
                )
            )
        return items
