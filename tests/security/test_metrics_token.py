"""``GET /metrics`` with ``SWITCHBOARD_METRICS_TOKEN`` set: only ``Authorization: Bearer <token>`` reads
it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from support.channels.metrics import check_token
from support.errors import Unauthorized
from tests.servers import ServerProcess

TOKEN = "scrape-token-7f3a9c0e5b1d"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServerProcess]:
    tmp_path = tmp_path_factory.mktemp("metrics-token")
    env = {
        "SWITCHBOARD_REDIS_URL": redis_url,
        "SWITCHBOARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}",
        "SWITCHBOARD_METRICS_TOKEN": TOKEN,
    }
    proc = ServerProcess(tmp_path, env=env).start()
    try:
        yield proc
    finally:
        proc.kill()


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("", {}),  # no token
        ("", {"Authorization": f"Bearer {TOKEN}x"}),  # a wrong one (same prefix)
        ("", {"Authorization": f"Bearer {TOKEN[:-1]}"}),  # a prefix of the right one
        ("", {"Authorization": f"Basic {TOKEN}"}),  # the right secret, another scheme
        (f"?token={TOKEN}", {}),  # in the query string, where it would land in access logs
        ("", {"X-Metrics-Token": TOKEN}),
    ],
)
def test_a_scrape_without_the_bearer_token_is_refused(
    server: ServerProcess, query: str, headers: dict[str, str]
) -> None:
    resp = httpx.get(f"{server.url}/metrics{query}", headers=headers)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert resp.json()["error"]["code"] == "unauthorized"
    assert "switchboard_" not in resp.text


def test_the_bearer_token_reads_the_metrics(server: ServerProcess) -> None:
    resp = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"bearer {TOKEN}"})
    assert resp.status_code == 200
    assert "# TYPE switchboard_turns_total counter" in resp.text
    assert "switchboard_queue_depth " in resp.text


def test_no_token_configured_leaves_the_endpoint_open() -> None:
    check_token(None, None)
    with pytest.raises(Unauthorized):
        check_token(TOKEN, None)
