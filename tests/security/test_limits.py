"""Abuse limits, attacked as an attacker would: real `switchboard serve` processes on one real Redis, the
fake model API, real HTTP and WebSocket clients connecting from distinct loopback addresses.

Addresses: 127.0.0.1 is the site's reverse proxy (``SWITCHBOARD_TRUSTED_PROXIES``); the attacker
connects directly from 127.0.0.2; a real customer or agent from 127.0.0.3. Expected counts come from the
limits' shipped defaults (each test reads them from the settings class), so the tests prove the defaults.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import websockets
from limits import parse_many

from support.conversation.store import ConversationStore
from support.settings import LimitSettings
from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests.servers import ServerProcess, create_agent

ORIGIN = "http://shop.test"
PROXY = "127.0.0.1"
ATTACKER = "127.0.0.2"
CUSTOMER = "127.0.0.3"
RECV_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 60.0  # a burst of hundreds of requests on a busy CI box
AGENT_EMAIL, AGENT_PASSWORD = "ada@shop.test", "correct horse battery staple"


def default_allowance(name: str) -> int:
    """How many hits a burst gets under a limit's shipped default: the smallest of its windows."""
    spec = LimitSettings.model_fields[name].default
    return min(item.amount for item in parse_many(spec))


def triage_reply() -> Reply:
    return Reply(
        tool_use={
            "name": "record_triage",
            "input": {
                "intent": "returns_refunds", "urgency": "normal", "sentiment": "neutral", "language": "en",
                "wants_human": False, "confidence": 0.95, "reason": "covered by the returns policy",
            },
        }
    )  # fmt: skip


def is_triage(body: dict[str, Any]) -> bool:
    return any(t.get("name") == "record_triage" for t in body.get("tools") or [])


@pytest.fixture
def fake_api(fake: FakeAnthropic) -> FakeAnthropic:
    fake.reset()
    fake.add_rule(lambda body: triage_reply() if is_triage(body) else None)
    return fake


class Servers:
    """Starts `switchboard serve` processes sharing one Redis and one database; kills them all."""

    def __init__(self, tmp_path: Path, fake: FakeAnthropic, redis_url: str) -> None:
        self.env = {
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": fake.url,
            "SWITCHBOARD_REDIS_URL": redis_url,
            "SWITCHBOARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}",
            "SWITCHBOARD_WIDGET_KEYS": json.dumps({"pk_test": [ORIGIN]}),
            "SWITCHBOARD_TRUSTED_PROXIES": json.dumps([PROXY]),
            "SWITCHBOARD_SECRET_KEY": "limits-test-secret-limits-test-secret",
            # The production defaults (test servers otherwise get roomy per-address limits).
            **{
                f"SWITCHBOARD_LIMIT_{name.upper()}": str(LimitSettings.model_fields[name].default)
                for name in ("sessions_per_ip", "model_turns_per_ip", "login_attempts_per_ip")
            },
        }
        self.tmp_path = tmp_path
        self.started: list[ServerProcess] = []

    def start(self, **extra: str) -> ServerProcess:
        data = self.tmp_path / f"server-{len(self.started)}"
        server = ServerProcess(data, env={**self.env, **extra}).start()
        self.started.append(server)
        return server

    def kill(self) -> None:
        for server in self.started:
            server.kill()


@pytest.fixture
def servers(tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: Any) -> Iterator[Servers]:
    group = Servers(tmp_path, fake_api, redis_url)
    try:
        yield group
    finally:
        group.kill()


def http_from(address: str) -> httpx.AsyncClient:
    """An HTTP client whose connections come from ``address``."""
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(local_address=address), timeout=HTTP_TIMEOUT_S
    )


async def open_session(http: httpx.AsyncClient, server: ServerProcess, **headers: str) -> httpx.Response:
    return await http.post(
        f"{server.url}/api/v1/widget/sessions",
        json={"widget_key": "pk_test", "visitor": {"name": "Visitor"}},
        headers={"Origin": ORIGIN, **headers},
    )


@pytest.fixture
async def ws_pool() -> AsyncIterator[list[websockets.ClientConnection]]:
    """Every socket a test opens, closed after it."""
    sockets: list[websockets.ClientConnection] = []
    try:
        yield sockets
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


async def connect(
    pool: list[websockets.ClientConnection], server: ServerProcess, token: str, address: str
) -> websockets.ClientConnection:
    ws = await websockets.connect(
        f"ws://127.0.0.1:{server.port}/api/v1/widget/ws?token={token}", local_addr=(address, 0)
    )
    pool.append(ws)
    return ws


async def recv(ws: websockets.ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S))
    return frame


async def send_message(ws: websockets.ClientConnection, client_id: str, text: str) -> dict[str, Any]:
    """Send a customer message; the server's answer to it: its ``ack`` or its ``error``."""
    await ws.send(json.dumps({"type": "message", "client_id": client_id, "text": text}))
    while True:
        frame = await recv(ws)
        if frame["type"] in ("ack", "error") and frame.get("client_id") == client_id:
            return frame


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60  # every default's shortest window is a minute


async def customer_messages(redis_client: aioredis.Redis, conversation_id: str) -> list[str]:
    events = await ConversationStore(redis_client).events_after(conversation_id, 0)
    return [e.text for e in events if e.role == "customer"]


async def test_a_burst_of_200_session_requests_from_one_address_is_cut_off_with_429_and_retry_after(
    servers: Servers,
) -> None:
    server = servers.start()
    allowed = default_allowance("sessions_per_ip")
    async with http_from(ATTACKER) as http:
        responses = await asyncio.gather(*(open_session(http, server) for _ in range(200)))
    assert sum(r.status_code == 201 for r in responses) == allowed
    refused = [r for r in responses if r.status_code != 201]
    assert len(refused) == 200 - allowed
    for response in refused:
        assert_rate_limited(response)
    # A customer at another address, reaching us through the trusted proxy, is not affected.
    async with http_from(PROXY) as http:
        forwarded = await open_session(http, server, **{"X-Forwarded-For": "198.51.100.23"})
    assert forwarded.status_code == 201, forwarded.text


async def test_forged_x_forwarded_for_from_an_untrusted_peer_does_not_escape_the_per_address_limit(
    servers: Servers,
) -> None:
    server = servers.start()
    allowed = default_allowance("sessions_per_ip")
    rng = random.Random(15)
    statuses = []
    async with http_from(ATTACKER) as http:
        for _ in range(allowed + 10):
            forged = ", ".join(
                f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.7" for _ in range(2)
            )
            statuses.append((await open_session(http, server, **{"X-Forwarded-For": forged})).status_code)
    assert statuses == [201] * allowed + [429] * 10


async def test_many_sessions_from_one_address_cannot_push_another_customer_into_the_queue(
    servers: Servers, fake_api: FakeAnthropic, redis_client: aioredis.Redis,
    ws_pool: list[websockets.ClientConnection],
) -> None:  # fmt: skip
    # The shipped model budget (50 requests a minute, two per bot turn) and the shipped limits.
    fake_api.add_rule(lambda body: None if is_triage(body) else Reply(text="Returns are free for 30 days."))
    server = servers.start()
    async with http_from(ATTACKER) as http:
        sessions = [(await open_session(http, server)) for _ in range(60)]
    grants = [r.json() for r in sessions if r.status_code == 201]
    assert len(grants) == default_allowance("sessions_per_ip")

    async def one_message(index: int, grant: dict[str, Any]) -> dict[str, Any]:
        ws = await connect(ws_pool, server, grant["token"], ATTACKER)
        return await send_message(ws, f"spam-{index}", f"Tell me everything about returns, part {index}")

    answers = await asyncio.gather(*(one_message(i, g) for i, g in enumerate(grants)))
    acked = [a for a in answers if a["type"] == "ack"]
    refused = [a for a in answers if a["type"] != "ack"]
    assert len(acked) == default_allowance("model_turns_per_ip")
    assert {(a["type"], a["code"]) for a in refused} == {("error", "rate_limited")}
    assert all(1 <= a["retry_after"] <= 60 for a in refused)
    assert len(refused) == len(grants) - len(acked)
    refused_index = int(refused[0]["client_id"].removeprefix("spam-"))
    assert await customer_messages(redis_client, grants[refused_index]["conversation_id"]) == []

    # A real customer at another address still gets a streamed bot answer, not a place in the queue.
    async with http_from(CUSTOMER) as http:
        mine = (await open_session(http, server)).json()
    ws = await connect(ws_pool, server, mine["token"], CUSTOMER)
    assert (await send_message(ws, "real-1", "Can I return my tent?"))["type"] == "ack"
    frames = []
    while not frames or not (frames[-1]["type"] == "message" and frames[-1]["role"] == "assistant"):
        frames.append(await recv(ws))
    assert any(f["type"] == "delta" for f in frames)
    assert frames[-1]["text"] == "Returns are free for 30 days."
    assert [f for f in frames if f["type"] == "status"] == []


async def test_thirty_wrong_passwords_in_a_burst_get_429_after_the_limit_on_two_processes(
    servers: Servers, tmp_path: Path
) -> None:
    create_agent(servers.env, tmp_path / "cli", AGENT_EMAIL, AGENT_PASSWORD, "Ada")
    both = [servers.start(), servers.start()]
    allowed = default_allowance("login_attempts_per_account")
    async with http_from(ATTACKER) as http:
        guesses = [
            await http.post(
                f"{both[i % 2].url}/api/v1/agent/login", json={"email": AGENT_EMAIL, "password": f"guess-{i}"}
            )
            for i in range(30)
        ]
        assert [r.status_code for r in guesses] == [401] * allowed + [429] * (30 - allowed)
        for response in guesses[allowed:]:
            assert_rate_limited(response)
        # Now even the right password is refused to the guessing address...
        right = {"email": AGENT_EMAIL, "password": AGENT_PASSWORD}
        assert_rate_limited(await http.post(f"{both[0].url}/api/v1/agent/login", json=right))
    # ...while the agent, from its own address, logs in.
    async with http_from(CUSTOMER) as http:
        agent = await http.post(f"{both[1].url}/api/v1/agent/login", json=right)
    assert agent.status_code == 200, agent.text


async def test_guessing_many_accounts_from_one_address_gets_429_after_the_address_limit(
    servers: Servers,
) -> None:
    server = servers.start()
    allowed = default_allowance("login_attempts_per_ip")
    async with http_from(ATTACKER) as http:
        statuses = [
            (
                await http.post(
                    f"{server.url}/api/v1/agent/login",
                    json={"email": f"agent{i}@shop.test", "password": "Winter2026!"},
                )
            ).status_code
            for i in range(allowed + 3)
        ]
    assert statuses == [401] * allowed + [429] * 3


async def test_messages_over_the_conversation_limit_are_refused_across_two_sockets_on_two_processes(
    servers: Servers, redis_client: aioredis.Redis, ws_pool: list[websockets.ClientConnection]
) -> None:
    # Six, so neither socket's own bucket (a burst of 10) can be what refuses the seventh.
    limit = {"SWITCHBOARD_LIMIT_MESSAGES_PER_CONVERSATION": "6/minute"}
    first, second = servers.start(**limit), servers.start(**limit)
    async with http_from(CUSTOMER) as http:
        grant = (await open_session(http, first)).json()
    sockets = [
        await connect(ws_pool, first, grant["token"], CUSTOMER),
        await connect(ws_pool, second, grant["token"], CUSTOMER),
    ]
    for i in range(6):
        assert (await send_message(sockets[i % 2], f"m-{i}", f"Question number {i}"))["type"] == "ack"
    over = await send_message(sockets[1], "m-6", "Question number 6")
    assert (over["type"], over["code"]) == ("error", "rate_limited")
    assert 1 <= over["retry_after"] <= 60
    assert "conversation" in over["message"]  # the shared limit, not the socket's own bucket
    assert await customer_messages(redis_client, grant["conversation_id"]) == [
        f"Question number {i}" for i in range(6)
    ]
