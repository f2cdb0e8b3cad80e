"""Circuit breaker per model: stop calling a model that keeps failing, so callers fall back at once.

States: *closed* (calls pass) → *open* after ``failures`` consecutive failures of the kinds that mean the
model API is in trouble (429, 529, other 5xx, 408, timeouts, connection errors) → *half-open* once
``cooldown_s`` has passed, which lets exactly ONE trial call through → *closed* when the trial succeeds,
*open* again (a new cooldown) when it fails. A trial whose caller vanished (crash, cancellation) does not
wedge the breaker: after ``trial_lease_s`` the next caller becomes the trial.

Two implementations share one contract and one test-suite, like litestar's memory/redis twins:

- :class:`BreakerCore` – pure state machine, no I/O, clock passed in; used in-process and by unit tests.
- :class:`RedisBreaker` – the same transitions as one Lua script per step on ``keys.breaker(model)``,
  so every process sees the same state: a model that overloads one worker is overloaded for all, and
  N workers must not each burn N failures before backing off. The clock is Redis ``TIME`` unless a
  clock is injected (tests), so the processes of one deployment never disagree about the cooldown.
  The healthy case costs no round trip: once a process has seen the breaker closed with no failures
  counted, it lets calls through (and skips resetting a count that is zero) for ``CLEAN_CACHE_S``
  without asking Redis. A breaker another process opens is seen here at most that much later, and
  sooner if a call from here fails (a failure always goes to Redis and drops the cached view).

A rejected request (400 etc.) proves the API is reachable and answering, so it counts as a success.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, cast

from support import keys
from support.errors import CircuitOpen
from support.redis_client import RedisClient

Clock = Callable[[], float]
"""Seconds, monotonic within one breaker's use (``time.monotonic`` in-process; Redis TIME otherwise)."""

DEFAULT_TRIAL_LEASE_S = 60.0  # a half-open trial that reports nothing for this long is presumed lost
CLEAN_CACHE_S = 1.0  # how long a process trusts its last view of "closed, no failures counted"


class BreakerState(StrEnum):
    """Where a breaker is."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker(Protocol):
    """What the gateway needs from a breaker: a gate before each attempt and the attempt's outcome."""

    async def allow(self) -> None:
        """Return if a call may be attempted now; raise :class:`CircuitOpen` otherwise."""

    async def record_success(self) -> None:
        """The attempt got an answer (or a rejection) from the API."""

    async def record_failure(self) -> None:
        """The attempt failed in a way that suggests the model API is unhealthy."""


@dataclass
class BreakerCore:
    """The breaker state machine with no I/O: feed it ``now`` and outcomes, it answers allow/deny."""

    failures: int
    cooldown_s: float
    trial_lease_s: float = DEFAULT_TRIAL_LEASE_S
    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    opened_at: float = 0.0
    trial_until: float = 0.0

    def allow(self, now: float) -> bool:
        """True if a call may go now. In half-open, True means "you are the one trial call"."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if now < self.opened_at + self.cooldown_s:
                return False
            self.state = BreakerState.HALF_OPEN
        elif now < self.trial_until:
            return False  # a trial is already in flight
        self.trial_until = now + self.trial_lease_s
        return True

    def retry_in(self, now: float) -> float:
        """Seconds until a call might be allowed (for error messages and callers' hints)."""
        if self.state is BreakerState.OPEN:
            return max(0.0, self.opened_at + self.cooldown_s - now)
        if self.state is BreakerState.HALF_OPEN:
            return max(0.0, self.trial_until - now)
        return 0.0

    def record_success(self) -> None:
        """Any success closes the breaker and forgets past failures."""
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.trial_until = 0.0

    def record_failure(self, now: float) -> None:
        """Count a failure; open on the threshold, or at once when the half-open trial fails."""
        if self.state is BreakerState.HALF_OPEN:
            self._open(now)
        elif self.state is BreakerState.CLOSED:
            self.consecutive_failures += 1
            if self.consecutive_failures >= self.failures:
                self._open(now)
        # OPEN: a late failure of a call started before opening changes nothing.

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self.opened_at = now
        self.trial_until = 0.0
        self.consecutive_failures = 0


class LocalBreaker:
    """:class:`BreakerCore` behind the async :class:`Breaker` interface, state in this process only."""

    def __init__(
        self,
        model: str,
        *,
        failures: int,
        cooldown_s: float,
        trial_lease_s: float = DEFAULT_TRIAL_LEASE_S,
        clock: Clock = time.monotonic,
    ) -> None:
        self.model = model
        self.core = BreakerCore(failures=failures, cooldown_s=cooldown_s, trial_lease_s=trial_lease_s)
        self._clock = clock

    async def allow(self) -> None:
        """Raise :class:`CircuitOpen` unless a call may go now."""
        now = self._clock()
        if not self.core.allow(now):
            raise CircuitOpen(f"breaker open for {self.model}; retry in {self.core.retry_in(now):.1f}s")

    async def record_success(self) -> None:
        """Close the breaker."""
        self.core.record_success()

    async def record_failure(self) -> None:
        """Count one failure."""
        self.core.record_failure(self._clock())

    async def state(self) -> BreakerState:
        """Current state (for tests and health reports)."""
        return self.core.state


# The Lua below mirrors BreakerCore line by line. Times are milliseconds (integers survive Lua/Redis
# conversions exactly). ARGV[1] is "now" in ms, or "" to use Redis TIME.
_LUA_NOW = """
local now
if ARGV[1] ~= '' then now = tonumber(ARGV[1]) else
  local t = redis.call('TIME'); now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
"""

# KEYS[1] breaker hash; ARGV: now, cooldown_ms, trial_lease_ms -> {allowed 0/1, retry_in_ms, clean 0/1}
# (clean: closed with no failures counted, i.e. no hash at all: success deletes it)
_ALLOW_LUA = (
    _LUA_NOW
    + """
local cooldown, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 'state', 'opened_at', 'trial_until')
if not h[1] then return {1, 0, 1} end
local state = h[1]
if state == 'closed' then return {1, 0, 0} end
if state == 'open' then
  local ready = tonumber(h[2]) + cooldown
  if now < ready then return {0, ready - now, 0} end
  state = 'half_open'
else
  local trial_until = tonumber(h[3] or '0')
  if now < trial_until then return {0, trial_until - now, 0} end
end
redis.call('HSET', KEYS[1], 'state', state, 'trial_until', now + lease)
return {1, 0, 0}
"""
)

_SUCCESS_LUA = """
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS[1] breaker hash; ARGV: now, failures threshold -> new state name
_FAILURE_LUA = (
    _LUA_NOW
    + """
local threshold = tonumber(ARGV[2])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'half_open' or (state == 'closed'
    and redis.call('HINCRBY', KEYS[1], 'failures', 1) >= threshold) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now, 'trial_until', 0, 'failures', 0)
  return 'open'
end
if state == 'closed' then redis.call('HSET', KEYS[1], 'state', 'closed') end
return state
"""
)


class RedisBreaker:
    """The breaker of one model, shared by every process through one Redis hash and atomic Lua steps."""

    def __init__(
        self,
        redis: RedisClient,
        model: str,
        *,
        failures: int,
        cooldown_s: float,
        trial_lease_s: float = DEFAULT_TRIAL_LEASE_S,
        clock: Clock | None = None,
    ) -> None:
        self.model = model
        self._redis = redis
        self._key = keys.breaker(model)
        self._failures = failures
        self._cooldown_ms = round(cooldown_s * 1000)
        self._lease_ms = round(trial_lease_s * 1000)
        self._clock = clock
        self._clean_until = float("-inf")  # local clock: until then, trust "closed, no failures"
        self._allow = redis.register_script(_ALLOW_LUA)
        self._success = redis.register_script(_SUCCESS_LUA)
        self._failure = redis.register_script(_FAILURE_LUA)

    def _now_arg(self) -> str:
        return "" if self._clock is None else str(round(self._clock() * 1000))

    def _local_now(self) -> float:
        return time.monotonic() if self._clock is None else self._clock()

    def _seen_clean(self) -> bool:
        return self._local_now() < self._clean_until

    async def allow(self) -> None:
        """Raise :class:`CircuitOpen` unless a call may go now (half-open admits one trial)."""
        if self._seen_clean():
            return
        allowed, retry_in_ms, clean = cast(
            "list[int]",
            await self._allow(keys=[self._key], args=[self._now_arg(), self._cooldown_ms, self._lease_ms]),
        )
        if clean:
            self._clean_until = self._local_now() + CLEAN_CACHE_S
        if not allowed:
            raise CircuitOpen(f"breaker open for {self.model}; retry in {int(retry_in_ms) / 1000:.1f}s")

    async def record_success(self) -> None:
        """Close the breaker for every process (nothing to do while this process saw it clean)."""
        if self._seen_clean():
            return
        await self._success(keys=[self._key], args=[])
        self._clean_until = self._local_now() + CLEAN_CACHE_S

    async def record_failure(self) -> None:
        """Count one failure for every process."""
        self._clean_until = float("-inf")
        await self._failure(keys=[self._key], args=[self._now_arg(), self._failures])

    async def state(self) -> BreakerState:
        """Current state (for tests and health reports); an open breaker past its cooldown still says open."""
        raw = await self._redis.hget(self._key, "state")
        if raw is None:
            return BreakerState.CLOSED
        return BreakerState(raw.decode() if isinstance(raw, bytes) else str(raw))


class BreakerRegistry:
    """One breaker per model, created on first use, all with the same settings and backend."""

    def __init__(self, factory: Callable[[str], Breaker]) -> None:
        self._factory = factory
        self._breakers: dict[str, Breaker] = {}

    def get(self, model: str) -> Breaker:
        """The breaker of ``model``."""
        breaker = self._breakers.get(model)
        if breaker is None:
            breaker = self._breakers[model] = self._factory(model)
        return breaker
