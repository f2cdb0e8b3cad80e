"""PostgreSQL stopped for a minute under chat: chat goes on, SQL paths say 503, the archiver catches up.

The test's own PostgreSQL (``initdb`` into a temporary directory, a free loopback port, ``pg_ctl`` start and
stop: never the shared one), one ``switchboard serve`` on it and on the shared test Redis, the fake model API
and real widget sockets. PostgreSQL is stopped (``pg_ctl stop -m fast``) for OUTAGE_S while customers ask
questions and one asks for a person; then it is started again and every conversation that went idle during
the outage must reach the archive.

Runs where PostgreSQL is configured for the tests (``SWITCHBOARD_TEST_POSTGRES_URL``, as in CI), and needs the
PostgreSQL server binaries (``PG_BIN``); it skips with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text

from support.db.engine import make_engine
from support.settings import LLMSettings
from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests import servers
from tests.conftest import POSTGRES_URL
from tests.faults.accounting import Widget, report, tally_widgets
from tests.integration.test_widget_ws import is_answer, is_triage, open_session, start_server, triage_reply
from tests.servers import ServerProcess, free_port

PG_BIN = Path(os.environ.get("SWITCHBOARD_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
OUTAGE_S = 60.0
ARCHIVE_IDLE_S = 3.0  # conversations idle this long are archived: several go idle during the outage
CATCH_UP_BOUND_S = 20.0  # after PostgreSQL is back, every idle conversation is archived within this
OUTCOME_BOUND_S = 30.0
ANSWER_MODEL = LLMSettings.model_fields["answer_model"].default
ANSWER = "Tents can be returned within 30 days if unused."
PASSWORD = "s3cret-pass"
ORIGIN = "http://shop.test"

pytestmark = pytest.mark.postgres


class PrivatePostgres:
    """A PostgreSQL cluster this test owns: its own data directory, port and postmaster."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.user: str | None = None  # run as this OS user (PostgreSQL refuses to run as root)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/switchboard"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = [str(PG_BIN / argv[0]), *argv[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)

    def init(self) -> None:
        if os.geteuid() == 0:
            self.user = "postgres"
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "pg.log"), "-w", "start"
        )

    def stop(self) -> None:
        """Fast shutdown: open sessions are cut, like a database that goes away."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


def _skip_reason() -> str | None:
    if not POSTGRES_URL:
        return "PostgreSQL not configured (SWITCHBOARD_TEST_POSTGRES_URL): this 60 s outage runs in CI"
    if not (PG_BIN / "pg_ctl").exists():
        return f"PostgreSQL server binaries not found in {PG_BIN} (set SWITCHBOARD_TEST_PG_BIN)"
    if os.geteuid() == 0 and (shutil.which("runuser") is None or not _has_user("postgres")):
        return "running as root without a postgres user to run PostgreSQL as"
    return None


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="sb-pg-outage-"))
    server = PrivatePostgres(root)
    try:
        server.init()
        server.start()
        subprocess.run(
            [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres",
             "switchboard"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        yield server
    finally:
        if server.running():
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def model(fake: FakeAnthropic) -> FakeAnthropic:
    fake.reset()
    fake.add_rule(lambda body: triage_reply(confidence=0.95) if is_triage(body) else None)
    fake.add_rule(lambda body: Reply(text=ANSWER) if is_answer(body) else None)
    return fake


@pytest.fixture
def server(
    tmp_path: Path,
    postgres: PrivatePostgres,
    model: FakeAnthropic,
    redis_url: str,
    redis_client: aioredis.Redis,
) -> Iterator[ServerProcess]:
    env = {"SWITCHBOARD_DATABASE_URL": postgres.url, "SWITCHBOARD_DATA_DIR": str(tmp_path), "PATH": ""}
    proc = start_server(
        tmp_path / "s", model, redis_url, SWITCHBOARD_DATABASE_URL=postgres.url,
        SWITCHBOARD_ARCHIVE_IDLE_S=str(ARCHIVE_IDLE_S), SWITCHBOARD_ARCHIVE_INTERVAL_S="1",
    )  # fmt: skip
    try:
        servers.create_agent(env, tmp_path, "ada@example.com", PASSWORD, "Ada")
        yield proc
    finally:
        proc.kill()


async def archived(url: str, conversation_ids: list[str]) -> set[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT id FROM conversation WHERE id = ANY(:ids)"), {"ids": conversation_ids}
            )
            return {str(row[0]) for row in rows}
    finally:
        await engine.dispose()


async def ask(server: ServerProcess, question: str) -> tuple[Widget, str, dict[str, Any], float]:
    session = open_session(server)
    widget = Widget(server, session["token"])
    await widget.connect()
    started = time.monotonic()
    seq = await widget.send_message("m1", question)
    outcome = await widget.until_outcome(seq, OUTCOME_BOUND_S)
    waited = time.monotonic() - started
    await widget.close()
    return widget, session["conversation_id"], outcome, waited


def http(method: str, server: ServerProcess, path: str, **kwargs: Any) -> tuple[int, str | None]:
    resp = httpx.request(method, f"{server.url}{path}", timeout=30, **kwargs)
    body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
    error = body.get("error") if isinstance(body, dict) else None
    return resp.status_code, error.get("code") if isinstance(error, dict) else None


def agent_calls(server: ServerProcess, auth: dict[str, str], cid: str) -> dict[str, tuple[int, str | None]]:
    """The agent side, which needs SQL (the login; every request's token is checked against the agent row)."""
    base = "/api/v1/agent"
    login = {"email": "ada@example.com", "password": PASSWORD}
    return {
        "login": http("POST", server, f"{base}/login", json=login),
        "me": http("GET", server, f"{base}/me", headers=auth),
        "queue": http("GET", server, f"{base}/queue", headers=auth),
        "claim": http("POST", server, f"{base}/conversations/{cid}/claim", headers=auth),
        "reply": http(
            "POST", server, f"{base}/conversations/{cid}/messages", headers=auth, json={"text": "Hi"}
        ),
        "operations report": http("GET", server, "/api/v1/reports/operations", headers=auth),
    }


@pytest.mark.timeout(180)
async def test_postgres_down_for_a_minute_chat_goes_on_and_the_archiver_catches_up(
    server: ServerProcess, postgres: PrivatePostgres
) -> None:
    """PostgreSQL stopped for OUTAGE_S: customers who ask (at its start and in its middle) get the model's
    answer within the bound, a customer who asks for a person is queued, a new widget session opens; the
    agent side answers 503 ``unavailable`` (never 500) and works again once PostgreSQL is back; every
    conversation that went idle during the outage is archived within CATCH_UP_BOUND_S of its return."""
    auth = servers.agent_auth(server, "ada@example.com", PASSWORD)
    before = await ask(server, "How long do I have to return a tent?")

    await asyncio.to_thread(postgres.stop)
    down_at = time.monotonic()
    early = await asyncio.gather(*(ask(server, f"Question {i} about returning tents") for i in range(4)))
    session = open_session(server)
    cid = session["conversation_id"]
    human = Widget(server, session["token"])
    await human.connect()
    await human.send_frame({"type": "request_human"})
    queued = await human.until_outcome(0)
    await human.close()
    during = agent_calls(server, auth, cid)
    new_session = httpx.post(
        f"{server.url}/api/v1/widget/sessions", json={"widget_key": "pk_test"}, headers={"Origin": ORIGIN}
    )
    await asyncio.sleep(max(0.0, OUTAGE_S / 2 - (time.monotonic() - down_at)))
    late = await asyncio.gather(*(ask(server, f"Later question {i} about tents") for i in range(2)))
    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
    await asyncio.to_thread(postgres.start)
    up_at = time.monotonic()
    down_s = up_at - down_at

    wanted = {c for _, c, _, _ in [before, *early, *late]} | {cid}
    done: set[str] = set()
    while time.monotonic() - up_at < CATCH_UP_BOUND_S and done != wanted:
        done = await archived(postgres.url, sorted(wanted))
        await asyncio.sleep(0.5)
    catch_up_s = time.monotonic() - up_at
    after = agent_calls(server, auth, cid)
    asked = [*early, *late]
    numbers = await tally_widgets([w for w, _, _, _ in asked] + [human])
    report(
        "postgres_outage", numbers, postgres_down=down_s, archive_catch_up=catch_up_s,
        worst_time_to_answer=max(t for *_, t in asked),
    )  # fmt: skip
    print(f"reliability postgres_outage: agent side while down={during}, after={after}")

    assert [o["text"] for _, _, o, _ in asked] == [ANSWER] * len(asked)
    assert max(t for *_, t in asked) < OUTCOME_BOUND_S
    assert (queued["type"], queued["state"]) == ("status", "queued")
    assert new_session.status_code == 201, new_session.text
    assert during == dict.fromkeys(during, (503, "unavailable"))
    assert {name: status for name, (status, _) in after.items()} == {
        "login": 200,
        "me": 200,
        "queue": 200,
        "claim": 200,
        "reply": 201,
        "operations report": 403,
    }
    assert done == wanted
    assert (numbers.lost, numbers.never_ended) == (0, 0)
