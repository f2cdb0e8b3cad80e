"""Outbound webhooks on real parts: SQLite (and PostgreSQL), Redis, the job engine's worker, and a real
receiver on 127.0.0.1 that verifies every delivery with the Standard Webhooks reference library. The last
test runs the whole service and has the chat's handoff, resolution and rating arrive as events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlmodel import col, select, update

from support.db.engine import make_engine, session_factory
from support.db.models import WebhookDelivery
from support.jobs import JobEngine
from support.runtime import webhook_http_client
from support.settings import Settings, WebhookSettings
from support.testing.fake_anthropic import FakeAnthropic
from support.webhooks import WebhookService
from tests import servers
from tests.integration.test_widget_ws import connect, open_session, start_server
from tests.servers import ServerProcess, agent_auth, wait_for
from tests.webhook_receiver import Receiver

FAST = WebhookSettings(backoff_base_s=0.2, backoff_max_s=0.4, max_attempts=3, timeout_s=3)
PASSWORD = "correct horse battery staple"


class Hooks:
    """A webhook service over the test database and Redis, with a job worker started on demand."""

    def __init__(self, db_url: str, redis_url: str, redis: aioredis.Redis, settings: WebhookSettings) -> None:
        self.engine = make_engine(db_url)
        self.sessions = session_factory(self.engine)
        self.jobs = JobEngine(redis_url)
        self.http = webhook_http_client(Settings(webhooks=settings))
        self.service = WebhookService(
            self.sessions, redis, self.jobs, self.http, settings, allow_private=True
        )
        self.service.register_jobs(self.jobs)
        self.worker: asyncio.Task[None] | None = None

    def start_worker(self) -> None:
        self.worker = asyncio.create_task(self.jobs.run_worker())

    async def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            await asyncio.gather(self.worker, return_exceptions=True)
        await self.jobs.aclose()
        await self.http.aclose()
        await self.engine.dispose()

    async def deliveries(self) -> list[WebhookDelivery]:
        async with self.sessions() as session:
            return list((await session.execute(select(WebhookDelivery))).scalars())


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
async def hooks(db_url: str, redis_url: str, redis_client: aioredis.Redis) -> AsyncIterator[Hooks]:
    made = Hooks(db_url, redis_url, redis_client, FAST)
    try:
        yield made
    finally:
        await made.close()


async def test_a_delivery_answered_500_is_retried_and_the_log_shows_both_attempts(
    hooks: Hooks, receiver: Receiver
) -> None:
    receiver.answers = [500]
    created = await hooks.service.create_endpoint(receiver.url, ["conversation.handed_off"], created_by=None)
    receiver.secret = created.secret
    hooks.start_worker()
    await hooks.service.emit("conversation.handed_off", {"conversation_id": "c1", "reason": "asked"})

    got = await wait_for(lambda: len(receiver.snapshot()) >= 2 and receiver.snapshot())
    assert [r.answered for r in got] == [500, 200]
    assert all(r.verified for r in got)  # every attempt is signed afresh and verifies
    assert got[0].body == got[1].body  # byte for byte the stored body
    assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"]
    assert got[0].headers["content-type"] == "application/json"
    body = json.loads(got[1].body)
    assert body["type"] == "conversation.handed_off"
    assert body["data"] == {"conversation_id": "c1", "reason": "asked"}
    assert body["timestamp"].endswith("Z")

    async def delivered() -> list[Any]:
        log = await hooks.service.deliveries(created.id)
        return log if log and log[0].status == "delivered" else []

    log = await until_async(delivered)
    assert len(log) == 1
    assert log[0].attempts == 2
    assert [a.status_code for a in log[0].attempt_log] == [500, 200]
    assert log[0].attempt_log[0].error == "HTTP 500"
    assert log[0].last_status_code == 200
    assert log[0].last_error is None
    assert log[0].message_id == got[0].headers["webhook-id"]


async def until_async(predicate: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    async with asyncio.timeout(timeout_s):
        while not (value := await predicate()):  # noqa: ASYNC110 - polls the delivery log
            await asyncio.sleep(0.05)
        return value


async def test_a_failed_delivery_replays_with_the_same_webhook_id_and_a_valid_new_signature(
    hooks: Hooks, receiver: Receiver
) -> None:
    receiver.answers = [503, 503, 503]  # every attempt of the first round fails
    created = await hooks.service.create_endpoint(receiver.url, ["rating.created"], created_by=None)
    receiver.secret = created.secret
    hooks.start_worker()
    await hooks.service.emit("rating.created", {"conversation_id": "c1", "score": 2})

    async def failed() -> list[Any]:
        log = await hooks.service.deliveries(created.id)
        return log if log and log[0].status == "failed" else []

    log = await until_async(failed)
    assert log[0].attempts == FAST.max_attempts
    assert [a.status_code for a in log[0].attempt_log] == [503] * FAST.max_attempts
    first = receiver.snapshot()
    assert len(first) == FAST.max_attempts

    await hooks.service.replay(created.id, log[0].id)
    again = await wait_for(lambda: len(receiver.snapshot()) > len(first) and receiver.snapshot()[-1])
    assert again.answered == 200
    assert again.verified
    assert again.headers["webhook-id"] == first[0].headers["webhook-id"]
    assert again.body == first[0].body

    async def delivered() -> list[Any]:
        log = await hooks.service.deliveries(created.id)
        return log if log[0].status == "delivered" else []

    replayed = (await until_async(delivered))[0]
    assert replayed.attempts == 1  # a new round
    assert [a.status_code for a in replayed.attempt_log] == [503, 503, 503, 200]  # the whole history


async def test_an_event_reported_twice_under_one_event_id_is_delivered_once(
    hooks: Hooks, receiver: Receiver
) -> None:
    created = await hooks.service.create_endpoint(receiver.url, ["rating.created"], created_by=None)
    receiver.secret = created.secret
    for _ in range(2):
        await hooks.service.emit("rating.created", {"conversation_id": "c1", "score": 5}, event_id="r:c1:7")
    await hooks.service.emit("rating.created", {"conversation_id": "c1", "score": 5}, event_id="r:c1:9")
    rows = await hooks.deliveries()
    assert len(rows) == 2
    assert len({r.message_id for r in rows}) == 2
    hooks.start_worker()
    got = await wait_for(lambda: len(receiver.snapshot()) >= 2 and receiver.snapshot())
    await asyncio.sleep(0.3)
    assert len(receiver.snapshot()) == 2
    assert all(r.verified for r in got)


async def test_only_active_endpoints_subscribed_to_the_event_get_a_delivery(
    hooks: Hooks, receiver: Receiver
) -> None:
    wanted = await hooks.service.create_endpoint(
        receiver.url, ["conversation.resolved", "conversation.resolved"], created_by=None
    )
    assert wanted.events == ["conversation.resolved"]
    other = await hooks.service.create_endpoint(receiver.url, ["rating.created"], created_by=None)
    gone = await hooks.service.create_endpoint(receiver.url, ["conversation.resolved"], created_by=None)
    await hooks.service.deactivate(gone.id)
    await hooks.service.emit("conversation.resolved", {"conversation_id": "c1", "resolved_by": "a1"})
    rows = await hooks.deliveries()
    assert [r.endpoint_id for r in rows] == [wanted.id]
    assert await hooks.service.deliveries(other.id) == []
    listed = {e.id: e for e in await hooks.service.list_endpoints()}
    assert listed[gone.id].active is False
    assert listed[wanted.id].active is True


async def test_an_endpoint_created_in_another_process_is_seen_within_a_second(
    hooks: Hooks, receiver: Receiver, redis_client: aioredis.Redis
) -> None:
    other = WebhookService(hooks.sessions, redis_client, hooks.jobs, hooks.http, FAST, allow_private=True)
    await other.emit("conversation.resolved", {"conversation_id": "c0"})  # caches "nobody listens"
    created = await hooks.service.create_endpoint(receiver.url, ["conversation.resolved"], created_by=None)
    await asyncio.sleep(1.05)
    await other.emit("conversation.resolved", {"conversation_id": "c1"})
    rows = await hooks.deliveries()
    assert [(r.endpoint_id, json.loads(r.payload)["data"]) for r in rows] == [
        (created.id, {"conversation_id": "c1"})
    ]


async def test_a_delivery_whose_job_was_lost_is_sent_by_the_sweep(
    hooks: Hooks, receiver: Receiver, redis_client: aioredis.Redis
) -> None:
    created = await hooks.service.create_endpoint(receiver.url, ["conversation.handed_off"], created_by=None)
    receiver.secret = created.secret
    await hooks.service.emit("conversation.handed_off", {"conversation_id": "c1"})
    await redis_client.flushdb()  # the queued job is gone, as with a Redis that lost it
    async with hooks.sessions() as session:
        await session.execute(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.endpoint_id) == created.id)
            .values(next_attempt_at=(await hooks.deliveries())[0].created_at.replace(year=2000))
        )
        await session.commit()
    hooks.start_worker()
    await asyncio.sleep(0.5)
    assert receiver.snapshot() == []  # nothing is queued any more
    assert await hooks.service.sweep() == 1
    got = await wait_for(lambda: receiver.snapshot())
    assert got[0].verified


async def test_emit_never_raises_into_the_caller(tmp_path: Path, redis_url: str, redis_client: Any) -> None:
    # A database without the webhook tables: every query fails; the caller's work must go on.
    broken = Hooks(f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}", redis_url, redis_client, FAST)
    try:
        await broken.service.emit("conversation.resolved", {"conversation_id": "c1"})
        await broken.service.emit("no.such.event", {})
    finally:
        await broken.close()


# --- the running service ----------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path, fake: FakeAnthropic, redis_url: str, redis_client: Any) -> Iterator[ServerProcess]:
    fake.reset()
    proc = start_server(
        tmp_path / "srv", fake, redis_url,
        SWITCHBOARD_WEBHOOKS_BACKOFF_BASE_S="0.2", SWITCHBOARD_WEBHOOKS_BACKOFF_MAX_S="0.4",
    )  # fmt: skip
    for email, name, role in (("ada@example.com", "Ada", "agent"), ("root@example.com", "Root", "admin")):
        servers.create_agent(proc.env, proc.data_dir, email, PASSWORD, name, role)
    try:
        yield proc
    finally:
        proc.kill()


async def test_handoff_resolution_and_rating_of_a_chat_arrive_as_signed_events(
    server: ServerProcess, receiver: Receiver
) -> None:
    root = agent_auth(server, "root@example.com", PASSWORD)
    ada = agent_auth(server, "ada@example.com", PASSWORD)
    made = httpx.post(
        f"{server.url}/api/v1/admin/webhooks",
        json={
            "url": receiver.url,
            "events": ["conversation.handed_off", "conversation.resolved", "rating.created"],
        },
        headers=root,
    )
    assert made.status_code == 201, made.text
    receiver.secret = made.json()["secret"]
    session = open_session(server)
    cid = session["conversation_id"]
    async for customer in connect(server, session["token"]):
        await customer.send({"type": "request_human"})
        await customer.until(lambda f: f["type"] == "status" and f["state"] == "queued")
        api = f"{server.url}/api/v1/agent/conversations/{cid}"
        assert httpx.post(f"{api}/claim", headers=ada).status_code == 200
        await customer.until(lambda f: f["type"] == "status" and f["state"] == "agent")
        assert httpx.post(f"{api}/resolve", headers=ada).status_code == 200
        await customer.until(lambda f: f["type"] == "rating_request")
        await customer.send({"type": "rating", "score": 4, "comment": "quick"})
        got = await wait_for(lambda: len(receiver.snapshot()) >= 3 and receiver.snapshot())
    assert all(r.verified for r in got)
    events = {body["type"]: body["data"] for body in (json.loads(r.body) for r in got)}
    assert events["conversation.handed_off"]["conversation_id"] == cid
    assert events["conversation.handed_off"]["reason"]
    assert events["conversation.resolved"]["conversation_id"] == cid
    assert events["conversation.resolved"]["resolved_by"]
    assert events["rating.created"] == {
        "conversation_id": cid, "score": 4, "comment": "quick", "resolution": "agent",
    }  # fmt: skip
