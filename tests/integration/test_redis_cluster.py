"""On a real three-master Redis Cluster: a conversation's keys live in one slot, conversations spread over
the masters, and the multi-key scripts and transactions of a conversation run there.

Uses the test Redis when it is a cluster (``SWITCHBOARD_TEST_REDIS_URL=redis+cluster://...``), else
starts its own for this module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from support import keys
from support.conversation.store import ConversationStore
from support.redis_client import cluster_client, is_cluster, node_url
from tests.redis_cluster import RedisClusterServers
from tests.servers import ServerProcess

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def cluster_url(redis_url: str) -> Iterator[str]:
    if is_cluster(redis_url):
        yield redis_url
        return
    with RedisClusterServers() as cluster:
        yield cluster.url


@pytest.fixture
async def cluster(cluster_url: str) -> AsyncIterator[RedisCluster]:
    client = cluster_client(cluster_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()


async def keys_per_master(client: RedisCluster) -> dict[str, list[bytes]]:
    """Every key, by the master that holds it (asked of each master directly, not through the cluster)."""
    found: dict[str, list[bytes]] = {}
    for node in client.get_primaries():
        direct = aioredis.Redis.from_url(node_url(f"redis://{node.host}:{node.port}"))
        try:
            found[node.name] = await direct.keys("*")
        finally:
            await direct.aclose()
    return found


async def make_conversation(store: ConversationStore, cid: str) -> None:
    assert await store.create_conversation(cid, widget_key="pk_demo", visitor={"id": f"v-{cid}"}, now=NOW)
    first, created = await store.append_customer_message(cid, "m-1", "hello", now=NOW)
    assert created
    await store.record_triage(cid, first.seq, {"intent": "other"})
    await store.add_note(cid, {"text": "note"})


async def test_every_key_of_a_conversation_is_in_one_slot_on_one_master(cluster: RedisCluster) -> None:
    store = ConversationStore(cluster)
    await make_conversation(store, "one")
    mine = keys.conversation_all_keys("one")
    slots = {cluster.keyslot(k) for k in mine}
    assert len(slots) == 1
    by_master = await keys_per_master(cluster)
    holders = {name for name, found in by_master.items() if any(b"{conv:one}" in k for k in found)}
    assert len(holders) == 1
    stored = {k for found in by_master.values() for k in found if b"{conv:one}" in k}
    assert {k.encode() for k in keys.conversation_keys("one")} == stored
    # The multi-key paths of a conversation (one script, one MULTI/EXEC) run on the cluster.
    assert await store.erase("one") == len(keys.conversation_keys("one"))
    assert not any(b"{conv:one}" in k for found in (await keys_per_master(cluster)).values() for k in found)


async def test_conversations_spread_over_every_master(cluster: RedisCluster) -> None:
    store = ConversationStore(cluster)
    cids = [f"spread-{i}" for i in range(24)]
    for cid in cids:
        await make_conversation(store, cid)
    by_master = await keys_per_master(cluster)
    assert len(by_master) == 3
    holding = {
        name: {cid for cid in cids if any(keys.conv_tag(cid).encode() in k for k in found)}
        for name, found in by_master.items()
    }
    assert all(holding.values()), {name: len(c) for name, c in holding.items()}  # every master holds some
    assert sum(len(c) for c in holding.values()) == len(cids)  # and each conversation is on exactly one


def test_readiness_fails_when_any_master_is_down_not_only_the_seed(tmp_path: Path) -> None:
    # Its own cluster: one of its masters is killed. The seed node (the URL's) stays up, so a PING that
    # asks only the node the client talks to by default would still say ready while a third of the
    # conversations cannot be served.
    with RedisClusterServers() as cluster:
        server = ServerProcess(tmp_path / "srv", env={"SWITCHBOARD_REDIS_URL": cluster.url}).start()
        try:
            ready = httpx.get(f"{server.url}/readyz", timeout=30)
            assert (ready.status_code, ready.json()["redis"]) == (200, "ok")
            cluster.kill_node(2)
            after = httpx.get(f"{server.url}/readyz", timeout=30)
            assert after.status_code == 503
            assert after.json()["redis"].startswith("error")
            assert after.json()["status"] == "not ready"
        finally:
            server.kill()
