"""Attacks on secrets, logs and agent accounts, sent the way an attacker would: real HTTP and WebSocket
requests to real ``switchboard serve`` processes.

- A token forged with the placeholder key earlier releases shipped is worthless; the generated key is
  private (0600) and shared by every process on the data directory.
- Nothing in the server's output, at DEBUG, contains a token, a password or the model API key.
- A deactivated agent or a demoted admin loses access at once, on every process (REST 401, socket closed
  1008); an agent cannot reach the account administration.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets

from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests import servers
from tests.integration.test_widget_ws import ORIGIN, WIDGET_KEYS, is_answer, is_triage, triage_reply
from tests.servers import ServerProcess

# What earlier releases signed with when SWITCHBOARD_SECRET_KEY was unset (support/settings.py) and what
# docker-compose.yml passed by default: public, so anyone could sign with it.
PUBLISHED_PLACEHOLDER = "dev-insecure-placeholder-secret-change-me"
PASSWORD = "correct horse battery staple"
RECV_TIMEOUT_S = 15.0
pytestmark = pytest.mark.timeout(120)


def forged_admin_token(secret: str) -> str:
    now = int(time.time())
    claims = {
        "sub": "mallory", "name": "Mallory", "role": "admin", "email": "mallory@evil.test",
        "typ": "agent", "iat": now, "exp": now + 3600,
    }  # fmt: skip
    return jwt.encode(claims, secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(server: ServerProcess, email: str, password: str = PASSWORD) -> str:
    resp = httpx.post(f"{server.url}/api/v1/agent/login", json={"email": email, "password": password})
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["token"]
    return token


def agent_ws_url(server: ServerProcess, token: str) -> str:
    return f"ws://127.0.0.1:{server.port}/api/v1/agent/ws?token={token}"


# --- secrets ---------------------------------------------------------------------------------------


@pytest.fixture
def readme_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """``switchboard serve`` exactly as the README starts it: no secret, embedded Redis and SQLite."""
    proc = ServerProcess(tmp_path / "data").start()
    try:
        yield proc
    finally:
        proc.kill()


def test_an_admin_token_forged_with_the_published_placeholder_is_rejected(
    readme_server: ServerProcess,
) -> None:
    forged = forged_admin_token(PUBLISHED_PLACEHOLDER)
    create = httpx.post(
        f"{readme_server.url}/api/v1/admin/agents",
        json={"email": "mallory@evil.test", "password": "pwned-pwned", "name": "Mallory", "role": "admin"},
        headers=bearer(forged),
    )
    assert create.status_code == 401, create.text
    assert create.json()["error"]["code"] == "unauthorized"
    read = httpx.get(f"{readme_server.url}/api/v1/admin/examples", headers=bearer(forged))
    assert read.status_code == 401


async def test_a_widget_token_forged_with_the_published_placeholder_cannot_open_a_customers_conversation(
    readme_server: ServerProcess,
) -> None:
    victim = httpx.post(
        f"{readme_server.url}/api/v1/widget/sessions",
        json={"widget_key": "pk_demo", "visitor": {"name": "Victim"}},
        headers={"Origin": "http://127.0.0.1:8000"},  # the README's demo key and origin
    ).json()
    now = int(time.time())
    claims = {
        "sub": victim["conversation_id"],
        "wk": "pk_demo",
        "typ": "widget",
        "iat": now,
        "exp": now + 3600,
    }
    forged = jwt.encode(claims, PUBLISHED_PLACEHOLDER, algorithm="HS256")
    url = f"ws://127.0.0.1:{readme_server.port}/api/v1/widget/ws?token={forged}"
    async with websockets.connect(url) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S))
        assert (first["type"], first["code"]) == ("error", "unauthorized")
        assert await asyncio.wait_for(closed_with(ws), 5) == 1008


def test_the_generated_key_is_private_and_a_second_process_on_the_data_dir_reuses_it(
    tmp_path: Path, redis_url: str, redis_client: Any
) -> None:
    data = tmp_path / "data"
    env = {
        "SWITCHBOARD_REDIS_URL": redis_url,
        "SWITCHBOARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}",
    }
    first = ServerProcess(data, env=env).start()
    try:
        key_file = data / "secret_key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert len(key_file.read_text().strip()) >= 32
        servers.create_agent(first.env, data, "ada@example.com", PASSWORD, "Ada")
        token = login(first, "ada@example.com")
        first.terminate()
        second = ServerProcess(data, env=env).start()
        try:
            me = httpx.get(f"{second.url}/api/v1/agent/me", headers=bearer(token))
            assert me.status_code == 200, me.text
            assert me.json()["email"] == "ada@example.com"
        finally:
            second.kill()
    finally:
        first.kill()


# --- logs ------------------------------------------------------------------------------------------


@pytest.fixture
def fake_api(fake: FakeAnthropic) -> FakeAnthropic:
    fake.reset()
    fake.add_rule(lambda body: triage_reply(confidence=0.95) if is_triage(body) else None)
    fake.add_rule(lambda body: Reply(text="Returns are free within 30 days.") if is_answer(body) else None)
    return fake


def server_env(tmp_path: Path, fake: FakeAnthropic, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "ANTHROPIC_API_KEY": "test-key",
        "ANTHROPIC_BASE_URL": fake.url,
        "SWITCHBOARD_REDIS_URL": redis_url,
        "SWITCHBOARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}",
        "SWITCHBOARD_WIDGET_KEYS": WIDGET_KEYS,
        # processes that share tokens share the key (docker-compose.yml shares a generated one)
        "SWITCHBOARD_SECRET_KEY": "test-signing-key-shared-by-both-processes-0123456789",
        "SWITCHBOARD_LLM_REQUESTS_PER_MINUTE": "10000",
        **extra,
    }


async def test_no_token_password_or_api_key_appears_in_the_debug_log(
    tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: Any
) -> None:
    api_key = f"sk-ant-api03-{secrets.token_urlsafe(32)}"
    wrong_password = f"wrong-{secrets.token_hex(8)}"
    env = server_env(tmp_path, fake_api, redis_url, ANTHROPIC_API_KEY=api_key, SWITCHBOARD_LOG_LEVEL="DEBUG")
    server = ServerProcess(tmp_path / "srv", env=env).start()
    try:
        servers.create_agent(server.env, server.data_dir, "ada@example.com", PASSWORD, "Ada")
        agent_token = login(server, "ada@example.com")
        refused = httpx.post(
            f"{server.url}/api/v1/agent/login", json={"email": "ada@example.com", "password": wrong_password}
        )
        assert refused.status_code == 401
        session = httpx.post(
            f"{server.url}/api/v1/widget/sessions",
            json={"widget_key": "pk_test", "visitor": {"name": "Bea"}},
            headers={"Origin": ORIGIN},
        ).json()
        async with websockets.connect(agent_ws_url(server, agent_token)) as agent_ws:
            assert json.loads(await asyncio.wait_for(agent_ws.recv(), RECV_TIMEOUT_S))["type"] == "queue"
            widget_url = f"ws://127.0.0.1:{server.port}/api/v1/widget/ws?token={session['token']}"
            async with websockets.connect(widget_url) as customer:
                await customer.send(json.dumps({"type": "message", "client_id": "m1", "text": "Returns?"}))
                while True:  # the model was called with the API key, and answered
                    frame = json.loads(await asyncio.wait_for(customer.recv(), RECV_TIMEOUT_S))
                    if frame["type"] == "message" and frame["role"] == "assistant":
                        break
        assert fake_api.requests, "the model API was called"
    finally:
        server.terminate()
    log = server.log()
    assert "/api/v1/agent/ws?token=" in log, "the access log is on: the socket requests are in it"
    assert "DEBUG" in log
    for secret in (agent_token, session["token"], PASSWORD, wrong_password, api_key):
        assert secret not in log
    # Not even a recognisable piece of a token (its signature part) is left.
    for token in (agent_token, session["token"]):
        assert token.rsplit(".", 1)[1] not in log


# --- agent accounts --------------------------------------------------------------------------------


@pytest.fixture
def pair(
    tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: Any
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two processes on one Redis and one database, with agents Ada and Bo and admins Root and Rex."""
    env = server_env(tmp_path, fake_api, redis_url)
    for email, name, role in (
        ("ada@example.com", "Ada", "agent"), ("bo@example.com", "Bo", "agent"),
        ("root@example.com", "Root", "admin"), ("rex@example.com", "Rex", "admin"),
    ):  # fmt: skip
        servers.create_agent(env, tmp_path, email, PASSWORD, name, role)
    a = ServerProcess(tmp_path / "a", env=env).start()
    b = ServerProcess(tmp_path / "b", env=env).start()
    try:
        yield a, b
    finally:
        a.kill()
        b.kill()


def agent_id(server: ServerProcess, admin_token: str, email: str) -> str:
    resp = httpx.get(f"{server.url}/api/v1/admin/agents", headers=bearer(admin_token))
    assert resp.status_code == 200, resp.text
    return next(str(a["id"]) for a in resp.json() if a["email"] == email)


async def closed_with(ws: websockets.ClientConnection) -> int | None:
    """Read until the server closes the socket; its close code."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S)
    except websockets.ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


async def test_a_deactivated_agent_loses_rest_and_socket_on_every_process_at_once(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = pair
    ada = login(a, "ada@example.com")
    root = login(b, "root@example.com")
    async with websockets.connect(agent_ws_url(a, ada)) as ada_ws:
        assert json.loads(await asyncio.wait_for(ada_ws.recv(), RECV_TIMEOUT_S))["type"] == "queue"
        ada_id = agent_id(b, root, "ada@example.com")
        patched = httpx.patch(
            f"{b.url}/api/v1/admin/agents/{ada_id}", json={"active": False}, headers=bearer(root)
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["active"] is False
        # the next request on the other process is refused, with no wait for the token to lapse
        me = httpx.get(f"{a.url}/api/v1/agent/me", headers=bearer(ada))
        assert me.status_code == 401
        assert me.json()["error"]["code"] == "unauthorized"
        assert await asyncio.wait_for(closed_with(ada_ws), 5) == 1008
    with pytest.raises(websockets.InvalidStatus):  # and cannot come back with the same token
        async with websockets.connect(agent_ws_url(a, ada)):
            pass
    refused = httpx.post(
        f"{a.url}/api/v1/agent/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert refused.status_code == 401


async def test_a_demoted_admins_token_no_longer_reaches_admin_routes(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = pair
    root = login(a, "root@example.com")
    rex = login(b, "rex@example.com")
    rex_id = agent_id(a, root, "rex@example.com")
    demoted = httpx.patch(
        f"{a.url}/api/v1/admin/agents/{rex_id}", json={"role": "agent"}, headers=bearer(root)
    )
    assert demoted.status_code == 200, demoted.text
    assert demoted.json()["role"] == "agent"
    stale = httpx.get(f"{b.url}/api/v1/admin/agents", headers=bearer(rex))
    assert stale.status_code == 401
    # logged in again, Rex is an agent: admin routes answer 403
    again = login(b, "rex@example.com")
    assert httpx.get(f"{b.url}/api/v1/admin/agents", headers=bearer(again)).status_code == 403


def test_an_agent_token_cannot_list_or_change_accounts(pair: tuple[ServerProcess, ServerProcess]) -> None:
    a, _b = pair
    ada = login(a, "ada@example.com")
    listed = httpx.get(f"{a.url}/api/v1/admin/agents", headers=bearer(ada))
    assert listed.status_code == 403
    assert listed.json()["error"]["code"] == "forbidden"
    root = login(a, "root@example.com")
    bo_id = agent_id(a, root, "bo@example.com")
    promoted = httpx.patch(
        f"{a.url}/api/v1/admin/agents/{bo_id}", json={"role": "admin"}, headers=bearer(ada)
    )
    assert promoted.status_code == 403
    listing = httpx.get(f"{a.url}/api/v1/admin/agents", headers=bearer(root)).json()
    assert next(x for x in listing if x["id"] == bo_id)["role"] == "agent"
