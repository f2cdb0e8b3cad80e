"""Automatic assignment under concurrency: 200 queued conversations, 10 agents with capacities and skills,
two worker processes each running the assigner (handoff/assign.py) against the same Redis (single, or a
Redis Cluster with SWITCHBOARD_TEST_REDIS_CLUSTER=1)."""

from __future__ import annotations

import pytest

from benchmarks.assignment import run

pytestmark = pytest.mark.timeout(90)


async def test_two_processes_assign_each_conversation_once_within_capacity_and_skills(redis_url: str) -> None:
    # Capacity 100 for 200 conversations arriving at 200/s over both processes: every agent ends full,
    # nobody over, each process assigning what its own handoffs and its sweeps found.
    short = await run(
        redis_url, [5, 5, 8, 8, 10, 10, 12, 12, 15, 15], policy="least_busy", rate=200, interval_s=0.2
    )
    assert short.duplicates == 0
    assert short.over_capacity == []
    assert short.unskilled == []
    assert short.held_matches_items
    assert short.assigned == 100  # every slot filled: the mix leaves something for every agent
    assert short.assignable_left == []  # nothing an agent with room and skills could take stays queued
    assert all(n > 0 for n in short.by_process)  # both processes took part
    # Capacity 250, all 200 handed off at once (both processes' passes race over the same queue): every
    # conversation assigned, exactly once.
    ample = await run(redis_url, [25] * 10, policy="capacity", rate=0, interval_s=0.2)
    assert (ample.assigned, ample.duplicates, ample.over_capacity, ample.unskilled) == (200, 0, [], [])
    assert ample.held_matches_items
