"""The rate-limit service on real Redis servers: an embedded one (a unix:// URL, as on the embedded
defaults) and one on TCP (redis://), since ``limits`` is handed our URL and our connection pool. Both are
started here, so the unix variant runs whatever Redis the rest of the suite is given."""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from support.conversation.store import ConversationStore
from support.embedded_redis import EmbeddedRedis, redis_server_binary
from support.errors import RateLimited, Unauthorized
from support.ratelimit import RateLimits
from support.settings import LimitSettings
from tests.servers import free_port

# Every key ``limits`` writes for us: our prefix, then one hash tag around the whole limit identity.
KEY_SHAPE = re.compile(rb"^sb:rl:\{[^{}]+\}(/-1)?$")
SETTINGS = LimitSettings(
    sessions_per_ip="2/minute;5/hour",
    messages_per_conversation="5/minute",
    model_turns_per_conversation="1/minute",
    model_turns_per_ip="10/minute",
    login_attempts_per_account="2/minute",
    login_attempts_per_ip="100/minute",
)


@pytest.fixture(scope="module")
def unix_redis_url() -> Iterator[str]:
    """A real Redis server on a unix socket (the embedded server, as `switchboard serve` starts it)."""
    with tempfile.TemporaryDirectory(prefix="sb-test-redis-unix-") as tmp:
        server = EmbeddedRedis(Path(tmp), persistent=False)
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture(scope="module")
def tcp_redis_url() -> Iterator[str]:
    """A second real Redis server, listening on TCP."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="sb-test-redis-tcp-") as tmp:
        proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    redis.Redis(port=port).ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture(params=["unix", "tcp"])
async def limits(
    request: pytest.FixtureRequest, unix_redis_url: str, tcp_redis_url: str
) -> AsyncIterator[tuple[RateLimits, aioredis.Redis]]:
    url = unix_redis_url if request.param == "unix" else tcp_redis_url
    assert url.startswith("unix://" if request.param == "unix" else "redis://")
    client = aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(url, max_connections=20))
    await client.flushdb()
    try:
        store = ConversationStore(client)
        yield RateLimits.over_redis(client, url, SETTINGS, store=store, model_turns=True), client
    finally:
        await client.flushdb()
        await client.aclose()


async def test_the_limit_is_counted_in_redis_under_hash_tagged_keys(
    limits: tuple[RateLimits, aioredis.Redis],
) -> None:
    service, client = limits
    await service.new_session("203.0.113.9")
    await service.new_session("203.0.113.9")
    with pytest.raises(RateLimited) as refused:
        await service.new_session("203.0.113.9")
    assert refused.value.retry_after_s is not None
    assert 1 <= refused.value.retry_after_s <= 60
    assert refused.value.limit == "sessions_per_ip"
    await service.new_session("203.0.113.10")  # another address has its own count
    stored = await client.keys("*")
    assert stored
    assert all(KEY_SHAPE.match(key) for key in stored), stored


async def test_messages_to_a_queued_conversation_cost_no_model_turn(
    limits: tuple[RateLimits, aioredis.Redis],
) -> None:
    service, client = limits
    store = ConversationStore(client)
    for cid in ("bot", "queued"):
        await store.create_conversation(cid, widget_key="pk", visitor={}, now=datetime.now(UTC))
    await store.set_state("queued", state="queued")
    await service.customer_message("bot", "203.0.113.9")
    with pytest.raises(RateLimited, match="assistant"):  # one model turn a minute per conversation
        await service.customer_message("bot", "203.0.113.9")
    for _ in range(5):  # only the conversation's message limit applies while it waits for a human
        await service.customer_message("queued", "203.0.113.9")
    with pytest.raises(RateLimited, match="conversation"):
        await service.customer_message("queued", "203.0.113.9")


async def test_a_successful_login_clears_its_accounts_failures_but_not_the_limit(
    limits: tuple[RateLimits, aioredis.Redis],
) -> None:
    service, client = limits

    async def attempt(ok: bool) -> None:
        async with service.login_attempt("Ada@Shop.test", "203.0.113.9"):
            if not ok:
                raise Unauthorized("wrong email or password")

    with pytest.raises(Unauthorized):
        await attempt(ok=False)
    await attempt(ok=True)  # the second attempt of two allowed: counted, then cleared by the success
    with pytest.raises(Unauthorized):
        await attempt(ok=False)
    with pytest.raises(Unauthorized):
        await attempt(ok=False)
    with pytest.raises(RateLimited):
        await attempt(ok=True)
    assert not any(b"ada" in key.lower() for key in await client.keys("*"))  # no e-mail address in Redis
