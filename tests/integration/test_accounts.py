"""Agent account administration: the admin API over a real server, the rules in the service on real
databases, the token generation on real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from handoff.agents import NO_GENERATION, AgentService, identity
from handoff.tokens import AgentTokens
from support import keys
from support.db.engine import session_factory
from support.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from support.testing.fake_anthropic import FakeAnthropic
from tests import servers
from tests.integration.test_widget_ws import connect, open_session, start_server
from tests.servers import ServerProcess, agent_auth

PASSWORD = "correct horse battery staple"


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


def login(server: ServerProcess, email: str) -> dict[str, str]:
    return agent_auth(server, email, PASSWORD)


def accounts(server: ServerProcess, admin: dict[str, str]) -> dict[str, dict[str, Any]]:
    resp = httpx.get(f"{server.url}/api/v1/admin/agents", headers=admin)
    assert resp.status_code == 200, resp.text
    return {a["email"]: a for a in resp.json()}


def test_admins_list_every_account_and_change_name_and_capacity(server: ServerProcess) -> None:
    root = login(server, "root@example.com")
    ada = accounts(server, root)["ada@example.com"]
    assert set(ada) == {"id", "email", "name", "role", "capacity", "active", "created_at"}
    changed = httpx.patch(
        f"{server.url}/api/v1/admin/agents/{ada['id']}", json={"name": "Ada L.", "capacity": 5}, headers=root
    )
    assert changed.status_code == 200, changed.text
    assert changed.json() | {"created_at": None} == ada | {
        "name": "Ada L.",
        "capacity": 5,
        "created_at": None,
    }
    # a name or capacity change does not sign the agent out
    assert (
        httpx.get(f"{server.url}/api/v1/agent/me", headers=login(server, "ada@example.com")).status_code
        == 200
    )
    httpx.patch(f"{server.url}/api/v1/admin/agents/{ada['id']}", json={"active": False}, headers=root)
    listed = accounts(server, root)
    assert listed["ada@example.com"]["active"] is False  # inactive accounts are listed too
    assert "password_hash" not in json.dumps(listed)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "invalid_request"),
        ({"role": "owner"}, 400, "invalid_request"),
        ({"capacity": 0}, 400, "invalid_request"),
        ({"name": "   "}, 400, "invalid_request"),
        ({"active": "nope"}, 400, "invalid_request"),
    ],
)
def test_bad_changes_get_typed_errors(
    server: ServerProcess, body: dict[str, Any], status: int, code: str
) -> None:
    root = login(server, "root@example.com")
    ada = accounts(server, root)["ada@example.com"]
    resp = httpx.patch(f"{server.url}/api/v1/admin/agents/{ada['id']}", json=body, headers=root)
    assert resp.status_code == status
    assert resp.json()["error"]["code"] == code
    assert accounts(server, root)["ada@example.com"] == ada


def test_an_unknown_agent_is_404(server: ServerProcess) -> None:
    resp = httpx.patch(
        f"{server.url}/api/v1/admin/agents/nobody",
        json={"active": False},
        headers=login(server, "root@example.com"),
    )
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("change", [{"active": False}, {"role": "agent"}])
def test_the_last_active_admin_cannot_lock_everyone_out(
    server: ServerProcess, change: dict[str, Any]
) -> None:
    root = login(server, "root@example.com")
    me = accounts(server, root)["root@example.com"]
    resp = httpx.patch(f"{server.url}/api/v1/admin/agents/{me['id']}", json=change, headers=root)
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "conflict"
    assert accounts(server, root)["root@example.com"] == me  # and the token still works


async def test_a_deactivated_agents_conversations_go_back_to_the_queue(server: ServerProcess) -> None:
    root, ada = login(server, "root@example.com"), login(server, "ada@example.com")
    session = open_session(server)
    cid = session["conversation_id"]
    async for customer in connect(server, session["token"]):
        await customer.send({"type": "request_human"})
        await customer.until(lambda f: f["type"] == "status" and f["state"] == "queued")
        claimed = httpx.post(f"{server.url}/api/v1/agent/conversations/{cid}/claim", headers=ada)
        assert claimed.status_code == 200, claimed.text
        await customer.until(lambda f: f["type"] == "status" and f["state"] == "agent")
        ada_id = accounts(server, root)["ada@example.com"]["id"]
        resp = httpx.patch(f"{server.url}/api/v1/admin/agents/{ada_id}", json={"active": False}, headers=root)
        assert resp.status_code == 200, resp.text
        back = await customer.until(lambda f: f["type"] == "status")
        assert back[-1]["state"] == "queued"
    queue = httpx.get(f"{server.url}/api/v1/agent/queue", headers=root).json()
    assert [item["conversation_id"] for item in queue] == [cid]


# --- the service, on SQLite and PostgreSQL ---------------------------------------------------------


async def test_admins_demoting_each_other_at_once_leave_one_admin(db_engine: AsyncEngine) -> None:
    service = AgentService(session_factory(db_engine))
    admins = [
        await service.create(
            email=f"admin{i}@example.com", password=PASSWORD, name=f"Admin {i}", role="admin"
        )
        for i in range(6)
    ]
    results = await asyncio.gather(
        *(service.update(admin.id, role="agent") for admin in admins), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["Conflict"] + ["tuple"] * 5
    left = [a for a in await service.everyone() if a.role == "admin" and a.active]
    assert len(left) == 1


async def test_deactivating_or_changing_role_bumps_the_generation_and_a_rename_does_not(
    db_engine: AsyncEngine,
) -> None:
    service = AgentService(session_factory(db_engine))
    await service.create(email="root@example.com", password=PASSWORD, name="Root", role="admin")
    ada = await service.create(email="ada@example.com", password=PASSWORD, name="Ada")
    renamed, revoked = await service.update(ada.id, name="Ada L.", capacity=4)
    assert (renamed.token_generation, revoked) == (0, False)
    promoted, revoked = await service.update(ada.id, role="admin")
    assert (promoted.token_generation, revoked) == (1, True)
    gone, revoked = await service.update(ada.id, active=False)
    assert (gone.token_generation, revoked) == (2, True)
    assert await service.generation(ada.id) == NO_GENERATION
    with pytest.raises(NotFound):
        await service.update("nobody", active=False)
    with pytest.raises(ValidationFailed):
        await service.update(ada.id)
    with pytest.raises(Conflict):
        await service.update((await service.authenticate("root@example.com", PASSWORD)).id, active=False)


async def test_a_stale_cache_fill_never_lowers_the_generation(
    db_engine: AsyncEngine, redis_client: aioredis.Redis
) -> None:
    service = AgentService(session_factory(db_engine))
    await service.create(email="root@example.com", password=PASSWORD, name="Root", role="admin")
    ada = await service.create(email="ada@example.com", password=PASSWORD, name="Ada")
    tokens = AgentTokens(redis_client, service)
    before = identity(ada)
    assert await tokens.current(ada.id) == 0  # filled from SQL on a miss
    changed, _ = await service.update(ada.id, role="admin")
    await tokens.revoked(ada.id, changed.token_generation)
    await tokens._store(ada.id, 0)  # a reader that loaded generation 0 before the change, writing late
    assert await tokens.current(ada.id) == 1
    with pytest.raises(Unauthorized):
        await tokens.check(before)
    await tokens.check(identity(changed))
    assert 0 < await redis_client.ttl(keys.agent_token_generation(ada.id)) <= 3600
