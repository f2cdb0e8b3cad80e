"""The agent queue against real Redis: order, atomic claims, capacity, leases, transfer, release."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from handoff.queue import ClaimResult, HandoffQueue
from tests.redis_cluster import redis_client_for


async def test_priority_then_first_come_first_served(redis_client: aioredis.Redis) -> None:
    queue = HandoffQueue(redis_client)
    assert await queue.enqueue("c1", reason="low_confidence", priority="normal") == 2  # a new handoff
    await asyncio.sleep(0.005)
    await queue.enqueue("c2", reason="low_confidence", priority="low")
    await asyncio.sleep(0.005)
    await queue.enqueue("c3", reason="urgent", priority="urgent")
    await asyncio.sleep(0.005)
    await queue.enqueue("c4", reason="low_confidence", priority="normal")
    waiting = await queue.waiting()
    assert [i.conversation_id for i in waiting] == ["c3", "c1", "c4", "c2"]
    assert [i.position for i in waiting] == [1, 2, 3, 4]
    assert await queue.position("c4") == 3
    # enqueueing again keeps the place; a more urgent reason moves it up within its waiting time
    assert await queue.enqueue("c1", reason="low_confidence", priority="normal") == 1  # already waiting
    assert await queue.position("c1") == 2
    await queue.enqueue("c2", reason="not_helped", priority="high")
    assert [i.conversation_id for i in await queue.waiting()] == ["c3", "c2", "c1", "c4"]


async def test_racing_claims_from_separate_clients_have_exactly_one_winner(redis_url: str) -> None:
    clients = [redis_client_for(redis_url) for _ in range(8)]
    try:
        await clients[0].flushdb()
        queues = [HandoffQueue(c) for c in clients]
        await queues[0].enqueue("conv", reason="low_confidence", priority="normal")
        results = await asyncio.gather(*(q.claim("conv", f"agent{i}", 3) for i, q in enumerate(queues)))
        assert sorted(results).count(ClaimResult.CLAIMED) == 1
        assert results.count(ClaimResult.TAKEN) == 7
        winner = f"agent{results.index(ClaimResult.CLAIMED)}"
        item = await queues[0].item("conv")
        assert item is not None
        assert item.assignee == winner
        assert item.position is None
        assert await queues[0].waiting() == []
        # the winner claiming again is harmless
        assert await queues[1].claim("conv", winner, 3) is ClaimResult.ALREADY_MINE
    finally:
        for c in clients:
            await c.aclose()


async def test_capacity_is_enforced(redis_client: aioredis.Redis) -> None:
    queue = HandoffQueue(redis_client)
    for cid in ("a", "b", "c"):
        await queue.enqueue(cid, reason="low_confidence", priority="normal")
    assert await queue.claim("a", "ada", 2) is ClaimResult.CLAIMED
    assert await queue.claim("b", "ada", 2) is ClaimResult.CLAIMED
    assert await queue.claim("c", "ada", 2) is ClaimResult.OVER_CAPACITY
    assert await queue.position("c") == 1  # still waiting, untouched
    assert await queue.held("ada") == ["a", "b"]
    assert await queue.claim("nope", "ada", 5) is ClaimResult.NOT_QUEUED


async def test_lapsed_lease_returns_the_conversation_to_its_place(redis_client: aioredis.Redis) -> None:
    queue = HandoffQueue(redis_client, lease_s=0.3)
    await queue.enqueue("first", reason="low_confidence", priority="normal")
    await asyncio.sleep(0.005)
    await queue.enqueue("second", reason="low_confidence", priority="normal")
    assert await queue.claim("first", "ada", 3) is ClaimResult.CLAIMED
    assert await queue.expire() == []  # lease still running
    await asyncio.sleep(0.4)
    assert await queue.expire() == [("first", "ada")]
    assert await queue.expire() == []  # each lapse is reported once
    assert [i.conversation_id for i in await queue.waiting()] == ["first", "second"]
    item = await queue.item("first")
    assert item is not None
    assert item.assignee is None
    assert item.lapsed_from == "ada"
    assert await queue.held("ada") == []


async def test_renew_keeps_a_present_agents_claims(redis_client: aioredis.Redis) -> None:
    queue = HandoffQueue(redis_client, lease_s=0.3)
    await queue.enqueue("c", reason="low_confidence", priority="normal")
    await queue.claim("c", "ada", 3)
    for _ in range(4):
        await asyncio.sleep(0.15)
        assert await queue.renew("ada") == 1
        assert await queue.expire() == []
    assert "ada" in await queue.online(within_s=5)


async def test_release_transfer_finish(redis_client: aioredis.Redis) -> None:
    queue = HandoffQueue(redis_client)
    await queue.enqueue("c", reason="low_confidence", priority="normal")
    await queue.claim("c", "ada", 3)
    assert await queue.release("c", "bo") is False  # not bo's
    assert await queue.release("c", "ada") is True
    assert await queue.position("c") == 1
    await queue.claim("c", "ada", 3)
    await queue.enqueue("c", reason="low_confidence", priority="normal")  # held: not re-queued
    assert await queue.position("c") is None
    assert await queue.transfer("c", "ada", "bo", 0) == -2  # bo has no room
    assert await queue.transfer("c", "ada", "bo", 1) == 1
    assert await queue.held("ada") == []
    assert await queue.held("bo") == ["c"]
    assert await queue.transfer("c", "ada", "cy", 3) == 0  # ada no longer holds it
    assert await queue.finish("c", "ada") is False
    assert await queue.finish("c", "bo") is True
    assert await queue.item("c") is None
    assert await queue.held("bo") == []
