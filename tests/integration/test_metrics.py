"""``GET /metrics`` after real turns through the widget socket against the fake model API, and the
multiprocess mode summing two processes' samples."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import metrics
from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests.integration.test_widget_ws import (
    assistant_message,
    connect,
    is_answer,
    is_triage,
    open_session,
    start_server,
    triage_reply,
)
from tests.servers import ServerProcess

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(server: ServerProcess) -> Samples:
    resp = httpx.get(f"{server.url}/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=")
    return parse(resp.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value (0 when it is not there), labels matched exactly."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def eventually(server: ServerProcess, check: Any, timeout_s: float = 10.0) -> Samples:
    """Scrape until ``check(samples)`` holds (the ledger rows are written just after the reply)."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(server)
        if check(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


@pytest.fixture(scope="module")
def module_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, module_fake: FakeAnthropic, redis_url: str
) -> Iterator[ServerProcess]:
    # Questions about handing off go to a person; everything else is answered.
    def reply(body: dict[str, Any]) -> Reply | None:
        if is_triage(body):
            return triage_reply(wants_human="person" in str(body["messages"][-1]))
        return Reply(text="Returns are free within 30 days.") if is_answer(body) else None

    module_fake.add_rule(reply)
    proc = start_server(
        tmp_path_factory.mktemp("metrics"), module_fake, redis_url,
        SWITCHBOARD_LIMIT_MESSAGES_PER_CONVERSATION="1/minute",
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.kill()


async def test_a_turn_and_a_handoff_show_in_every_family(server: ServerProcess) -> None:
    before = scrape(server)
    depth_before = value(before, "switchboard_queue_depth")
    answered = open_session(server)
    async for client in connect(server, answered["token"]):
        await client.send({"type": "message", "client_id": "m-1", "text": "Can I return my tent?"})
        await client.until(assistant_message)
        during = scrape(server)
        assert value(during, "switchboard_websockets_open", kind="widget") == 1
        # The conversation allows one message a minute here: the second is refused, and counted.
        await client.send({"type": "message", "client_id": "m-2", "text": "And my stove?"})
        refused = await client.until(lambda f: f["type"] == "error")
        assert refused[-1]["code"] == "rate_limited"
    handed = open_session(server)
    async for client in connect(server, handed["token"]):
        await client.send({"type": "message", "client_id": "h-1", "text": "I want a person please"})
        await client.until(lambda f: f["type"] == "status" and f.get("state") == "queued")

    after = eventually(
        server,
        lambda s: (
            total(s, "switchboard_model_requests_total", purpose="answer") >= 2
            and value(s, "switchboard_websockets_open", kind="widget") == 0
        ),
    )
    assert value(after, "switchboard_turns_total", outcome="answered") == 1
    assert value(after, "switchboard_turns_total", outcome="handed_off") == 1
    assert value(after, "switchboard_handoffs_total", reason="wants_human") == 1
    assert value(after, "switchboard_rate_limited_total", limit="messages_per_conversation") == 1
    assert value(after, "switchboard_websockets_open", kind="widget") == 0
    assert value(after, "switchboard_queue_depth") == depth_before + 1
    # Both turns triaged and drafted (the handed-off draft is kept for the agent), each call costed.
    assert total(after, "switchboard_model_requests_total", purpose="triage", outcome="ok") == 2
    answers = [
        dict(labels) for (name, labels), v in after.items()
        if name == "switchboard_model_requests_total" and ("purpose", "answer") in labels and v
    ]  # fmt: skip
    assert [a["outcome"] for a in answers] == ["ok"]
    answer_model = answers[0]["model"]
    assert value(after, "switchboard_model_ttft_seconds_count", model=answer_model) == 2
    assert value(after, "switchboard_model_cost_usd_total", model=answer_model) > 0
    # Bounded labels only: no conversation id anywhere in the exposition.
    text = httpx.get(f"{server.url}/metrics").text
    assert answered["conversation_id"] not in text
    assert handed["conversation_id"] not in text


WRITER = """
import sys
from support import metrics
metrics.TURNS.labels(outcome="answered").inc()
metrics.WEBSOCKETS_OPEN.labels(kind="widget").inc()
if sys.argv[1] == "exits":
    metrics.process_exited()
"""


async def test_multiprocess_mode_sums_every_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    async def write(mode: str) -> None:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, mode, env=env)
        assert await proc.wait() == 0

    await asyncio.gather(write("exits"), write("stays"))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    samples = parse(metrics.render(queue_depth=3).decode())
    assert value(samples, "switchboard_turns_total", outcome="answered") == 2
    # Open sockets are summed over live processes: the one that said it exited is dropped.
    assert value(samples, "switchboard_websockets_open", kind="widget") == 1
    assert value(samples, "switchboard_queue_depth") == 3
