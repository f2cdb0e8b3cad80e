"""The requests / input-tokens / output-tokens per minute budget, shared by every process through Redis.

Algorithm: a strict sliding-window log of *reservations*. Each reservation (one model request) holds
``requests, input_tokens, output_tokens`` for 60 s from the moment it was granted. A request is granted
only if, for each of the three resources, the sum held by reservations of the last 60 s plus the new
amounts fits the limit. So in ANY 60-second window the grants never exceed the limits – the property
the provider enforces on us (its limiter is a token bucket, which is never stricter than this).

Why a small Lua script rather than a library: the ``limits`` package's moving window counts one
resource per key with unit cost; we need one atomic decision over three resources with different costs,
and a correction after the call (:meth:`SharedBudget.settle`: the estimate of input tokens is replaced by
what the API billed, unused ``max_tokens`` are given back). One script per step does both atomically,
with Redis ``TIME`` as the only clock, so processes with skewed clocks still agree.

Storage (all under the ``{budget}`` hash tag, so it works on Redis Cluster): a sorted set of
reservation ids scored by grant time, a hash of each reservation's amounts and a hash of running totals.
Each script first expires reservations older than the window, so the totals are always the window sum;
work per call is O(expired + log n).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from typing import cast

from support import keys
from support.errors import OverBudget
from support.redis_client import RedisClient

WINDOW_MS = 60_000  # limits are per minute
RETRY_JITTER_S = 0.02  # spreads waiters that all saw the same "free in N ms" answer

_EXPIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - window)
for _, id in ipairs(old) do
  local a = redis.call('HGET', KEYS[2], id)
  if a then
    local r, i, o = string.match(a, '(%-?%d+):(%-?%d+):(%-?%d+)')
    -- 0 - x, not -x: Lua's -0 is sent as "-0", which HINCRBY rejects (a reservation of 0 tokens
    -- then broke every later call of every process once it expired)
    redis.call('HINCRBY', KEYS[3], 'requests', 0 - tonumber(r))
    redis.call('HINCRBY', KEYS[3], 'input_tokens', 0 - tonumber(i))
    redis.call('HINCRBY', KEYS[3], 'output_tokens', 0 - tonumber(o))
    redis.call('HDEL', KEYS[2], id)
  end
end
if #old > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window) end
"""

# KEYS: log, amounts, totals. ARGV: window_ms, id, want r/i/o, limit r/i/o.
# Returns {1, 0} granted | {0, wait_ms} retry after wait_ms | {-1, 0} can never fit.
_ACQUIRE_LUA = (
    _EXPIRE_LUA
    + """
local want = {tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])}
local limit = {tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])}
for k = 1, 3 do if want[k] > limit[k] then return {-1, 0} end end
local tot = redis.call('HMGET', KEYS[3], 'requests', 'input_tokens', 'output_tokens')
local used = {tonumber(tot[1] or '0'), tonumber(tot[2] or '0'), tonumber(tot[3] or '0')}
local fits = true
for k = 1, 3 do if used[k] + want[k] > limit[k] then fits = false end end
if fits then
  redis.call('ZADD', KEYS[1], now, ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3] .. ':' .. ARGV[4] .. ':' .. ARGV[5])
  redis.call('HINCRBY', KEYS[3], 'requests', want[1])
  redis.call('HINCRBY', KEYS[3], 'input_tokens', want[2])
  redis.call('HINCRBY', KEYS[3], 'output_tokens', want[3])
  return {1, 0}
end
-- When will enough expire? Walk the oldest reservations, freeing their amounts, until it fits.
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for j = 1, #entries, 2 do
  local a = redis.call('HGET', KEYS[2], entries[j])
  if a then
    local r, i, o = string.match(a, '(%-?%d+):(%-?%d+):(%-?%d+)')
    used[1] = used[1] - tonumber(r); used[2] = used[2] - tonumber(i); used[3] = used[3] - tonumber(o)
  end
  local ok = true
  for k = 1, 3 do if used[k] + want[k] > limit[k] then ok = false end end
  if ok then return {0, math.max(1, tonumber(entries[j + 1]) + window - now + 1)} end
end
return {0, window}
"""
)

# KEYS: log, amounts, totals. ARGV: window_ms, then (id, actual r, i, o) per reservation.
# Returns how many of the reservations were still live (the others left the window: nothing to correct).
_SETTLE_LUA = (
    _EXPIRE_LUA
    + """
local live = 0
for j = 2, #ARGV, 4 do
  local a = redis.call('HGET', KEYS[2], ARGV[j])
  if a then
    local r, i, o = string.match(a, '(%-?%d+):(%-?%d+):(%-?%d+)')
    redis.call('HSET', KEYS[2], ARGV[j], ARGV[j + 1] .. ':' .. ARGV[j + 2] .. ':' .. ARGV[j + 3])
    redis.call('HINCRBY', KEYS[3], 'requests', tonumber(ARGV[j + 1]) - tonumber(r))
    redis.call('HINCRBY', KEYS[3], 'input_tokens', tonumber(ARGV[j + 2]) - tonumber(i))
    redis.call('HINCRBY', KEYS[3], 'output_tokens', tonumber(ARGV[j + 3]) - tonumber(o))
    live = live + 1
  end
end
return live
"""
)
SETTLE_BATCH_MAX = 128  # settlements per script call


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-minute limits of one budget scope."""

    requests: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class Reservation:
    """A granted slice of the budget; pass it to :meth:`SharedBudget.settle` once the call is over."""

    id: str
    requests: int
    input_tokens: int
    output_tokens: int


class SharedBudget:
    """Per-minute request and token budget of one scope (the account by default), shared via Redis."""

    def __init__(
        self, redis: RedisClient, limits: Limits, *, max_wait_s: float, scope: str = "account"
    ) -> None:
        self.limits = limits
        self.max_wait_s = max_wait_s
        self._keys = [keys.budget_log(scope), keys.budget_amounts(scope), keys.budget_totals(scope)]
        self._acquire = redis.register_script(_ACQUIRE_LUA)
        self._settle = redis.register_script(_SETTLE_LUA)
        self._pending: list[tuple[tuple[str, int, int, int], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def acquire(
        self, *, requests: int = 1, input_tokens: int = 0, output_tokens: int = 0
    ) -> Reservation:
        """Reserve budget, waiting at most ``max_wait_s``; raise :class:`OverBudget` when it cannot fit.

        A caller whose earliest possible grant lies beyond its deadline is refused at once instead of
        sleeping to the deadline first: waiting cannot help it, and failing fast lets it fall back.
        """
        reservation = Reservation(uuid.uuid4().hex, requests, max(0, input_tokens), max(0, output_tokens))
        deadline = time.monotonic() + self.max_wait_s
        args: list[str | int] = [
            WINDOW_MS,
            reservation.id,
            reservation.requests,
            reservation.input_tokens,
            reservation.output_tokens,
            self.limits.requests,
            self.limits.input_tokens,
            self.limits.output_tokens,
        ]
        while True:
            status, wait_ms = cast("list[int]", await self._acquire(keys=self._keys, args=args))
            if status == 1:
                return reservation
            if status == -1:
                raise OverBudget(f"request needs more than the per-minute limits {self.limits}")
            wait_s = int(wait_ms) / 1000 + random.uniform(0, RETRY_JITTER_S)
            if time.monotonic() + wait_s > deadline:
                raise OverBudget(f"no budget within {self.max_wait_s}s (next room in {int(wait_ms)} ms)")
            await asyncio.sleep(wait_s)

    async def settle(
        self, reservation: Reservation, *, requests: int = 1, input_tokens: int, output_tokens: int
    ) -> None:
        """Replace the reservation's estimate by what the call used (no-op once it left the window).

        Group commit, as the ledger's: returns once its correction is applied; corrections asked for while
        one script call is in flight go together in the next, so a busy process pays one round trip for
        many calls' settlements instead of one each. Raises what that script call raised.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        item = (reservation.id, requests, max(0, input_tokens), max(0, output_tokens))
        self._pending.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_settlements(), name="budget-settle")
        await future

    async def _flush_settlements(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:SETTLE_BATCH_MAX], self._pending[SETTLE_BATCH_MAX:]
            args: list[str | int] = [WINDOW_MS]
            for item, _ in batch:
                args.extend(item)
            outcome: BaseException | None = None
            try:
                await self._settle(keys=self._keys, args=args)
            except Exception as exc:
                outcome = exc
            for _, future in batch:
                if future.done():  # the caller gave up (cancellation)
                    continue
                if outcome is None:
                    future.set_result(None)
                else:
                    future.set_exception(outcome)
