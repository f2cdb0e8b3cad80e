"""The shared per-process subscriber (support/conversation/fanout.py) against a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from support import keys
from support.conversation.fanout import CLOSE_SERVICE_RESTART, CLOSE_TRY_AGAIN, Fanout, Listener
from support.conversation.store import ConversationStore
from support.embedded_redis import EmbeddedRedis
from support.redis_client import single_client

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
FanoutFactory = Callable[..., Any]


@pytest.fixture
async def make_fanout(redis_url: str, redis_client: aioredis.Redis) -> AsyncIterator[FanoutFactory]:
    """Fanouts on their own no-retry clients (as open_runtime makes them), each with a unique client name."""
    made: list[tuple[Fanout, aioredis.Redis]] = []
    store = ConversationStore(redis_client)

    async def frames_after(cid: str, after: int) -> list[dict[str, Any]]:
        return [e.to_frame() for e in await store.events_after(cid, after)]

    async def factory(**kwargs: Any) -> Fanout:
        name = f"sb-fanout-test-{uuid.uuid4().hex[:8]}"
        client = single_client(
            redis_url, decode_responses=False, retry=Retry(NoBackoff(), 0), client_name=name
        )
        fanout = Fanout(client, replay=frames_after, **kwargs)
        await fanout.start()
        made.append((fanout, client))
        return fanout

    try:
        yield factory
    finally:
        for fanout, client in made:
            await fanout.aclose()
            await client.aclose()


@pytest.fixture
async def node_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the node the fanouts subscribe on (on a cluster: the seed node). PUBLISH replies,
    PUBSUB NUMSUB and CLIENT LIST count that node's own subscribers, so they are asked there."""
    client = single_client(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def numsub(client: aioredis.Redis, cid: str) -> int:
    channel = keys.conv_channel(cid)
    result = await client.pubsub_numsub(channel)
    return int(result[0][1])


async def next_frame(listener: Listener) -> dict[str, Any]:
    return await asyncio.wait_for(anext(listener), 5)


def client_name(fanout: Fanout) -> str:
    return str(fanout.redis.connection_pool.connection_kwargs["client_name"])


async def pubsub_clients(client: aioredis.Redis, name: str) -> list[dict[str, Any]]:
    clients: list[dict[str, Any]] = await client.client_list()
    return [c for c in clients if c.get("name") == name]


async def test_many_conversations_share_one_connection(
    make_fanout: FanoutFactory, redis_client: aioredis.Redis, node_client: aioredis.Redis
) -> None:
    fanout: Fanout = await make_fanout()
    store = ConversationStore(node_client)  # publishes count the subscribers of the fanout's node
    cids = [f"many-{i}" for i in range(40)]
    listeners = [await fanout.subscribe(cid) for cid in cids]
    # Subscriptions are confirmed when subscribe returns: a publish right after it is delivered.
    for i, cid in enumerate(cids):
        assert await store.publish(cid, {"type": "delta", "text": f"to {i}"}) == 1
    for i, listener in enumerate(listeners):
        assert await next_frame(listener) == {"type": "delta", "text": f"to {i}"}
    subscribed = [c for c in await pubsub_clients(node_client, client_name(fanout)) if int(c["sub"]) > 0]
    assert len(subscribed) == 1
    assert int(subscribed[0]["sub"]) == len(cids)
    assert fanout.channels == len(cids)
    for listener in listeners:
        listener.release()


async def test_unsubscribes_on_the_last_release_only(
    make_fanout: FanoutFactory, redis_client: aioredis.Redis, node_client: aioredis.Redis
) -> None:
    fanout: Fanout = await make_fanout()
    store = ConversationStore(node_client)  # publishes count the subscribers of the fanout's node
    first, second = await fanout.subscribe("rc"), await fanout.subscribe("rc")
    assert await numsub(node_client, "rc") == 1  # one Redis subscription for both sockets
    first.release()
    first.release()  # idempotent: does not drop the other socket's reference
    assert await store.publish("rc", {"type": "delta", "text": "still here"}) == 1
    assert await next_frame(second) == {"type": "delta", "text": "still here"}
    second.release()
    for _ in range(50):
        if await numsub(node_client, "rc") == 0:
            break
        await asyncio.sleep(0.02)
    assert await numsub(node_client, "rc") == 0
    assert fanout.channels == 0
    third = await fanout.subscribe("rc")  # subscribing again after the last release works
    assert await store.publish("rc", {"type": "delta", "text": "again"}) == 1
    assert await next_frame(third) == {"type": "delta", "text": "again"}
    third.release()


async def test_two_processes_each_receive_every_event(
    make_fanout: FanoutFactory, redis_client: aioredis.Redis, node_client: aioredis.Redis
) -> None:
    # Two fanouts on separate connections stand for two server processes holding sockets of one conversation.
    one, two = await make_fanout(), await make_fanout()
    a, b = await one.subscribe("shared"), await two.subscribe("shared")
    assert await ConversationStore(node_client).publish("shared", {"type": "delta", "text": "x"}) == 2
    assert await next_frame(a) == {"type": "delta", "text": "x"}
    assert await next_frame(b) == {"type": "delta", "text": "x"}
    a.release()
    b.release()


async def test_a_slow_client_is_closed_with_1013_and_does_not_stall_the_others(
    make_fanout: FanoutFactory, redis_client: aioredis.Redis
) -> None:
    fanout: Fanout = await make_fanout(max_frames=5)
    store = ConversationStore(redis_client)
    slow, fast = await fanout.subscribe("slow"), await fanout.subscribe("slow")
    received: list[dict[str, Any]] = []
    for i in range(20):
        await store.publish("slow", {"type": "delta", "text": str(i)})
        received.append(await next_frame(fast))  # fast reads as it goes; slow never reads
    assert [f["text"] for f in received] == [str(i) for i in range(20)]
    with pytest.raises(StopAsyncIteration):
        await next_frame(slow)
    assert slow.close_code == CLOSE_TRY_AGAIN
    assert fast.close_code is None
    fast.release()


async def kill_pubsub_connection(node_client: aioredis.Redis, fanout: Fanout) -> None:
    victims = [c for c in await pubsub_clients(node_client, client_name(fanout)) if int(c["sub"]) > 0]
    assert len(victims) == 1
    await node_client.client_kill_filter(_id=victims[0]["id"])


async def wait_for_reconnect(fanout: Fanout, count: int) -> None:
    for _ in range(200):
        if fanout.reconnects >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the fanout did not reconnect")


async def test_a_broken_connection_is_resubscribed_and_missed_events_are_replayed(
    make_fanout: FanoutFactory, redis_client: aioredis.Redis, node_client: aioredis.Redis
) -> None:
    fanout: Fanout = await make_fanout()
    store = ConversationStore(redis_client)
    await store.create_conversation("gap", widget_key="pk", visitor={}, now=NOW)
    listener = await fanout.subscribe("gap")
    first, _ = await store.append_customer_message("gap", "m1", "hello", now=NOW)
    await store.publish("gap", first.to_frame())
    assert (await next_frame(listener))["seq"] == first.seq

    await kill_pubsub_connection(node_client, fanout)
    # Published while nobody of this process listens: lost on the wire, but persisted in the stream.
    second, _ = await store.append_customer_message("gap", "m2", "are you there?", now=NOW)
    await store.publish("gap", second.to_frame())
    await wait_for_reconnect(fanout, 1)

    replayed = await next_frame(listener)
    assert (replayed["seq"], replayed["text"]) == (second.seq, "are you there?")
    assert await numsub(node_client, "gap") == 1  # resubscribed
    third, _ = await store.append_customer_message("gap", "m3", "live again", now=NOW)
    await store.publish("gap", second.to_frame())  # a late duplicate is dropped by seq
    await store.publish("gap", third.to_frame())
    assert (await next_frame(listener))["seq"] == third.seq
    listener.release()


async def test_after_a_gap_a_listener_that_saw_no_event_is_told_to_resume(
    make_fanout: FanoutFactory, redis_client: aioredis.Redis, node_client: aioredis.Redis
) -> None:
    fanout: Fanout = await make_fanout()
    listener = await fanout.subscribe("fresh")
    await kill_pubsub_connection(node_client, fanout)
    await wait_for_reconnect(fanout, 1)
    with pytest.raises(StopAsyncIteration):
        await next_frame(listener)
    assert listener.close_code == CLOSE_SERVICE_RESTART
    # A socket subscribing after the reconnect is unaffected.
    later = await fanout.subscribe("fresh")
    assert await ConversationStore(node_client).publish("fresh", {"type": "delta", "text": "ok"}) == 1
    assert await next_frame(later) == {"type": "delta", "text": "ok"}
    later.release()
    listener.release()


async def test_a_redis_restart_is_survived_and_missed_events_are_replayed(tmp_path: Path) -> None:
    # A private embedded Redis (AOF on), stopped and started again under a live fanout.
    server = EmbeddedRedis(tmp_path / "redis", persistent=True)
    await asyncio.to_thread(server.start)
    client = aioredis.Redis.from_url(server.url, decode_responses=False)
    pubsub_client = aioredis.Redis.from_url(server.url, decode_responses=False, retry=Retry(NoBackoff(), 0))
    store = ConversationStore(client)

    async def frames_after(cid: str, after: int) -> list[dict[str, Any]]:
        return [e.to_frame() for e in await store.events_after(cid, after)]

    fanout = Fanout(pubsub_client, replay=frames_after)
    await fanout.start()
    try:
        await store.create_conversation("rs", widget_key="pk", visitor={}, now=NOW)
        listener = await fanout.subscribe("rs")
        first, _ = await store.append_customer_message("rs", "m1", "before", now=NOW)
        await store.publish("rs", first.to_frame())
        assert (await next_frame(listener))["seq"] == first.seq

        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        # Written after the restart, possibly before the fanout resubscribed: must still reach the socket.
        second, _ = await store.append_customer_message("rs", "m2", "after the restart", now=NOW)
        await store.publish("rs", second.to_frame())
        await wait_for_reconnect(fanout, 1)
        frame = await next_frame(listener)
        assert (frame["seq"], frame["text"]) == (second.seq, "after the restart")
        listener.release()
    finally:
        await fanout.aclose()
        await pubsub_client.aclose()
        await client.aclose()
        await asyncio.to_thread(server.stop)
