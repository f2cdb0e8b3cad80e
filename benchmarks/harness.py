"""Pieces every benchmark shares: the fake model API with a latency model, ``switchboard serve``
subprocesses (one or several sharing one Redis), widget sessions and a customer driver over real
WebSockets, percentiles, and a description of the machine. Measures; never asserts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import multiprocessing
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
import websockets

from support.settings import PUBLIC_ENV_NAMES, LimitSettings
from support.testing.fake_anthropic import FakeAnthropic, RecordedRequest, Reply

TRIAGE_MODEL = "claude-haiku-4-5"
ANSWER_MODEL = "claude-sonnet-4-6"
ORIGIN = "http://bench.test"
WIDGET_KEY = "pk_bench"
SECRET_KEY = "bench-secret-key-shared-by-every-bench-server-0123456789"
ANSWER_TEXT = "You can return it within 30 days of delivery, unused and in its original packaging."
RECV_TIMEOUT_S = 60.0
ROOMY_LIMIT = 1_000_000_000  # per window, for every abuse limit (see roomy_limits)
QUESTIONS = (
    "Can I return my tent?",
    "It was used once, is that a problem?",
    "How is the refund paid?",
    "Do I pay for the return label?",
)
TRIAGE_VERDICT = {
    "intent": "returns_refunds",
    "urgency": "normal",
    "sentiment": "neutral",
    "language": "en",
    "wants_human": False,
    "confidence": 0.9,
    "reason": "x",
}
TAG = re.compile(r"\[t:([A-Za-z0-9_.-]+)\]")

Progress = Callable[[str], None]


def tagged(text: str, tag: str) -> str:
    """A message carrying its turn's tag, which the fake's recorded requests are matched by (``TAG``)."""
    return f"{text} [t:{tag}]"


def question(i: int) -> str:
    """The benchmark's customer questions, in turn."""
    return QUESTIONS[i % len(QUESTIONS)]


def is_triage(body: dict[str, Any]) -> bool:
    return any(t.get("name") == "record_triage" for t in body.get("tools") or [])


def is_answer(body: dict[str, Any]) -> bool:
    return bool(body.get("stream")) and not is_triage(body)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: list[float], pct: float) -> float:
    """Linear-interpolated percentile (numpy's default method)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": os.getloadavg(),
    }


async def round_trip_ms(redis_url: str, *, idle_s: float, n: int = 100) -> float:
    """Median Redis PING round trip after ``idle_s`` of idleness: what one cross-process hop costs here.

    On a virtual machine whose idle vCPUs halt, a hop after an idle moment costs several times a hop in a
    busy loop (both processes must be woken); a turn makes about a dozen such hops.
    """
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.ping()
        samples = []
        for _ in range(n):
            if idle_s:
                await asyncio.sleep(idle_s)
            started = time.perf_counter()
            await client.ping()
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples)
    finally:
        await client.aclose()


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


# -- the fake model API ------------------------------------------------------------------------------


@dataclass
class LatencyModel:
    """Per-model time to first token and output tokens per second (0 tokens/s: unpaced)."""

    triage_ttft_s: float = 0.35
    triage_tps: float = 150.0
    answer_ttft_s: float = 0.8
    answer_tps: float = 60.0

    @classmethod
    def zero(cls) -> LatencyModel:
        return cls(0.0, 0.0, 0.0, 0.0)


def start_fake(latency: LatencyModel) -> FakeAnthropic:
    """The fake API answering triage with a confident verdict and answers with a short streamed text."""
    fake = FakeAnthropic().start()
    set_latency(fake, latency)
    fake.add_rule(lambda body: Reply(tool_use={"name": "record_triage", "input": dict(TRIAGE_VERDICT)})
                  if is_triage(body) else None)  # fmt: skip
    fake.add_rule(lambda body: Reply(text=ANSWER_TEXT) if is_answer(body) else None)
    return fake


class FakeProcess:
    """The benchmark's fake model API in a process of its own.

    On a thread of the benchmark process the fake would share one GIL with the customer driver that takes
    the timestamps: each side's work would show up as the other's latency (Python switches threads every
    5 ms). In its own process, with ``time.monotonic`` (CLOCK_MONOTONIC, system-wide on Linux) on both
    sides, the recorded times of the two processes are comparable. Same interface as the few
    :class:`FakeAnthropic` calls the benchmark makes: ``url``, ``set_latency``, ``take_requests``, ``stop``.
    """

    def __init__(self, latency: LatencyModel) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_fake_process_main, args=(child, latency), name="fake-anthropic")
        self._proc.start()
        child.close()
        self.url: str = self._call("url")

    def _call(self, command: str, *args: Any) -> Any:
        self._conn.send((command, args))
        ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(f"fake model API process: {value}")
        return value

    def set_latency(self, *, ttft_s: float, tps: float, model: str) -> None:
        self._call("set_latency", ttft_s, tps, model)

    def take_requests(self) -> list[RecordedRequest]:
        """The requests recorded so far (bodies cut to what a benchmark reads), and forget them."""
        records: list[RecordedRequest] = self._call("take")
        return records

    def stop(self) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(OSError, EOFError):
                self._call("stop")
            self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()


def _slim(record: RecordedRequest) -> RecordedRequest:
    """A recorded request without the (large, repeated) prompt: what request_tag/is_answer read."""
    body = record.body if isinstance(record.body, dict) else {}
    slim = {
        "messages": body.get("messages", []),
        "stream": body.get("stream"),
        "tools": [{"name": t.get("name")} for t in body.get("tools") or []],
    }
    return dataclasses.replace(record, headers={}, body=slim)


def _fake_process_main(conn: Any, latency: LatencyModel) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it (Ctrl-C reaches the whole group)
    fake = start_fake(latency)
    try:
        while True:
            try:
                command, args = conn.recv()
            except EOFError:
                return
            try:
                if command == "url":
                    conn.send((True, fake.url))
                elif command == "set_latency":
                    ttft_s, tps, model = args
                    fake.set_latency(ttft_s=ttft_s, tps=tps, model=model)
                    conn.send((True, None))
                elif command == "take":
                    conn.send((True, [_slim(r) for r in fake.take_requests()]))
                elif command == "stop":
                    conn.send((True, None))
                    return
                else:
                    conn.send((False, f"unknown command {command!r}"))
            except Exception as exc:
                conn.send((False, repr(exc)))
    finally:
        fake.stop()


def set_latency(fake: FakeAnthropic | FakeProcess, latency: LatencyModel) -> None:
    fake.set_latency(ttft_s=latency.triage_ttft_s, tps=latency.triage_tps, model=TRIAGE_MODEL)
    fake.set_latency(ttft_s=latency.answer_ttft_s, tps=latency.answer_tps, model=ANSWER_MODEL)


def request_tag(record: RecordedRequest) -> str | None:
    """The tag of the customer turn a model request was made for (the last tag in its messages)."""
    body = record.body if isinstance(record.body, dict) else {}
    tags = TAG.findall(json.dumps(body.get("messages", [])))
    return tags[-1] if tags else None


# -- servers -----------------------------------------------------------------------------------------


def roomy_limits() -> dict[str, str]:
    """Every simulated customer connects from this machine's one address, which the shipped abuse limits
    would rightly refuse after a few dozen. These keep every limit and all its windows, so each message
    still pays for its checks, with room for any benchmark."""
    return {
        f"SWITCHBOARD_LIMIT_{name.upper()}": re.sub(r"\d+/", f"{ROOMY_LIMIT}/", str(field.default))
        for name, field in LimitSettings.model_fields.items()
        if isinstance(field.default, str) and field.default
    }


def server_env(fake_url: str, redis_url: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        **roomy_limits(),
        "ANTHROPIC_API_KEY": "bench",
        "ANTHROPIC_BASE_URL": fake_url,
        "SWITCHBOARD_WIDGET_KEYS": json.dumps({WIDGET_KEY: [ORIGIN]}),
        "SWITCHBOARD_SECRET_KEY": SECRET_KEY,
        "SWITCHBOARD_LLM_REQUESTS_PER_MINUTE": "10000000",
        "SWITCHBOARD_LLM_INPUT_TOKENS_PER_MINUTE": "100000000000",
        "SWITCHBOARD_LLM_OUTPUT_TOKENS_PER_MINUTE": "100000000000",
        "SWITCHBOARD_TRIAGE_MODEL": TRIAGE_MODEL,
        "SWITCHBOARD_ANSWER_MODEL": ANSWER_MODEL,
        "SWITCHBOARD_LOG_LEVEL": "WARNING",
    }
    if redis_url:
        env["SWITCHBOARD_REDIS_URL"] = redis_url
    env.update(extra or {})
    return env


class Server:
    """``switchboard serve`` in its own process group, so an embedded Redis goes down with it."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if k not in PUBLIC_ENV_NAMES}
        self.env.update({"SWITCHBOARD_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **env})
        self.log_path = data_dir / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        script = Path(sys.executable).parent / "switchboard"
        base = [str(script)] if script.exists() else [sys.executable, "-m", "support.cli"]
        return [*base, "serve", "--port", str(self.port)]

    def start(self, timeout_s: float = 60.0) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"switchboard serve exited early:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"switchboard serve not ready in {timeout_s}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM (graceful drain), then SIGKILL the whole group if needed."""
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


# -- customer side -----------------------------------------------------------------------------------


async def open_session(http: httpx.AsyncClient, server_url: str) -> dict[str, Any]:
    resp = await http.post(
        f"{server_url}/api/v1/widget/sessions",
        json={"widget_key": WIDGET_KEY, "visitor": {"name": "Bench"}},
        headers={"Origin": ORIGIN},
    )
    if resp.status_code != 201:
        raise RuntimeError(f"session refused: {resp.status_code} {resp.text}")
    session: dict[str, Any] = resp.json()
    return session


async def open_sessions(server_urls: list[str], n: int, concurrency: int = 32) -> list[tuple[str, str]]:
    """``n`` widget sessions spread round-robin over the servers: (server url, token)."""
    out: list[tuple[str, str]] = [("", "")] * n
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:

        async def one(i: int) -> None:
            url = server_urls[i % len(server_urls)]
            async with sem:
                out[i] = (url, (await open_session(http, url))["token"])

        await asyncio.gather(*(one(i) for i in range(n)))
    return out


def ws_url(server_url: str, token: str) -> str:
    return server_url.replace("http://", "ws://") + f"/api/v1/widget/ws?token={token}"


async def connect(server_url: str, token: str) -> websockets.ClientConnection:
    # No client keepalive pings and small buffers: the driver holds thousands of sockets.
    return await websockets.connect(
        ws_url(server_url, token), ping_interval=None, max_queue=64, compression=None, open_timeout=60
    )


@dataclass
class TurnResult:
    tag: str
    sent: float
    ack: float | None = None
    first_delta: float | None = None
    done: float | None = None
    handed_off: bool = False
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


async def one_turn(ws: websockets.ClientConnection, tag: str, text: str) -> TurnResult:
    """Send one tagged message; times (time.monotonic) of the ack, first delta and the assistant's reply."""
    result = TurnResult(tag=tag, sent=time.monotonic())
    await ws.send(json.dumps({"type": "message", "client_id": tag, "text": tagged(text, tag)}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S))
        now = time.monotonic()
        kind = frame["type"]
        if kind == "ack" and result.ack is None:
            result.ack = now
        elif kind == "delta" and result.first_delta is None:
            result.first_delta = now
        elif kind == "message" and frame.get("role") == "assistant":
            result.done = now
            return result
        elif kind == "status" and frame.get("state") == "queued":
            result.done, result.handed_off = now, True
            return result
        elif kind == "error":
            result.error = str(frame)
            return result


async def run_conversation(
    server_url: str, token: str, name: str, turns: int, think_s: float, results: list[TurnResult]
) -> None:
    """A conversation of ``turns`` turns; a failure is recorded as an errored turn, never raised. A turn
    handed to a person ends the conversation: the bot answers none of its later messages (a person does),
    so waiting for one would only time out."""
    i = 0
    try:
        async with await connect(server_url, token) as ws:
            for i in range(turns):
                if i and think_s:
                    await asyncio.sleep(think_s)
                results.append(await one_turn(ws, f"{name}.{i}", question(i)))
                if results[-1].handed_off:
                    break
    except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
        results.append(TurnResult(tag=f"{name}.{i}", sent=time.monotonic(), error=repr(exc)))


def model_wait_by_tag(records: Iterable[RecordedRequest]) -> dict[str, dict[str, Any]]:
    """Per customer turn: the union of the model requests' [request head read, last byte written]
    intervals, and the answer request's own TTFT (request head read -> first content delta written)."""
    spans: dict[str, list[tuple[float, float]]] = {}
    answer_ttft: dict[str, float] = {}
    for record in records:
        tag = request_tag(record)
        if tag is None or record.finished_at is None:
            continue
        start = record.started_at if record.started_at is not None else record.arrived_at
        spans.setdefault(tag, []).append((start, record.finished_at))
        body = record.body if isinstance(record.body, dict) else {}
        if is_answer(body) and record.first_token_at is not None:
            answer_ttft[tag] = record.first_token_at - start
    out: dict[str, dict[str, Any]] = {}
    for tag, intervals in spans.items():
        total, end = 0.0, float("-inf")
        for start, stop in sorted(intervals):
            if stop <= end:
                continue
            total += stop - max(start, end)
            end = stop
        out[tag] = {
            "model_wait_s": total,
            "requests": len(intervals),
            "answer_ttft_s": answer_ttft.get(tag),
            "first_request_at": min(start for start, _ in intervals),
            "last_byte_at": max(stop for _, stop in intervals),
        }
    return out
