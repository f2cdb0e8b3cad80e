"""Automatic assignment: queued conversations go to online agents of their team with spare capacity.

A pass reads the queue in serving order, the roster (teams, members, capacities, skills, policies: SQL, see
:meth:`handoff.teams.TeamService.roster`), who is online (:mod:`handoff.presence`) and every agent's load,
then picks an agent for each conversation by the team's policy (:func:`choose`, pure) and takes it with the
queue's claim script (:meth:`handoff.queue.HandoffQueue.claim`). The claim script is the only place that
decides: it assigns a conversation only while it is still queued (so exactly once, whichever process or
agent gets there first) and only while the agent holds fewer than its capacity. Several processes may run
passes at once; a pass that loses a race moves on (``TAKEN``) or tries the next agent (``OVER_CAPACITY``).

Policies: ``capacity`` fills the agent with the most spare capacity; ``least_busy`` the one holding the
fewest; ``round_robin`` agents in turn (by id, after the team's last pick, kept in Redis for every process);
``manual`` assigns nothing. Skills: an agent's languages and intents must include the conversation's (an
empty list takes anything); a conversation nobody skilled can take goes to any agent of the team once it has
waited ``skill_wait_s``. A conversation is not given back to the agent who released it or whose lease lapsed
(they may still claim it).

A pass runs when something may have changed (:meth:`Assigner.kick`: a handoff, a release, an agent coming
online, in this process) and every ``interval_s`` in every process, which covers changes elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from handoff.presence import AgentPresence
from handoff.queue import ClaimResult, HandoffQueue, QueueItem
from handoff.sla import ms_of
from support import keys
from support.errors import REDIS_OUTAGES
from support.redis_client import RedisClient, as_text

log = logging.getLogger(__name__)

POLICIES = ("manual", "capacity", "round_robin", "least_busy")
PASS_LIMIT = 500  # queued conversations one pass looks at (the head of the queue: served first anyway)


@dataclass(frozen=True)
class Candidate:
    """An agent as assignment sees it."""

    id: str
    name: str
    capacity: int
    teams: frozenset[str]
    languages: frozenset[str] = frozenset()
    intents: frozenset[str] = frozenset()

    def skilled_for(self, language: str | None, intent: str | None) -> bool:
        """Whether the agent's skills cover the conversation (an empty skill list covers anything; an
        unknown language or intent is covered only by an agent without that restriction)."""
        if self.languages and (language or "").split("-")[0].lower() not in self.languages:
            return False
        return not (self.intents and (intent or "") not in self.intents)


@dataclass(frozen=True)
class Roster:
    """Active agents and each team's policy."""

    agents: tuple[Candidate, ...]
    policies: dict[str, str] = field(default_factory=dict)  # team -> policy; a team not named: manual

    def policy(self, team: str) -> str:
        """The team's policy."""
        return self.policies.get(team, "manual")


def choose(policy: str, candidates: Sequence[Candidate], load: dict[str, int], last: str | None) -> Candidate:
    """The agent ``policy`` picks among ``candidates`` (non-empty, all with spare capacity); ``last`` is the
    team's previous round-robin pick. Ties go to the lower id, so every process picks alike."""
    if policy == "round_robin":
        ordered = sorted(candidates, key=lambda c: c.id)
        return next((c for c in ordered if last is None or c.id > last), ordered[0])
    if policy == "capacity":
        return min(candidates, key=lambda c: (-(c.capacity - load.get(c.id, 0)), c.id))
    # least_busy
    return min(candidates, key=lambda c: (load.get(c.id, 0), -(c.capacity - load.get(c.id, 0)), c.id))


OnAssigned = Callable[[str, Candidate], Awaitable[None]]


class Assigner:
    """Runs assignment passes. Clients and ports are passed in; the runtime owns :meth:`run_forever`."""

    def __init__(
        self,
        queue: HandoffQueue,
        presence: AgentPresence,
        redis: RedisClient,
        roster: Callable[[], Awaitable[Roster]],
        *,
        skill_wait_s: float = 60.0,
        on_assigned: OnAssigned | None = None,
        after_pass: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.queue = queue
        self.presence = presence
        self._redis = redis
        self._roster = roster
        self.skill_wait_ms = int(skill_wait_s * 1000)
        self._on_assigned = on_assigned
        self._after_pass = after_pass
        self._wake = asyncio.Event()

    def kick(self) -> None:
        """Something changed in this process (a handoff, a release, an agent online): run a pass soon."""
        self._wake.set()

    async def assign_once(self) -> list[tuple[str, str]]:
        """One pass; returns the ``(conversation_id, agent_id)`` pairs this process assigned."""
        if not await self.queue.depth():
            return []
        roster = await self._roster()
        if all(p == "manual" for p in roster.policies.values()):
            return []
        now_ms, states = await self.presence.effective()
        online = [a for a in roster.agents if states.get(a.id, {}).get("presence") == "online"]
        if not online:
            return []
        load = await self.queue.load([a.id for a in online])
        last: dict[str, str] = {}
        if "round_robin" in roster.policies.values():  # each round-robin team's last agent, shared
            raw_last = await self._redis.hgetall(keys.assignment_round_robin())  # type: ignore[misc,unused-ignore]
            last = {as_text(k): as_text(v) for k, v in raw_last.items()}
        done: list[tuple[str, str]] = []
        for item in await self.queue.waiting(limit=PASS_LIMIT):
            if not any(load[a.id] < a.capacity for a in online):
                break
            picked = await self._assign(item, roster, online, load, last, now_ms)
            if picked is not None:
                done.append((item.conversation_id, picked.id))
                if self._on_assigned is not None:
                    try:
                        await self._on_assigned(item.conversation_id, picked)
                    except Exception:  # the claim stands (the console sees it in Mine); the rest is shown
                        log.exception("after assigning %s to %s", item.conversation_id, picked.id)
        if done and self._after_pass is not None:
            await self._after_pass()
        return done

    async def _assign(
        self,
        item: QueueItem,
        roster: Roster,
        online: list[Candidate],
        load: dict[str, int],
        last: dict[str, str],
        now_ms: int,
    ) -> Candidate | None:
        team, policy = item.team, roster.policy(item.team)
        if policy == "manual":
            return None
        # Not back to whoever just gave it up: the agent who released it, or whose console went away.
        gave_up = {item.released_by, item.lapsed_from}
        members = [a for a in online if team in a.teams and load[a.id] < a.capacity and a.id not in gave_up]
        language, intent = item.fields.get("language"), item.fields.get("intent")
        candidates = [a for a in members if a.skilled_for(language, intent)]
        waited = now_ms - (ms_of(item.waiting_since) or now_ms)
        if not candidates and waited >= self.skill_wait_ms:
            candidates = members
        while candidates:
            pick = choose(policy, candidates, load, last.get(team))
            result = await self.queue.claim(item.conversation_id, pick.id, pick.capacity)
            if result is ClaimResult.CLAIMED:
                load[pick.id] += 1
                if policy == "round_robin":
                    last[team] = pick.id
                    await self._redis.hset(keys.assignment_round_robin(), team, pick.id)  # type: ignore[misc,unused-ignore]
                return pick
            if result is ClaimResult.OVER_CAPACITY:  # another process or a manual claim filled them
                load[pick.id] = pick.capacity
                candidates = [c for c in candidates if c.id != pick.id]
                continue
            return None  # taken by someone else, or no longer queued
        return None

    async def run_forever(self, interval_s: float) -> None:
        """Background loop of every process: a pass when kicked, and at least every ``interval_s``."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval_s)
            self._wake.clear()
            try:
                assigned = await self.assign_once()
                if assigned:
                    log.info("assigned %d queued conversations", len(assigned))
            except REDIS_OUTAGES as exc:
                log.warning("assignment pass skipped: Redis unavailable (%r)", exc)
            except Exception:
                log.exception("assignment pass failed")
