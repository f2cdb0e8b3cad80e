"""Automatic assignment under concurrency: time from queued to assigned, with two racing processes.

200 conversations (a fixed mix of languages and intents) and 10 online agents (capacities, some with skills)
share one Redis. Two worker processes stand for two server processes: each receives half of the handoffs
(enqueued at ``--rate`` per second in all, as a handoff would: enqueue, then kick its own assigner) and runs
the assigner of :mod:`handoff.assign` (its kick plus the periodic sweep every ``--interval`` s, the
``SWITCHBOARD_ASSIGNMENT_INTERVAL_S`` setting) with a fixed roster. Reported: for every assigned
conversation, Redis ``claimed_at`` minus ``waiting_since`` (both Redis time, one clock): p50, p95, max; and
the checks (each conversation assigned at most once, nobody over capacity, skills respected).

    python -m benchmarks.assignment [--redis-url URL] [--conversations 200] [--rate 400] [--interval 2]

``run(...)`` is what the concurrency test (tests/integration/test_assignment_race.py) drives; its workers
are ``python -m benchmarks.assignment worker ...`` processes. Measures and prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from handoff.assign import Assigner, Candidate, Roster
from handoff.presence import AgentPresence
from handoff.queue import HandoffQueue
from support import keys
from support.embedded_redis import EmbeddedRedis
from support.redis_client import RedisClient, cluster_client, is_cluster

ROOT = Path(__file__).resolve().parent.parent  # workers run `-m benchmarks.assignment` from here
LANGUAGES = ("en", "fr", "en")  # conversation i: LANGUAGES[i % 3], INTENTS[i % 5]
INTENTS = ("billing", "shipping", "other", "billing", "returns")
# Ten agents: three take French only, two billing only (any language), five anything.
FRENCH: dict[str, list[str]] = {"languages": ["fr"], "intents": []}
BILLING: dict[str, list[str]] = {"languages": [], "intents": ["billing"]}
ANYTHING: dict[str, list[str]] = {"languages": [], "intents": []}
SKILLS = [FRENCH] * 3 + [BILLING] * 2 + [ANYTHING] * 5
WORKER_TIMEOUT_S = 60.0
READY_WAIT_S = 20.0  # how long a worker waits for the others to start
READY_KEY = "bench:{handoff}:ready"  # the benchmark's own start line, on the flushed benchmark Redis


def client_for(url: str) -> RedisClient:
    """A client of the benchmark's Redis (a cluster client for a ``redis+cluster://`` URL)."""
    return cluster_client(url) if is_cluster(url) else aioredis.Redis.from_url(url)


def roster_of(capacities: list[int], policy: str) -> Roster:
    """Ten agents ``a0``..``a9`` with the given capacities and :data:`SKILLS`, all in ``default``."""
    return Roster(
        agents=tuple(
            Candidate(
                id=f"a{i}", name=f"Agent {i}", capacity=cap, teams=frozenset({"default"}),
                languages=frozenset(SKILLS[i]["languages"]), intents=frozenset(SKILLS[i]["intents"]),
            )
            for i, cap in enumerate(capacities)
        ),
        policies={"default": policy},
    )  # fmt: skip


def conversation(i: int) -> tuple[str, dict[str, Any]]:
    """Conversation ``i``'s id and queue fields."""
    return f"c{i:04d}", {"language": LANGUAGES[i % 3], "intent": INTENTS[i % 5], "team": "default"}


async def _worker(
    url: str,
    roster: Roster,
    first: int,
    count: int,
    total: int,
    rate: float,
    interval_s: float,
    skill_wait_s: float,
    processes: int,
) -> list[tuple[str, str]]:
    """One process: enqueue conversations ``first``.. ``first+count-1`` at ``rate``/2 per second, kicking
    the assigner after each; stop once every conversation is assigned, or nothing left can be."""
    redis = client_for(url)
    queue = HandoffQueue(redis, lease_s=600)
    assigned: list[tuple[str, str]] = []

    async def on_assigned(cid: str, agent: Candidate) -> None:
        assigned.append((cid, agent.id))

    async def static() -> Roster:
        return roster

    assigner = Assigner(
        queue, AgentPresence(redis, away_after_s=600), redis, static, skill_wait_s=skill_wait_s,
        on_assigned=on_assigned,
    )  # fmt: skip
    # Start together: each worker says it is ready and waits for the others (a process starts in ~1 s).
    await redis.incr(READY_KEY)
    ready_by = time.monotonic() + READY_WAIT_S  # a worker that never comes does not hold this one forever
    while int(await redis.get(READY_KEY) or 0) < processes and time.monotonic() < ready_by:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    loop = asyncio.create_task(assigner.run_forever(interval_s))
    t0 = time.monotonic()
    try:
        for n, i in enumerate(range(first, first + count)):
            cid, fields = conversation(i)
            await queue.enqueue(cid, reason="requested_human", priority="normal", fields=fields)
            assigner.kick()
            # Paced: handoff n of this process is due (n + 1) / (rate / 2) s after the start.
            await asyncio.sleep(max(0.0, (n + 1) / (rate / 2) - (time.monotonic() - t0)) if rate > 0 else 0)
        # Done when the queue holds everything that is left and a last pass here assigns nothing.
        while True:
            await asyncio.sleep(0.05)
            if await _enqueued(redis) < total:
                continue
            if not await assigner.assign_once():
                break
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await redis.aclose()
    return assigned


async def _enqueued(redis: RedisClient) -> int:
    """Conversations enqueued so far by both workers (waiting or assigned)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.handoff_queue())
        pipe.zcard(keys.handoff_leases())
        waiting, held = await pipe.execute()
    return int(waiting) + int(held)


@dataclass
class Outcome:
    """What a run did, and the checks' inputs."""

    conversations: int
    capacity: int
    assigned: int
    by_process: list[int]
    duplicates: int  # conversations two processes both reported assigning
    over_capacity: list[str]  # agents holding more than their capacity
    unskilled: list[str]  # conversations given to an agent whose skills do not cover them
    assignable_left: list[str]  # queued conversations an agent with room and skills could have taken
    held_matches_items: bool  # every agent's held set agrees with the items' assignee
    wait_ms: list[int]

    def summary(self) -> dict[str, Any]:
        """The numbers, without the per-conversation list."""
        ms = sorted(self.wait_ms)
        pct = (lambda p: ms[min(len(ms) - 1, int(p * len(ms)))]) if ms else (lambda _p: None)
        out = {k: v for k, v in asdict(self).items() if k != "wait_ms"}
        out["queued_to_assigned_ms"] = {
            "p50": statistics.median(ms) if ms else None, "p95": pct(0.95), "max": ms[-1] if ms else None,
        }  # fmt: skip
        return out


async def run(
    url: str,
    capacities: list[int],
    *,
    conversations: int = 200,
    policy: str = "least_busy",
    rate: float = 0.0,
    interval_s: float = 2.0,
    skill_wait_s: float = 600.0,
    processes: int = 2,
) -> Outcome:
    """Flush ``url``'s Redis, set the agents online, run ``processes`` worker processes; check the result."""
    roster = roster_of(capacities, policy)
    redis = client_for(url)
    files = contextlib.ExitStack()
    try:
        await redis.flushdb()
        queue, presence = HandoffQueue(redis, lease_s=600), AgentPresence(redis, away_after_s=600)
        for agent in roster.agents:
            await queue.renew(agent.id)
            await presence.set(agent.id, "online")
        share = conversations // processes
        # Each worker's stderr, shown when it fails; closed with the stack below.
        logs = [files.enter_context(tempfile.TemporaryFile()) for _ in range(processes)]  # noqa: SIM115
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "benchmarks.assignment", "worker", url,
                json.dumps({"capacities": capacities, "policy": policy}),
                str(p * share), str(share if p < processes - 1 else conversations - p * share),
                str(conversations), str(rate), str(interval_s), str(skill_wait_s), str(processes),
                stdout=asyncio.subprocess.PIPE, stderr=logs[p], cwd=ROOT,
            )
            for p in range(processes)
        ]  # fmt: skip

        def failed(why: str) -> RuntimeError:
            tails = []
            for log in logs:
                log.seek(0)
                tails.append(log.read().decode(errors="replace")[-1500:])
            return RuntimeError(
                f"assignment workers {why}: {[p.returncode for p in procs]}\n" + "\n".join(tails)
            )

        try:
            outputs = await asyncio.wait_for(
                asyncio.gather(*(proc.communicate() for proc in procs)), timeout=WORKER_TIMEOUT_S
            )
        except TimeoutError:
            raise failed("timed out") from None
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        if any(proc.returncode != 0 for proc in procs):
            raise failed("failed")
        reported = [json.loads(out.decode()) for out, _err in outputs]
        return await _check(queue, redis, roster, conversations, reported)
    finally:
        files.close()
        await redis.aclose()


async def _check(
    queue: HandoffQueue, redis: RedisClient, roster: Roster, total: int, reported: list[list[list[str]]]
) -> Outcome:
    seen: dict[str, str] = {}
    duplicates = 0
    for pairs in reported:
        for cid, agent in pairs:
            duplicates += cid in seen
            seen[cid] = agent
    agents = {a.id: a for a in roster.agents}
    load = await queue.load(list(agents))
    items = {i.conversation_id: i for i in await queue._items([conversation(i)[0] for i in range(total)])}
    held_ok = True
    for agent_id in agents:
        for cid in await queue.held(agent_id):
            held_ok &= items[cid].assignee == agent_id and seen.get(cid) == agent_id
    held_ok &= all(item.assignee == seen.get(cid) for cid, item in items.items())
    unskilled = [
        cid for cid, agent in seen.items()
        if not agents[agent].skilled_for(items[cid].fields.get("language"), items[cid].fields.get("intent"))
    ]  # fmt: skip
    left = [
        i.conversation_id for i in await queue.waiting(limit=total)
        if any(load[a.id] < a.capacity and a.skilled_for(i.fields.get("language"), i.fields.get("intent"))
               for a in agents.values())
    ]  # fmt: skip
    waits = []
    for cid in seen:
        raw = await redis.hmget(keys.handoff_item(cid), ["waiting_since", "claimed_at"])  # type: ignore[misc,unused-ignore]
        waits.append(int(raw[1] or 0) - int(raw[0] or 0))
    return Outcome(
        conversations=total, capacity=sum(a.capacity for a in agents.values()), assigned=len(seen),
        by_process=[len(p) for p in reported], duplicates=duplicates,
        over_capacity=[a for a, n in load.items() if n > agents[a].capacity], unskilled=unskilled,
        assignable_left=left, held_matches_items=held_ok, wait_ms=waits,
    )  # fmt: skip


def _worker_main(argv: list[str]) -> None:
    url, spec, first, count, total, rate, interval_s, skill_wait_s, processes = argv
    config = json.loads(spec)
    roster = roster_of(config["capacities"], config["policy"])
    pairs = asyncio.run(
        _worker(
            url, roster, int(first), int(count), int(total), float(rate), float(interval_s),
            float(skill_wait_s), int(processes),
        )
    )  # fmt: skip
    print(json.dumps(pairs))


def main() -> None:
    """Run the benchmark and print its numbers."""
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        _worker_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="a Redis (or redis+cluster://) URL; default: an embedded Redis")
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--rate", type=float, default=400.0, help="handoffs per second, both processes")
    parser.add_argument("--interval", type=float, default=2.0, help="the assigner's sweep interval (s)")
    parser.add_argument("--policy", default="least_busy", choices=("capacity", "round_robin", "least_busy"))
    args = parser.parse_args()
    cases = {"capacity 100 < 200": [5, 5, 8, 8, 10, 10, 12, 12, 15, 15], "capacity 250 >= 200": [25] * 10}

    async def go(url: str) -> None:
        for label, capacities in cases.items():
            outcome = await run(
                url, capacities, conversations=args.conversations, policy=args.policy, rate=args.rate,
                interval_s=args.interval,
            )  # fmt: skip
            print(label, json.dumps(outcome.summary(), indent=1))

    if args.redis_url:
        asyncio.run(go(args.redis_url))
        return
    with tempfile.TemporaryDirectory(prefix="sb-bench-assign-") as tmp:
        server = EmbeddedRedis(Path(tmp), persistent=False)
        server.start()
        try:
            asyncio.run(go(server.url))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
