"""No orphaned turns: a turn whose process died, whose start was lost, or whose Redis went away mid-turn
still ends in an answer or a handoff, within a bound.

Real `switchboard serve` processes, a redis-server each test starts itself on a free loopback port (with an
append-only file, so a restart keeps the data), the fake model API, real widget WebSockets. The faults are
the real ones: SIGKILL of the server running the turn, SIGSTOP/SIGCONT of Redis, SIGKILL and restart of
Redis. Each test prints one ``reliability`` line (``pytest -s``): messages acknowledged, acknowledged
messages missing from the transcript, acknowledged messages never followed by an answer or a status, and
the worst wait measured by the test (stated per test).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import websockets

from support import keys
from support.conversation import store as conversation_store
from support.settings import LLMSettings
from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests.faults.own_redis import OwnRedis
from tests.integration.test_widget_ws import is_answer, is_triage, open_session, start_server, triage_reply
from tests.servers import ServerProcess, free_port

# Each scenario waits out a fault (10 s) and a bound (30 s) on a shared machine: more than the default.
pytestmark = pytest.mark.timeout(150)

ANSWER_MODEL = LLMSettings.model_fields["answer_model"].default
# About 400 one-word deltas at 40 tokens/s: a 20 s answer, so every fault lands while it streams.
SLOW_ANSWER = " ".join(f"w{i:05d}" for i in range(400))
SHORT_ANSWER = "You have 30 days to return unused gear."
ANSWER_TPS = 40.0
BOUND_S = 30.0  # the customer hears something within this of the fault; every turn ends within it
RECV_TIMEOUT_S = 40.0


# What the server sends to store a customer message (redis-py runs a registered script by its SHA1).
APPEND_SHA = hashlib.sha1(conversation_store._APPEND.encode()).hexdigest().encode()


class StopOnAppend:
    """A TCP relay between a server and its Redis that, once armed, SIGSTOPs Redis the moment the script
    storing a customer message comes through, lets that script on to the stopped Redis, and then drops the
    connection that carried it (as the server's own socket timeout, or a proxy's, drops a connection to a
    Redis that stopped answering). Redis, resumed, stores the message; the server never hears of it.
    Deterministic where a SIGSTOP at a random moment usually stops the rate limiter's call instead, before
    the message is even sent."""

    def __init__(self, redis_server: OwnRedis) -> None:
        self.redis = redis_server
        self.port = free_port()
        self.armed = False
        self.stopped = asyncio.Event()
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.redis.port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._requests(reader, up_writer, writer), self._pipe(up_reader, writer))

    async def _requests(
        self, src: asyncio.StreamReader, upstream: asyncio.StreamWriter, client: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await src.read(65536):
                stop = self.armed and APPEND_SHA in data
                if stop:
                    self.armed = False
                    self.redis.signal(signal.SIGSTOP)
                    self.stopped.set()
                upstream.write(data)
                await upstream.drain()
                if stop:
                    await asyncio.sleep(0.2)
                    client.close()  # the server's connection breaks; Redis still has the script
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            upstream.close()  # a FIN after the script: a resumed Redis runs it, then sees the close

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis", appendfsync="always")
    server.start()
    try:
        yield server
    finally:
        server.kill()


class Widget:
    """A customer's widget: frames with arrival times, across reconnects (as the real widget does)."""

    def __init__(self, server: ServerProcess, token: str) -> None:
        self.server = server
        self.token = token
        self.ws: websockets.ClientConnection | None = None
        self.frames: list[tuple[float, dict[str, Any]]] = []
        self.last_seq = 0

    async def connect(self, timeout_s: float = 20.0) -> None:
        """Open the socket (retrying while the server or its Redis is away) and resume from the last seq."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.ws = await websockets.connect(
                    f"ws://127.0.0.1:{self.server.port}/api/v1/widget/ws?token={self.token}"
                )
                await self.send({"type": "resume", "after": self.last_seq})
                return
            except (OSError, websockets.WebSocketException):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def send(self, frame: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout_s: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        assert self.ws is not None
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout_s))
        self.frames.append((time.monotonic(), frame))
        if isinstance(frame.get("seq"), int) and frame["type"] != "ack":
            self.last_seq = max(self.last_seq, frame["seq"])
        return frame

    async def until(self, pred: Any, timeout_s: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            if pred(frame):
                return frame

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()

    def acked(self) -> list[int]:
        return sorted({f["seq"] for _, f in self.frames if f["type"] == "ack"})


async def transcript(server: ServerProcess, token: str) -> list[dict[str, Any]]:
    """The persisted events, as a reconnecting widget gets them (``resume`` from 0 on a new socket)."""
    reader = Widget(server, token)
    await reader.connect()
    frames: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        while True:
            frames.append(await reader.recv(1.0))
    await reader.close()
    return [f for f in frames if "seq" in f and f["type"] != "ack"]


def account(
    name: str, events: list[dict[str, Any]], acked: list[int], worst_wait_s: float
) -> tuple[int, int]:
    """Print the scenario's reliability line; return (lost, never ended)."""
    seqs = {f["seq"] for f in events}
    lost = sum(1 for seq in acked if seq not in seqs)
    ended = [
        f["seq"]
        for f in events
        if f["type"] == "status" or (f["type"] == "message" and f["role"] in ("assistant", "agent"))
    ]
    never_ended = sum(1 for seq in acked if not any(end > seq for end in ended))
    print(
        f"\nreliability {name} acked={len(acked)} lost={lost} never_ended={never_ended} "
        f"worst_wait={worst_wait_s:.2f}s"
    )
    return lost, never_ended


def turn_frame(frame: dict[str, Any]) -> bool:
    """Something of a turn's outcome reaching the customer: a delta, the bot's reply, a status."""
    return frame["type"] in ("delta", "status") or (
        frame["type"] == "message" and frame["role"] == "assistant"
    )


def answered(frame: dict[str, Any]) -> bool:
    return (frame["type"] == "message" and frame["role"] == "assistant") or (
        frame["type"] == "status" and frame.get("state") == "queued"
    )


def slow_then_short(fake: FakeAnthropic) -> FakeAnthropic:
    """Triage is confident; the first answer streams for 20 s, every later one is short."""
    fake.reset()
    answers = 0

    def answer(body: dict[str, Any]) -> Reply | None:
        nonlocal answers
        if not is_answer(body):
            return None
        answers += 1
        return Reply(text=SLOW_ANSWER if answers == 1 else SHORT_ANSWER)

    fake.add_rule(lambda body: triage_reply(confidence=0.95) if is_triage(body) else None)
    fake.add_rule(answer)
    fake.set_latency(tps=ANSWER_TPS, model=ANSWER_MODEL)
    return fake


@contextlib.asynccontextmanager
async def widget(server: ServerProcess, token: str) -> AsyncIterator[Widget]:
    customer = Widget(server, token)
    await customer.connect()
    try:
        yield customer
    finally:
        await customer.close()


async def test_sigkill_mid_stream_the_turn_is_rerun_elsewhere(
    tmp_path: Path, fake: FakeAnthropic, aof_redis: OwnRedis
) -> None:
    """The server streaming an answer is SIGKILLed; a second server on the same Redis and database finds
    the orphaned turn, withdraws the half-streamed reply (`reply_aborted`) and runs the turn again: the
    customer hears the new answer within 30 s of the kill, and their next message is not stuck."""
    slow_then_short(fake)
    db = f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}"
    a = start_server(tmp_path / "a", fake, aof_redis.url, SWITCHBOARD_DATABASE_URL=db)
    b = start_server(tmp_path / "b", fake, aof_redis.url, SWITCHBOARD_DATABASE_URL=db)
    try:
        session = open_session(a)
        token = session["token"]
        async with widget(a, token) as on_a, widget(b, token) as on_b:
            await on_a.send({"type": "message", "client_id": "m1", "text": "Tell me everything about tents."})
            await on_a.until(lambda f: f["type"] == "ack")
            first = await on_b.until(lambda f: f["type"] == "delta")
            await on_b.until(lambda f: f["type"] == "delta")  # well into the stream
            a.kill()
            killed = time.monotonic()
            aborted = await on_b.until(lambda f: f["type"] == "reply_aborted", BOUND_S + 5)
            heard = await on_b.until(turn_frame, BOUND_S + 5)
            heard_after = time.monotonic() - killed
            outcome = heard if answered(heard) else await on_b.until(answered, BOUND_S)
            # The next message is not stuck behind the dead turn.
            await on_b.send({"type": "message", "client_id": "m2", "text": "And for sleeping bags?"})
            sent = time.monotonic()
            await on_b.until(lambda f: f["type"] == "ack")
            await on_b.until(turn_frame, BOUND_S)
            next_wait = time.monotonic() - sent
            await on_b.until(answered, BOUND_S)
            acked = on_a.acked() + on_b.acked()
        events = await transcript(b, token)
    finally:
        a.kill()
        b.kill()
    lost, never_ended = account("sigkill_mid_stream", events, acked, max(heard_after, next_wait))
    print(f"  first frame of the re-run {heard_after:.2f}s after the kill; next message {next_wait:.2f}s")

    assert aborted["reply_id"] == first["reply_id"]
    assert heard_after <= BOUND_S
    assert outcome["type"] == "status" or outcome["reply_id"] != first["reply_id"]
    assert not [f for f in events if f.get("reply_id") == first["reply_id"]]  # the withdrawn one never lands
    assert next_wait < 10.0
    assert (lost, never_ended) == (0, 0)


async def test_sigkill_mid_stream_then_a_new_message_waits_only_for_the_lease(
    tmp_path: Path, fake: FakeAnthropic, aof_redis: OwnRedis
) -> None:
    """The server streaming an answer is SIGKILLed and the customer, now on the second server, writes again
    at once: the new message's turn starts when the dead turn's lease runs out (6 s), withdraws the
    half-streamed reply and answers; it is not stuck behind the dead turn."""
    slow_then_short(fake)
    db = f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}"
    a = start_server(tmp_path / "a", fake, aof_redis.url, SWITCHBOARD_DATABASE_URL=db)
    b = start_server(tmp_path / "b", fake, aof_redis.url, SWITCHBOARD_DATABASE_URL=db)
    try:
        token = open_session(a)["token"]
        async with widget(a, token) as on_a, widget(b, token) as on_b:
            await on_a.send({"type": "message", "client_id": "m1", "text": "Tell me everything about tents."})
            await on_a.until(lambda f: f["type"] == "ack")
            first = await on_b.until(lambda f: f["type"] == "delta")
            await on_b.until(lambda f: f["type"] == "delta")
            a.kill()
            await on_b.send({"type": "message", "client_id": "m2", "text": "Hello? Are you still there?"})
            sent = time.monotonic()
            await on_b.until(lambda f: f["type"] == "ack")
            aborted = await on_b.until(lambda f: f["type"] == "reply_aborted", BOUND_S + 5)
            await on_b.until(turn_frame, BOUND_S + 5)
            waited = time.monotonic() - sent
            outcome = await on_b.until(answered, BOUND_S)
            acked = on_a.acked() + on_b.acked()
        events = await transcript(b, token)
    finally:
        a.kill()
        b.kill()
    lost, never_ended = account("sigkill_then_new_message", events, acked, waited)

    assert aborted["reply_id"] == first["reply_id"]
    assert waited < 10.0  # the lease (6 s) and a margin, not the dead turn's deadline
    assert outcome["type"] == "status" or outcome["reply_id"] != first["reply_id"]
    assert (lost, never_ended) == (0, 0)


async def test_redis_stopped_while_a_message_is_sent_the_resend_runs_the_turn(
    tmp_path: Path, fake: FakeAnthropic, aof_redis: OwnRedis
) -> None:
    """Redis is SIGSTOPped for 10 s while a message is being stored: the customer gets `unavailable` and
    close 1011; Redis, resumed, stores the message it had received. The widget reconnects and resends the
    same client_id: the resend is acknowledged (stored once) and the turn runs (answer or handoff) within
    the bound, measured from the SIGCONT."""
    fake.reset()
    fake.add_rule(lambda body: triage_reply(confidence=0.95) if is_triage(body) else None)
    fake.add_rule(lambda body: Reply(text=SHORT_ANSWER) if is_answer(body) else None)
    relay = StopOnAppend(aof_redis)
    await relay.start()
    # The relay runs on this event loop: whatever waits on the server meanwhile must not block it.
    server = await asyncio.to_thread(start_server, tmp_path / "s", fake, relay.url)
    try:
        token = (await asyncio.to_thread(open_session, server))["token"]
        customer = Widget(server, token)
        await customer.connect()
        # A first exchange, so the stalled one is a conversation under way (and Redis has the scripts).
        await customer.send({"type": "message", "client_id": "m0", "text": "Hello there."})
        await customer.until(answered)
        relay.armed = True
        try:
            await customer.send(
                {"type": "message", "client_id": "m1", "text": "How long is the return window?"}
            )
            await asyncio.wait_for(relay.stopped.wait(), 10)
            stopped = time.monotonic()
            error = await customer.until(lambda f: f["type"] == "error", 15)
            with contextlib.suppress(websockets.ConnectionClosed):
                await customer.recv(15)
            assert customer.ws is not None
            close_code = customer.ws.close_code
            await asyncio.sleep(max(0.0, 10.0 - (time.monotonic() - stopped)))
        finally:
            aof_redis.signal(signal.SIGCONT)
        resumed = time.monotonic()
        await customer.connect()
        await customer.send({"type": "message", "client_id": "m1", "text": "How long is the return window?"})
        ack = await customer.until(lambda f: f["type"] == "ack")
        outcome = await customer.until(answered, BOUND_S)
        waited = time.monotonic() - resumed
        acked = customer.acked()
        await customer.close()
        events = await transcript(server, token)
    finally:
        server.kill()
        await relay.close()
    lost, never_ended = account("redis_sigstop_resend", events, acked, waited)

    assert (error["code"], close_code) == ("unavailable", 1011)
    customer_seqs = [f["seq"] for f in events if f.get("role") == "customer"]
    assert customer_seqs[1:] == [ack["seq"]]  # stored once
    assert (outcome["type"], outcome.get("text")) == ("message", SHORT_ANSWER)  # confident: answered
    assert waited <= BOUND_S
    assert (lost, never_ended) == (0, 0)


async def test_redis_down_mid_turn_the_turn_ends_with_its_draft(
    tmp_path: Path, fake: FakeAnthropic, aof_redis: OwnRedis
) -> None:
    """Redis is killed while the answer streams and restarted (from its append-only file) 10 s later:
    the turn does not die with it; within 30 s of the message the customer has the whole answer (or a
    handoff that kept the draft), not a bare timeout handoff at the deadline."""
    slow_then_short(fake)
    server = start_server(tmp_path / "s", fake, aof_redis.url)
    try:
        session = open_session(server)
        token = session["token"]
        customer = Widget(server, token)
        await customer.connect()
        await customer.send({"type": "message", "client_id": "m1", "text": "Tell me everything about tents."})
        sent = time.monotonic()
        await customer.until(lambda f: f["type"] == "ack")
        await customer.until(lambda f: f["type"] == "delta")
        await asyncio.sleep(1.0)
        aof_redis.kill()
        await asyncio.sleep(10.0)
        aof_redis.start()
        await customer.close()
        await customer.connect()
        outcome = await customer.until(answered, BOUND_S)
        ended_after = time.monotonic() - sent
        acked = customer.acked()
        await customer.close()
        events = await transcript(server, token)
    finally:
        server.kill()
    lost, never_ended = account("redis_down_mid_turn", events, acked, ended_after)

    assert ended_after <= BOUND_S
    if outcome["type"] == "message":
        assert outcome["text"] == SLOW_ANSWER
    else:  # handed off: the draft is kept for the agent
        assert outcome["state"] == "queued"
        draft = redis.Redis(port=aof_redis.port).hget(
            keys.conv_state(session["conversation_id"]), "draft_text"
        )
        assert draft is not None
    assert (lost, never_ended) == (0, 0)


async def test_redis_restarted_while_a_message_waits_for_the_lease_its_turn_runs_next(
    tmp_path: Path, fake: FakeAnthropic, aof_redis: OwnRedis
) -> None:
    """The customer writes again while the answer to their first message streams (1.5 s), so the new
    message's turn waits for the conversation's turn lease; Redis is SIGKILLed while it waits and started
    again from its append-only file 1 s later. The first answer is stored when its stream ends, and the
    second message's turn starts as soon as the first releases the lease: its outcome is stored within 2 s
    of the first answer, not a lease (6 s) and a recovery sweep later."""
    medium = " ".join(f"m{i:03d}" for i in range(60))  # 1.5 s at ANSWER_TPS
    answers = 0

    def answer(body: dict[str, Any]) -> Reply | None:
        nonlocal answers
        if not is_answer(body):
            return None
        answers += 1
        return Reply(text=medium if answers == 1 else SHORT_ANSWER)

    fake.reset()
    fake.add_rule(lambda body: triage_reply(confidence=0.95) if is_triage(body) else None)
    fake.add_rule(answer)
    fake.set_latency(tps=ANSWER_TPS, model=ANSWER_MODEL)
    server = start_server(tmp_path / "s", fake, aof_redis.url)
    try:
        token = open_session(server)["token"]
        customer = Widget(server, token)
        await customer.connect()
        await customer.send({"type": "message", "client_id": "m1", "text": "Tell me everything about tents."})
        await customer.until(lambda f: f["type"] == "ack")
        await customer.until(lambda f: f["type"] == "delta")
        await customer.send(
            {"type": "message", "client_id": "m2", "text": "And how long is the return window?"}
        )
        second = await customer.until(lambda f: f["type"] == "ack" and f["client_id"] == "m2")
        aof_redis.kill()
        await asyncio.sleep(1.0)
        aof_redis.start()
        await customer.close()
        await customer.connect()
        await customer.until(lambda f: answered(f) and f["seq"] > second["seq"] and f.get("reply_id") != "r1")
        acked = customer.acked()
        await customer.close()
        events = await transcript(server, token)
    finally:
        server.kill()
    outcomes = [f for f in events if answered(f) and f["seq"] > second["seq"]]
    assert len(outcomes) == 2, outcomes  # the first message's answer, then the second's outcome
    first_at, second_at = (datetime.fromisoformat(f["created_at"]) for f in outcomes)
    gap_s = (second_at - first_at).total_seconds()
    lost, never_ended = account("redis_restart_while_waiting_for_lease", events, acked, gap_s)

    assert outcomes[0].get("reply_id") == "r1"
    assert outcomes[0]["text"] == medium
    assert gap_s < 2.0  # started when the lease freed (an answer takes ~0.3 s), not left to recovery
    assert (lost, never_ended) == (0, 0)
