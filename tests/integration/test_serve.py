"""`switchboard serve` as a user runs it: no environment, embedded Redis and SQLite, drain on SIGTERM."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.servers import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data", exec_cli=True).start()
    try:
        yield proc
    finally:
        proc.kill()


def test_serve_with_no_environment_is_ready_on_embedded_redis_and_sqlite(server: ServerProcess) -> None:
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"redis": "ok", "database": "ok", "model_api": "offline", "status": "ready"}
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert (server.data_dir / "redis" / "redis.sock").exists()
    tables = (
        sqlite3.connect(server.data_dir / "switchboard.sqlite3")
        .execute("SELECT name FROM sqlite_master WHERE type='table'")
        .fetchall()
    )
    assert ("model_usage",) in tables
    assert "OFFLINE MODE" in server.log()


def test_openapi_document_lists_the_operations_endpoints(server: ServerProcess) -> None:
    doc = httpx.get(f"{server.url}/schema/openapi.json").json()
    assert {"/healthz", "/readyz"} <= set(doc["paths"])


def test_sigterm_drains_and_exits_cleanly_and_embedded_redis_persists(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = ServerProcess(data, exec_cli=True).start()
    sock = str(data / "redis" / "redis.sock")
    client = redis.Redis(unix_socket_path=sock)
    client.set("sb:test:persisted", b"yes")
    client.close()
    try:
        # uvicorn re-raises the captured signal after a graceful shutdown, so supervisors see SIGTERM
        assert first.terminate() == -signal.SIGTERM
    finally:
        first.kill()
    assert "draining" in first.log()
    assert "Application shutdown complete" in first.log()
    assert not Path(sock).exists() or not _answers(sock)  # the owner stopped its embedded server

    second = ServerProcess(data, exec_cli=True).start()
    try:
        client = redis.Redis(unix_socket_path=sock)
        assert client.get("sb:test:persisted") == b"yes"  # AOF brought it back
        client.close()
    finally:
        second.kill()


def _answers(sock: str) -> bool:
    try:
        client = redis.Redis(unix_socket_path=sock, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def test_with_a_key_the_model_api_is_online(tmp_path: Path) -> None:
    from support.testing.fake_anthropic import FakeAnthropic

    with FakeAnthropic() as fake:
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": fake.url}
        proc = ServerProcess(tmp_path / "data", env=env).start()
        try:
            assert httpx.get(f"{proc.url}/readyz").json()["model_api"] == "online"
            assert "OFFLINE MODE" not in proc.log()
        finally:
            proc.kill()
