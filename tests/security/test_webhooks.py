"""Outbound webhooks, attempted as an attacker: the admin API without the right token, a secret looked for
where it must not be, a delivery forged or tampered with on its way, replay of another endpoint's delivery,
and endpoints pointed into the service's own network (at creation, and at delivery after the name moved)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from support.db.engine import make_engine, session_factory
from support.jobs import JobEngine
from support.runtime import webhook_http_client
from support.settings import Settings, WebhookSettings
from support.testing.fake_anthropic import FakeAnthropic
from support.webhooks import WebhookService
from support.webhooks.urls import UnsafeWebhookUrl, check_webhook_url, refused_address
from tests import servers
from tests.integration.test_widget_ws import connect, open_session, start_server
from tests.servers import ServerProcess, agent_auth, wait_for
from tests.webhook_receiver import Received, Receiver

PASSWORD = "correct horse battery staple"
EVENTS = ["conversation.handed_off"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def server(tmp_path: Path, fake: FakeAnthropic, redis_url: str, redis_client: Any) -> Iterator[ServerProcess]:
    fake.reset()
    proc = start_server(tmp_path / "srv", fake, redis_url)
    for email, name, role in (("ada@example.com", "Ada", "agent"), ("root@example.com", "Root", "admin")):
        servers.create_agent(proc.env, proc.data_dir, email, PASSWORD, name, role)
    try:
        yield proc
    finally:
        proc.kill()


def hooks_url(server: ServerProcess) -> str:
    return f"{server.url}/api/v1/admin/webhooks"


async def hand_off_a_chat(server: ServerProcess) -> str:
    session = open_session(server)
    async for customer in connect(server, session["token"]):
        await customer.send({"type": "request_human"})
        await customer.until(lambda f: f["type"] == "status" and f["state"] == "queued")
    cid: str = session["conversation_id"]
    return cid


def admins_only(server: ServerProcess, receiver: Receiver) -> None:
    """No token or a forged one: 401; an agent's: 403; on every route, and nothing changes."""
    root = agent_auth(server, "root@example.com", PASSWORD)
    made = httpx.post(hooks_url(server), json={"url": receiver.url, "events": EVENTS}, headers=root).json()
    base = hooks_url(server)
    calls = [
        ("POST", base, {"url": receiver.url, "events": EVENTS}),
        ("GET", base, None),
        ("DELETE", f"{base}/{made['id']}", None),
        ("GET", f"{base}/{made['id']}/deliveries", None),
        ("POST", f"{base}/{made['id']}/deliveries/anything/replay", None),
    ]
    ada = agent_auth(server, "ada@example.com", PASSWORD)
    forged = {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyb290In0.c2lnbmF0dXJl"}
    for method, url, body in calls:
        for headers, status, code in (({}, 401, "unauthorized"), (forged, 401, "unauthorized"),
                                      (ada, 403, "forbidden")):  # fmt: skip
            resp = httpx.request(method, url, json=body, headers=headers)
            assert (resp.status_code, resp.json()["error"]["code"]) == (status, code), (method, url)
    listed = httpx.get(base, headers=root).json()
    assert [(e["id"], e["active"]) for e in listed] == [(made["id"], True)]  # nothing was created or changed


async def test_the_secret_is_shown_once_and_a_tampered_or_forged_delivery_fails_verification(
    server: ServerProcess, receiver: Receiver
) -> None:
    root = agent_auth(server, "root@example.com", PASSWORD)
    made = httpx.post(hooks_url(server), json={"url": receiver.url, "events": EVENTS}, headers=root)
    assert made.status_code == 201, made.text
    created = made.json()
    assert set(created) == {"id", "secret", "url", "events"}
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    receiver.secret = secret
    cid = await hand_off_a_chat(server)
    got = (await wait_for(lambda: receiver.snapshot()))[0]
    assert got.verified
    assert json.loads(got.body)["data"]["conversation_id"] == cid

    listed = httpx.get(hooks_url(server), headers=root)
    deliveries = httpx.get(f"{hooks_url(server)}/{created['id']}/deliveries", headers=root)
    assert listed.status_code == deliveries.status_code == 200
    secret_key = secret.removeprefix("whsec_")
    for text in (listed.text, deliveries.text, server.log()):
        assert secret_key not in text
    assert "secret" not in listed.json()[0]
    assert_tampering_fails(created, got, root, server, receiver)


def assert_tampering_fails(
    created: dict[str, Any], got: Received, root: dict[str, str], server: ServerProcess, receiver: Receiver
) -> None:
    """A delivery changed on its way, or signed with another endpoint's secret, does not verify."""
    hook = Webhook(created["secret"])
    tampered = got.body.replace(b'"reason":"', b'"reason":"x')
    assert tampered != got.body
    attempts: list[tuple[bytes, dict[str, str]]] = [
        (tampered, got.headers),  # the body changed on the way
        (got.body, {**got.headers, "webhook-id": "msg_other"}),  # the signature moved to another message
        (got.body, {**got.headers, "webhook-timestamp": str(int(got.headers["webhook-timestamp"]) - 1)}),
        (got.body, {**got.headers, "webhook-signature": "v1," + "A" * 44}),
        (got.body, {k: v for k, v in got.headers.items() if k != "webhook-signature"}),
    ]
    for body, headers in attempts:
        with pytest.raises(WebhookVerificationError):
            hook.verify(body, headers)
    # Signed with another endpoint's secret: refused too.
    other = httpx.post(hooks_url(server), json={"url": receiver.url, "events": EVENTS}, headers=root).json()
    with pytest.raises(WebhookVerificationError):
        Webhook(other["secret"]).verify(got.body, got.headers)


async def test_a_delivery_cannot_be_replayed_through_another_endpoint(
    server: ServerProcess, receiver: Receiver
) -> None:
    root = agent_auth(server, "root@example.com", PASSWORD)
    mine = httpx.post(hooks_url(server), json={"url": receiver.url, "events": EVENTS}, headers=root).json()
    theirs = httpx.post(
        hooks_url(server), json={"url": receiver.url, "events": ["rating.created"]}, headers=root
    ).json()
    await hand_off_a_chat(server)
    await wait_for(lambda: receiver.snapshot())
    log = httpx.get(f"{hooks_url(server)}/{mine['id']}/deliveries", headers=root).json()
    delivery_id = log[0]["id"]
    for endpoint_id in (theirs["id"], "nope"):
        resp = httpx.post(f"{hooks_url(server)}/{endpoint_id}/deliveries/{delivery_id}/replay", headers=root)
        assert (resp.status_code, resp.json()["error"]["code"]) == (404, "not_found")
    ok = await wait_for(
        lambda: (
            httpx.get(f"{hooks_url(server)}/{mine['id']}/deliveries", headers=root).json()[0]["status"]
            == "delivered"
        )
    )
    assert ok
    resp = httpx.post(f"{hooks_url(server)}/{mine['id']}/deliveries/{delivery_id}/replay", headers=root)
    assert resp.status_code == 202, resp.text
    await wait_for(lambda: len(receiver.snapshot()) == 2)


BAD_ENDPOINTS: list[tuple[dict[str, Any], str]] = [
    ({"url": "https://hooks.example.com/x", "events": ["ticket.exploded"]}, "invalid_request"),
    ({"url": "https://hooks.example.com/x", "events": []}, "invalid_request"),
    ({"url": "https://hooks.example.com/x", "events": "ticket.created"}, "invalid_request"),
    ({"url": "file:///etc/passwd", "events": EVENTS}, "url_refused"),
    ({"url": "gopher://127.0.0.1:6379/_FLUSHALL", "events": EVENTS}, "url_refused"),
    ({"url": "https://user:pw@hooks.example.com/x", "events": EVENTS}, "url_refused"),
    ({"url": "http://hooks.example.com:99999/x", "events": EVENTS}, "url_refused"),
    ({"url": "https://hooks.example.com/x\r\nX-Evil: 1", "events": EVENTS}, "url_refused"),
    ({"url": "https://" + "a" * 2100 + ".example.com/", "events": EVENTS}, "url_refused"),
]


def test_bad_endpoints_get_typed_errors_and_only_admins_use_the_api(
    server: ServerProcess, receiver: Receiver
) -> None:
    root = agent_auth(server, "root@example.com", PASSWORD)
    for body, code in BAD_ENDPOINTS:
        resp = httpx.post(hooks_url(server), json=body, headers=root)
        assert (resp.status_code, resp.json()["error"]["code"]) == (400, code), (body, resp.text)
    assert httpx.get(hooks_url(server), headers=root).json() == []
    admins_only(server, receiver)


def test_production_refuses_endpoints_inside_the_network(
    tmp_path: Path, fake: FakeAnthropic, redis_url: str, redis_client: Any
) -> None:
    fake.reset()
    proc = start_server(tmp_path / "prod", fake, redis_url, SWITCHBOARD_ENVIRONMENT="production")
    try:
        servers.create_agent(proc.env, proc.data_dir, "root@example.com", PASSWORD, "Root", "admin")
        root = agent_auth(proc, "root@example.com", PASSWORD)
        for url in (
            "http://127.0.0.1:6379/", "http://10.0.0.5/hook", "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://localhost:8000/", "http://0.0.0.0/",
            "http://192.168.1.1/", "http://172.16.0.1/", "http://100.64.0.1/", "http://2130706433/",
        ):  # fmt: skip
            resp = httpx.post(hooks_url(proc), json={"url": url, "events": EVENTS}, headers=root)
            assert (resp.status_code, resp.json()["error"]["code"]) == (400, "url_refused"), url
        assert httpx.get(hooks_url(proc), headers=root).json() == []
    finally:
        proc.kill()


async def test_an_endpoint_whose_address_became_private_gets_nothing(
    db_url: str, redis_url: str, redis_client: aioredis.Redis, receiver: Receiver
) -> None:
    # Created while allowed (as a name that resolved to a public address might be), then delivered by a
    # process that refuses private addresses: the check at delivery time stops it before any request.
    settings = WebhookSettings(max_attempts=1)
    engine = make_engine(db_url)
    jobs = JobEngine(redis_url)
    http = webhook_http_client(Settings(webhooks=settings))
    sessions = session_factory(engine)
    lenient = WebhookService(sessions, redis_client, jobs, http, settings, allow_private=True)
    strict = WebhookService(sessions, redis_client, jobs, http, settings, allow_private=False)
    strict.register_jobs(jobs)
    worker = asyncio.create_task(jobs.run_worker())
    try:
        created = await lenient.create_endpoint(receiver.url, EVENTS, created_by=None)
        await strict.emit("conversation.handed_off", {"conversation_id": "c1"})

        async def failed() -> Any:
            log = await strict.deliveries(created.id)
            return log if log and log[0].status == "failed" else None

        async with asyncio.timeout(10):
            while not (log := await failed()):  # noqa: ASYNC110 - polls the delivery log
                await asyncio.sleep(0.05)
        assert log[0].attempt_log[0].status_code is None
        assert "non-public" in (log[0].last_error or "")
        assert receiver.snapshot() == []
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await jobs.aclose()
        await http.aclose()
        await engine.dispose()


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.31.255.255", "192.168.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
     "::1", "fe80::1%eth0", "fc00::1", "::ffff:10.0.0.1", "224.0.0.1", "ff02::1", "240.0.0.1"],
)  # fmt: skip
def test_non_public_addresses_are_refused(address: str) -> None:
    assert refused_address(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700:4700::1111", "1.1.1.1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not refused_address(address)


async def test_a_refused_url_is_refused_even_when_private_addresses_are_allowed() -> None:
    for url in ("ftp://example.com/", "javascript:alert(1)", "http:///nohost", "http://u:p@127.0.0.1/"):
        with pytest.raises(UnsafeWebhookUrl):
            await check_webhook_url(url, allow_private=True)
    await check_webhook_url("http://127.0.0.1:8080/hook", allow_private=True)
