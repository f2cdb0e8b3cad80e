"""Integration keys, attacked as an attacker would: real `switchboard serve` processes, the real CLI, real
Redis and SQLite, real HTTP from distinct loopback addresses.

- A key is shown once: the creation response and the CLI's last line; lists never carry the key or its
  hash, and the database holds only the hash.
- Only admins manage keys; agent and widget tokens are not keys; a revoked key is refused at once.
- Guessing keys from one address is cut off with 429 (a right guess included), other addresses go on.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from limits import parse_many

from support.settings import LimitSettings
from tests import servers
from tests.servers import ServerProcess, agent_auth, run_cli

PASSWORD = "correct horse battery staple"
ATTACKER = "127.0.0.2"
INTEGRATOR = "127.0.0.3"
pytestmark = pytest.mark.timeout(120)


def start(tmp_path: Path, redis_url: str, **extra: str) -> ServerProcess:
    """A server (offline: no model is needed here) with an admin and an agent account."""
    env = {
        "SWITCHBOARD_REDIS_URL": redis_url,
        "SWITCHBOARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}",
        "SWITCHBOARD_SECRET_KEY": "integration-keys-test-secret-0123456789",
        **extra,
    }
    for email, name, role in (("root@example.test", "Root", "admin"), ("ada@example.test", "Ada", "agent")):
        servers.create_agent(env, tmp_path / "cli", email, PASSWORD, name, role)
    return ServerProcess(tmp_path / "srv", env=env).start()


@pytest.fixture
def server(tmp_path: Path, redis_url: str, redis_client: Any) -> Iterator[ServerProcess]:
    proc = start(tmp_path, redis_url)
    try:
        yield proc
    finally:
        proc.kill()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def whoami(server: ServerProcess, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(f"{server.url}/api/v1/integration-keys/me", headers=headers or {})


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="switchboard"')


def stored_keys(server: ServerProcess) -> list[dict[str, Any]]:
    path = server.env["SWITCHBOARD_DATABASE_URL"].split("///", 1)[1]
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM integration_key")]


def keys_api(server: ServerProcess) -> str:
    return f"{server.url}/api/v1/admin/integration-keys"


def test_the_cli_prints_the_key_alone_on_its_last_line_and_it_works_until_revoked_by_the_cli(
    server: ServerProcess, tmp_path: Path
) -> None:
    made = run_cli(
        ["create-integration-key", "--name", "contact form", "--scopes", "tickets:read"],
        env=server.env, cwd=tmp_path / "cli",
    )  # fmt: skip
    assert made.returncode == 0, made.stdout
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("sbk_")
    assert " " not in key
    me = whoami(server, bearer(key))
    assert me.status_code == 200, me.text
    assert me.json()["name"] == "contact form"
    assert me.json()["scopes"] == ["tickets:read"]
    assert key not in me.text
    (row,) = stored_keys(server)
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert all(key not in str(value) for value in row.values())
    assert row["last_used_at"] is not None

    revoked = run_cli(["revoke-integration-key", me.json()["id"]], env=server.env, cwd=tmp_path / "cli")
    assert revoked.returncode == 0, revoked.stdout
    assert_unauthorized(whoami(server, bearer(key)))
    unknown = run_cli(["revoke-integration-key", "no-such-key"], env=server.env, cwd=tmp_path / "cli")
    assert unknown.returncode == 2
    assert "no integration key" in unknown.stdout


def test_a_key_from_the_admin_api_is_shown_once_never_listed_and_refused_at_once_when_revoked(
    server: ServerProcess,
) -> None:
    root = agent_auth(server, "root@example.test", PASSWORD)
    made = httpx.post(keys_api(server), json={"name": "e-mail bridge"}, headers=root)
    assert made.status_code == 201, made.text
    assert "no-store" in made.headers["Cache-Control"]
    body = made.json()
    key = body["key"]
    assert body["scopes"] == ["tickets:write", "tickets:read"]
    assert body["prefix"] == key[:12]
    assert whoami(server, bearer(key)).status_code == 200

    listed = httpx.get(keys_api(server), headers=root)
    assert listed.status_code == 200
    (entry,) = listed.json()
    assert entry["id"] == body["id"]
    assert "key" not in entry
    assert "key_hash" not in entry
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert key not in listed.text
    assert digest not in listed.text
    assert key[12:20] not in listed.text

    for _ in range(2):  # revoking twice is the same 204
        gone = httpx.delete(f"{keys_api(server)}/{body['id']}", headers=root)
        assert gone.status_code == 204, gone.text
    assert_unauthorized(whoami(server, bearer(key)))
    assert httpx.get(keys_api(server), headers=root).json()[0]["revoked_at"] is not None
    missing = httpx.delete(f"{keys_api(server)}/no-such-key", headers=root)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_an_agent_or_an_anonymous_caller_cannot_create_list_or_revoke_keys(server: ServerProcess) -> None:
    root = agent_auth(server, "root@example.test", PASSWORD)
    victim = httpx.post(keys_api(server), json={"name": "form"}, headers=root).json()
    ada = agent_auth(server, "ada@example.test", PASSWORD)
    for headers, status in ((ada, 403), ({}, 401), (bearer(victim["key"]), 401)):
        attempts = [
            httpx.post(keys_api(server), json={"name": "mine"}, headers=headers),
            httpx.get(keys_api(server), headers=headers),
            httpx.delete(f"{keys_api(server)}/{victim['id']}", headers=headers),
        ]
        assert [r.status_code for r in attempts] == [status] * 3, [r.text for r in attempts]
        assert all(victim["key"] not in r.text for r in attempts)
    (entry,) = httpx.get(keys_api(server), headers=root).json()
    assert entry["revoked_at"] is None
    assert whoami(server, bearer(victim["key"])).status_code == 200


@pytest.mark.parametrize(
    "body",
    [{"name": "form", "scopes": ["tickets:delete"]}, {"name": "form", "scopes": []},
     {"name": "form", "scopes": "tickets:read"}, {"name": ""}, {"name": "x" * 121},
     {"scopes": ["tickets:read"]}, {"name": "form", "scopes": ["tickets:read", "admin"]}],
)  # fmt: skip
def test_bad_names_and_unknown_scopes_get_a_typed_400_and_create_nothing(
    server: ServerProcess, body: dict[str, Any]
) -> None:
    root = agent_auth(server, "root@example.test", PASSWORD)
    refused = httpx.post(keys_api(server), json=body, headers=root)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "invalid_request"
    assert stored_keys(server) == []


def test_agent_tokens_widget_like_tokens_and_made_up_keys_are_not_integration_keys(
    server: ServerProcess,
) -> None:
    root = agent_auth(server, "root@example.test", PASSWORD)
    key = httpx.post(keys_api(server), json={"name": "form"}, headers=root).json()["key"]
    attempts = [
        {}, root, {"Authorization": "Bearer"}, bearer("sbk_" + secrets.token_urlsafe(32)), bearer(key[:-2]),
        bearer(key.upper()), {"Authorization": key}, {"Authorization": f"Basic {key}"},
        {"X-Api-Key": key}, bearer(f"{key} {key}"),
    ]  # fmt: skip
    for headers in attempts:
        assert_unauthorized(whoami(server, headers))
    missing = whoami(server)
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="switchboard"'
    assert 'error="invalid_token"' in whoami(server, bearer("sbk_nope")).headers["WWW-Authenticate"]
    assert whoami(server, {"Authorization": f"bearer {key}"}).status_code == 200  # the scheme is case-blind


def http_from(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def test_guessing_keys_from_one_address_gets_429_even_for_a_right_guess_while_others_go_on(
    tmp_path: Path, redis_url: str, redis_client: Any
) -> None:
    spec = str(LimitSettings.model_fields["api_key_failures_per_ip"].default)
    allowed = min(item.amount for item in parse_many(spec))
    proc = start(tmp_path, redis_url, SWITCHBOARD_LIMIT_API_KEY_FAILURES_PER_IP=spec)
    try:
        root = agent_auth(proc, "root@example.test", PASSWORD)
        key = httpx.post(keys_api(proc), json={"name": "form"}, headers=root).json()["key"]
        url = f"{proc.url}/api/v1/integration-keys/me"
        with http_from(ATTACKER) as attacker:
            guesses = [
                attacker.get(url, headers=bearer(f"sbk_{secrets.token_urlsafe(32)}"))
                for _ in range(allowed + 5)
            ]
            assert [r.status_code for r in guesses] == [401] * allowed + [429] * 5
            for refused in guesses[allowed:]:
                assert refused.json()["error"]["code"] == "rate_limited"
                assert 1 <= int(refused.headers["Retry-After"]) <= 60
            # A right guess now is refused the same way: the attacker cannot tell it was right.
            right = attacker.get(url, headers=bearer(key))
            assert right.status_code == 429
            assert key not in right.text
            # Nor does a forged X-Forwarded-For help (no trusted proxy is configured).
            forged = attacker.get(url, headers={**bearer(key), "X-Forwarded-For": "203.0.113.9"})
            assert forged.status_code == 429
        with http_from(INTEGRATOR) as integrator:
            assert integrator.get(url, headers=bearer(key)).status_code == 200
    finally:
        proc.kill()


def test_the_served_openapi_document_describes_the_integration_key_and_its_answers(
    server: ServerProcess,
) -> None:
    schema = httpx.get(f"{server.url}/schema/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["integrationKey"]
    assert scheme["type"] == "http"
    assert scheme["scheme"] == "bearer"
    me = schema["paths"]["/api/v1/integration-keys/me"]["get"]
    assert me["security"] == [{"integrationKey": []}]
    assert {"401", "429"} <= set(me["responses"])
    create = schema["paths"]["/api/v1/admin/integration-keys"]["post"]
    assert {"201", "400", "401", "403"} <= set(create["responses"])
    assert "404" in schema["paths"]["/api/v1/admin/integration-keys/{key_id}"]["delete"]["responses"]
