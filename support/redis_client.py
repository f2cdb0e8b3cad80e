"""Redis clients from a Switchboard Redis URL: one server, or a Redis Cluster.

``SWITCHBOARD_REDIS_URL`` takes ``redis://``, ``rediss://`` and ``unix://`` for one server, and
``redis+cluster://host:port`` (or ``rediss+cluster://``) for a Redis Cluster: the host is a seed node,
the client discovers the others and follows slot moves itself. Every key of one conversation carries the
hash tag ``{conv:<id>}`` (:mod:`support.keys`), so the scripts and MULTI/EXEC blocks that touch several of
them run unchanged on a cluster.

Pub/sub stays plain ``PUBLISH``/``SUBSCRIBE`` on a cluster: a cluster broadcasts every ``PUBLISH`` to
all its nodes, so a process's one subscriber connection (to any node) hears every conversation, and the
append script keeps publishing atomically with the write. Sharded pub/sub (``SPUBLISH``) would route each
message only to its slot's shard, but needs Redis 7 (the embedded server is 6.2), a subscriber
connection per shard, and the scripts to tell the two modes apart; worth it only when publish traffic
times the number of nodes loads the cluster bus.
"""

from __future__ import annotations

from typing import Any, TypeAlias
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

RedisClient: TypeAlias = aioredis.Redis | RedisCluster
"""What services are given: either client offers the commands, scripts and pipelines they use."""

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def as_text(value: bytes | str) -> str:
    """A Redis reply as text, whichever ``decode_responses`` the caller's client uses."""
    return value.decode() if isinstance(value, bytes) else value


def is_cluster(url: str) -> bool:
    """True for a ``redis+cluster://`` or ``rediss+cluster://`` URL."""
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def node_url(url: str) -> str:
    """The plain ``redis://`` (or ``rediss://``) URL of a cluster URL's seed node; other URLs unchanged."""
    scheme, sep, rest = url.partition("://")
    return CLUSTER_SCHEMES.get(scheme, scheme) + sep + rest


def cluster_client(url: str, **kwargs: Any) -> RedisCluster:
    """A :class:`RedisCluster` seeded from a cluster URL (not yet connected: the first command does)."""
    return RedisCluster.from_url(node_url(url), **kwargs)


async def ping(client: RedisClient) -> None:
    """PING the server, or on a cluster every master: each serves a share of the conversations, so one
    that does not answer is a process that cannot serve some of its customers (redis-py's plain PING on
    a cluster asks one node only)."""
    if isinstance(client, RedisCluster):
        await client.ping(target_nodes=RedisCluster.PRIMARIES)
    else:
        await client.ping()


def single_client(url: str, **kwargs: Any) -> aioredis.Redis:
    """A client of one server; for a cluster URL, of its seed node only (a pub/sub subscriber, which
    hears every node's ``PUBLISH`` on any one of them)."""
    return aioredis.Redis.from_url(node_url(url), **kwargs)
