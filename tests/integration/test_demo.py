"""``switchboard demo`` as a newcomer runs it: one real process (the demo model and the service on the
embedded defaults), a real WebSocket client, the real agent API. Shows each path the demo exists for: a
policy question gets a streamed answer, "talk to a person" is queued as asked, gibberish is handed off
for low confidence; and the start-up output and ``/`` say where to go next."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.servers import STRIPPED_ENV, ServerProcess, free_port

RECV_TIMEOUT_S = 20.0


class DemoProcess:
    """``switchboard demo`` exec'd exactly as the README says (``python -m support.cli`` is the same
    entry point as the console script), in its own session and data directory."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.origin = self.url
        self.log_path = cwd / "demo.log"
        self.env = {k: v for k, v in os.environ.items() if k not in STRIPPED_ENV and k != "SWITCHBOARD_DEMO"}
        self.env["PYTHONUNBUFFERED"] = "1"
        cwd.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "support.cli", "demo", "--port", str(self.port)],
                env=self.env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"switchboard demo exited early:\n{self.log()}")
            if "Switchboard is running at" in self.log():
                return
            time.sleep(0.1)
        raise RuntimeError(f"switchboard demo not ready in {timeout_s}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    process = DemoProcess(tmp_path_factory.mktemp("demo"))
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def demo_credentials(demo: DemoProcess) -> tuple[str, str]:
    found = re.search(r"demo admin account (\S+) \(\w+\), password: (\S+)", demo.log())
    assert found, demo.log()
    return found.group(1), found.group(2)


def agent_headers(demo: DemoProcess) -> dict[str, str]:
    email, password = demo_credentials(demo)
    resp = httpx.post(f"{demo.url}/api/v1/agent/login", json={"email": email, "password": password})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


async def ask(demo: DemoProcess, text: str) -> tuple[str, list[dict[str, Any]]]:
    """A new visitor asks ``text`` over the widget socket; the conversation id and the frames up to the
    bot's answer or the conversation's status change."""
    resp = httpx.post(
        f"{demo.url}/api/v1/widget/sessions",
        json={"widget_key": "pk_demo", "visitor": {"name": "Ada"}},
        headers={"Origin": demo.origin},
    )
    assert resp.status_code == 201, resp.text
    session = resp.json()
    url = f"ws://127.0.0.1:{demo.port}/api/v1/widget/ws?token={session['token']}"
    frames: list[dict[str, Any]] = []
    async with websockets.connect(url, origin=websockets.Origin(demo.origin)) as ws:
        await ws.send(json.dumps({"type": "message", "client_id": "c-1", "text": text}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S))
            frames.append(frame)
            if frame["type"] == "status" or (frame["type"] == "message" and frame.get("role") != "customer"):
                return session["conversation_id"], frames


def queue_entry(demo: DemoProcess, conversation_id: str) -> dict[str, Any]:
    queue = httpx.get(f"{demo.url}/api/v1/agent/queue", headers=agent_headers(demo)).json()
    entry = next((e for e in queue if e["conversation_id"] == conversation_id), None)
    assert entry is not None, queue
    return dict(entry)


def test_start_up_says_where_to_go_and_the_landing_page_links_there(demo: DemoProcess) -> None:
    log = demo.log()
    assert f"Switchboard is running at {demo.url}  (model: demo model)" in log
    for path in ("/demo", "/console/", "/reports/"):
        assert f"{demo.url}{path}" in log
    # The demo made an account and printed it: the lines say to sign in with it, not to create one.
    assert "Sign in to the console and the reports as demo-agent@example.com (password printed above)" in log
    assert "create the first one" not in log
    landing = httpx.get(f"{demo.url}/")
    assert landing.status_code == 200
    assert landing.headers["content-type"].startswith("text/html")
    for link in ('href="/demo"', 'href="/console/"', 'href="/reports/"'):
        assert link in landing.text
    assert "demo model" in landing.text
    assert "create-agent" in landing.text
    assert "printed a demo admin account" in landing.text
    page = httpx.get(f"{demo.url}/demo")
    assert '<script src="/widget.js" data-widget-key="pk_demo" async></script>' in page.text
    assert 'id="hostile"' not in page.text, "the demo page is the clean one"
    assert 'id="hostile"' in httpx.get(f"{demo.url}/demo/hostile").text


async def test_a_policy_question_gets_a_streamed_answer_from_the_policy(demo: DemoProcess) -> None:
    started = time.monotonic()
    _, frames = await ask(demo, "How long do I have to return an item?")
    elapsed = time.monotonic() - started
    final = frames[-1]
    assert (final["type"], final.get("role")) == ("message", "assistant"), frames
    deltas = [f for f in frames if f["type"] == "delta"]
    assert len(deltas) > 5, "streamed in many deltas"
    assert "".join(d["text"] for d in deltas) == final["text"]
    assert "30 days of delivery" in final["text"]  # the Return window rule of the sample policy
    assert not any(f["type"] == "status" for f in frames), "no handoff"
    assert elapsed > 0.8, "paced like a model (0.4 s to the first token, ~60 tokens/s)"


async def test_asking_for_a_person_is_queued_as_asked(demo: DemoProcess) -> None:
    conversation_id, frames = await ask(demo, "Can I talk to a person please?")
    assert (frames[-1]["type"], frames[-1].get("state")) == ("status", "queued"), frames
    assert not any(f["type"] == "delta" for f in frames)
    entry = queue_entry(demo, conversation_id)
    assert entry["reason"] == "wants_human", entry


async def test_gibberish_is_handed_off_for_low_confidence(demo: DemoProcess) -> None:
    conversation_id, frames = await ask(demo, "zorblat quixx vemmuth plonk")
    assert (frames[-1]["type"], frames[-1].get("state")) == ("status", "queued"), frames
    entry = queue_entry(demo, conversation_id)
    assert entry["reason"] == "low_confidence", entry


def test_ctrl_c_stops_the_service_and_the_model(tmp_path: Path) -> None:
    process = DemoProcess(tmp_path)
    try:
        process.wait_ready()
        model_url = re.search(r"demo mode\) on (http://\S+)", process.log())
        assert model_url, process.log()
        os.killpg(process.proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        assert process.proc.wait(timeout=30) == 0, process.log()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{process.url}/readyz", timeout=2)
        with pytest.raises(httpx.ConnectError):
            httpx.get(model_url.group(1), timeout=2)
    finally:
        process.stop()


def test_serve_says_where_to_go_and_that_it_is_offline(tmp_path: Path) -> None:
    """Without an API key ``serve`` prints the same next steps and says it runs offline; so does ``/``."""
    server = ServerProcess(tmp_path / "serve", exec_cli=True).start()  # a fresh process, as a user runs it
    try:
        wait_until(lambda: "Switchboard is running at" in server.log())
        assert f"Switchboard is running at {server.url}  (model: offline)" in server.log()
        assert f"{server.url}/console/" in server.log()
        assert "setup plugin" not in server.log(), "the migration library's plugin set-up lines are noise"
        landing = httpx.get(f"{server.url}/")
        assert landing.status_code == 200
        assert "mode-offline" in landing.text
        assert "No ANTHROPIC_API_KEY is set" in landing.text
    finally:
        server.kill()


def wait_until(pred: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)
