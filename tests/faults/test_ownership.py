"""Who owns a conversation, enforced where the bytes leave; and offline answers while the model API is down.

Real `switchboard serve` processes on one Redis and one database, the fake model API streaming the answer
slowly (hundreds of small paced deltas), a real widget WebSocket and the real agent HTTP API. Each test also
accounts for what the customer was promised: messages acknowledged, acknowledged messages missing from the
transcript (lost), turns that never ended (no answer and no handoff after the message, or the turn lock
still held), and the worst wait from something the customer sent to the next frame they received. Each
prints one ``reliability`` line with those numbers (``pytest -s`` shows them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import websockets

from support import keys
from support.settings import LLMSettings
from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests.integration.test_handoff import create_agent, login, user_text
from tests.integration.test_widget_ws import is_answer, is_triage, open_session, start_server, triage_reply
from tests.servers import ServerProcess

ANSWER_MODEL = LLMSettings.model_fields["answer_model"].default
# About 400 deltas of one word each, paced at 40 tokens/s (two tokens a word): a 20 s answer, so every
# fault below lands while it streams.
SLOW_ANSWER = " ".join(f"w{i:05d}" for i in range(400))
ANSWER_TPS = 40.0
SHORT_QUESTION = "Thanks. And how long is the return window?"
SHORT_ANSWER = "You have 30 days to return unused gear."
QUIET_S = 2.0  # after the handoff, how long the customer's socket is watched for a stray bot frame
RECV_TIMEOUT_S = 15.0


def bot_frame(frame: dict[str, Any]) -> bool:
    """A frame the bot speaks with: a delta, an assistant message, the assistant typing."""
    if frame["type"] == "delta":
        return True
    return frame["type"] in ("message", "typing") and frame.get("role") == "assistant"


@dataclass
class Customer:
    """A widget client that timestamps what it sends and receives."""

    ws: websockets.ClientConnection
    frames: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)

    async def send(self, frame: dict[str, Any]) -> None:
        self.sent.append(time.monotonic())
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout_s: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout_s))
        self.frames.append((time.monotonic(), frame))
        return frame

    async def until(self, pred: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        seen = []
        while True:
            seen.append(await self.recv())
            if pred(seen[-1]):
                return seen

    async def quiet_for(self, seconds: float) -> list[dict[str, Any]]:
        """Every frame received in the next ``seconds``."""
        seen = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                seen.append(await self.recv(left))
            except TimeoutError:
                break
        return seen

    def acked(self) -> list[int]:
        return [f["seq"] for _, f in self.frames if f["type"] == "ack"]

    def worst_wait_s(self) -> float:
        """The longest wait from a frame this client sent to the next frame it received."""
        worst = 0.0
        for sent in self.sent:
            later = [at for at, _ in self.frames if at >= sent]
            worst = max(worst, (min(later) if later else time.monotonic()) - sent)
        return worst


@contextlib.asynccontextmanager
async def customer_on(server: ServerProcess, token: str) -> AsyncIterator[Customer]:
    async with websockets.connect(f"ws://127.0.0.1:{server.port}/api/v1/widget/ws?token={token}") as ws:
        yield Customer(ws)


@dataclass
class Desk:
    """Servers sharing Redis and a database, with one agent."""

    servers: list[ServerProcess]
    db_path: Path
    redis: aioredis.Redis
    tokens: dict[str, str] = field(default_factory=dict)  # conversation id -> its widget session token

    def ledger(self, conversation_id: str, purpose: str) -> list[str]:
        with contextlib.closing(sqlite3.connect(self.db_path)) as db:
            rows = db.execute(
                "SELECT outcome FROM model_usage WHERE conversation_id = ? AND purpose = ? ORDER BY id",
                (conversation_id, purpose),
            ).fetchall()
        return [row[0] for row in rows]

    async def wait_ledger(self, conversation_id: str, purpose: str, timeout_s: float = 10.0) -> list[str]:
        """The call's rows, once the turn's bookkeeping wrote them (polling the other process's database)."""
        rows: list[str] = []
        for _ in range(int(timeout_s / 0.1)):
            rows = self.ledger(conversation_id, purpose)
            if rows:
                break
            await asyncio.sleep(0.1)
        return rows

    async def transcript(self, conversation_id: str) -> list[dict[str, Any]]:
        """The persisted events, as a reconnecting widget gets them: ``resume`` from 0 on a new socket."""
        async with customer_on(self.servers[0], self.token_of(conversation_id)) as reader:
            await reader.send({"type": "resume", "after": 0})
            return [f for f in await reader.quiet_for(1.0) if "seq" in f]

    def token_of(self, conversation_id: str) -> str:
        return self.tokens[conversation_id]

    def open(self) -> dict[str, Any]:
        session = open_session(self.servers[0])
        self.tokens[session["conversation_id"]] = session["token"]
        return session

    async def turn_lock_held(self, conversation_id: str, timeout_s: float = 10.0) -> bool:
        """True if the conversation's turn lock is still held ``timeout_s`` from now: a turn that never
        ended (a handed-off turn may hold it a little longer, while its draft is collected for the agent)."""
        lock = keys.conv_lock(conversation_id, "turn")
        for _ in range(int(timeout_s / 0.1)):
            if not await self.redis.exists(lock):
                return False
            await asyncio.sleep(0.1)
        return True


@pytest.fixture
def fake_api(fake: FakeAnthropic) -> FakeAnthropic:
    """Triage is confident; the first question's answer is long and paced, the short question's short."""
    fake.reset()
    fake.add_rule(lambda body: triage_reply(confidence=0.95) if is_triage(body) else None)
    fake.add_rule(
        lambda body: (
            Reply(text=SHORT_ANSWER if SHORT_QUESTION in user_text(body) else SLOW_ANSWER)
            if is_answer(body)
            else None
        )
    )
    fake.set_latency(tps=ANSWER_TPS, model=ANSWER_MODEL)
    return fake


@pytest.fixture
def desk_factory(
    tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: aioredis.Redis
) -> Iterator[Callable[[int], Desk]]:
    started: list[ServerProcess] = []

    def make(n: int) -> Desk:
        db_path = tmp_path / "shared.sqlite3"
        db = f"sqlite+aiosqlite:///{db_path}"
        create_agent(db, tmp_path, "ada@example.com", "Ada")
        started.extend(
            start_server(tmp_path / f"s{i}", fake_api, redis_url, SWITCHBOARD_DATABASE_URL=db)
            for i in range(n)
        )
        return Desk(list(started), db_path, redis_client)

    try:
        yield make
    finally:
        for server in started:
            server.kill()


def account(
    name: str, transcript: list[dict[str, Any]], acked: list[int], held: bool, worst_wait_s: float
) -> tuple[int, int]:
    """Print the scenario's reliability line; return (lost, never ended)."""
    seqs = {f["seq"] for f in transcript}
    lost = sum(1 for seq in acked if seq not in seqs)
    ended = [
        f["seq"]
        for f in transcript
        if f["type"] == "status" or (f["type"] == "message" and f["role"] in ("assistant", "agent"))
    ]
    never_ended = sum(1 for seq in acked if not any(end > seq for end in ended)) + int(held)
    print(
        f"\nreliability {name}: acknowledged={len(acked)} lost={lost} never_ended={never_ended} "
        f"worst_wait_to_next_frame_s={worst_wait_s:.3f}"
    )
    return lost, never_ended


async def start_streaming(customer: Customer) -> int:
    """Send the long question and wait until its answer is streaming; the customer message's seq."""
    await customer.send({"type": "message", "client_id": "m1", "text": "Tell me everything about tents."})
    frames = await customer.until(lambda f: f["type"] == "delta")
    return int(frames[-1]["reply_id"][1:])  # reply ids are r<seq of the message they answer>


async def test_request_human_mid_stream_silences_the_bot_and_withdraws_its_reply(
    desk_factory: Callable[[int], Desk],
) -> None:
    """After `status queued` the customer gets no bot delta, message or typing, gets `reply_aborted` for the
    reply it had started to see, nothing of the reply is persisted, and the cancelled answer call is in the
    ledger."""
    desk = desk_factory(1)
    server = desk.servers[0]
    cid = desk.open()["conversation_id"]
    async with customer_on(server, desk.token_of(cid)) as customer:
        seq = await start_streaming(customer)
        await customer.send({"type": "request_human"})
        await customer.until(lambda f: f["type"] == "status" and f["state"] == "queued")
        after = await customer.quiet_for(QUIET_S)
    transcript = await desk.transcript(cid)
    packet = httpx.get(
        f"{server.url}/api/v1/agent/conversations/{cid}", headers=login(server, "ada@example.com")
    ).json()
    ledger = await desk.wait_ledger(cid, "answer")
    lost, never_ended = account(
        "request_human_mid_stream", transcript, customer.acked(), await desk.turn_lock_held(cid),
        customer.worst_wait_s(),
    )  # fmt: skip

    assert [f for f in after if bot_frame(f)] == []
    assert {"type": "reply_aborted", "reply_id": f"r{seq}"} in after
    assert [f for f in transcript if f.get("role") == "assistant"] == []
    assert [f for f in packet["transcript"] if f.get("role") == "assistant"] == []
    assert ledger == ["error:abandoned"]
    assert (lost, never_ended) == (0, 0)


async def test_claim_mid_stream_on_another_process_silences_the_bot(
    desk_factory: Callable[[int], Desk],
) -> None:
    """The turn streams on server A; the customer, connected to server B, asks for a person there and an
    agent claims on B at once: after `status queued`, and after `status agent`, B's socket carries no bot
    frame, it gets `reply_aborted`, no reply is persisted and the answer call is in the ledger."""
    desk = desk_factory(2)
    a, b = desk.servers
    cid = desk.open()["conversation_id"]
    ada = login(b, "ada@example.com")
    async with customer_on(a, desk.token_of(cid)) as on_a, customer_on(b, desk.token_of(cid)) as on_b:
        seq = await start_streaming(on_a)
        await on_b.until(lambda f: f["type"] == "delta")
        await on_b.send({"type": "request_human"})
        await on_b.until(lambda f: f["type"] == "status" and f["state"] == "queued")
        claimed = httpx.post(f"{b.url}/api/v1/agent/conversations/{cid}/claim", headers=ada)
        after_queued = await on_b.until(lambda f: f["type"] == "status" and f["state"] == "agent")
        after_agent = await on_b.quiet_for(QUIET_S)
    transcript = await desk.transcript(cid)
    packet = httpx.get(f"{b.url}/api/v1/agent/conversations/{cid}", headers=ada).json()
    ledger = await desk.wait_ledger(cid, "answer")
    lost, never_ended = account(
        "claim_mid_stream_cross_process", transcript, on_a.acked(), await desk.turn_lock_held(cid),
        max(on_a.worst_wait_s(), on_b.worst_wait_s()),
    )  # fmt: skip

    assert claimed.status_code == 200, claimed.text
    assert [f for f in after_queued + after_agent if bot_frame(f)] == []
    assert {"type": "reply_aborted", "reply_id": f"r{seq}"} in after_queued + after_agent
    assert [f for f in transcript if f.get("role") == "assistant"] == []
    assert [f for f in packet["transcript"] if f.get("role") == "assistant"] == []
    assert ledger == ["error:abandoned"]
    assert (lost, never_ended) == (0, 0)


async def test_return_to_bot_then_a_new_message_gets_a_clean_answer(
    desk_factory: Callable[[int], Desk],
) -> None:
    """Handed off mid-stream, claimed, returned to the bot: the next message is answered normally, and
    nothing of the interrupted reply reaches the customer after the handoff."""
    desk = desk_factory(1)
    server = desk.servers[0]
    cid = desk.open()["conversation_id"]
    ada = login(server, "ada@example.com")
    base = f"{server.url}/api/v1/agent/conversations/{cid}"
    async with customer_on(server, desk.token_of(cid)) as customer:
        first = await start_streaming(customer)
        await customer.send({"type": "request_human"})
        await customer.until(lambda f: f["type"] == "status" and f["state"] == "queued")
        assert httpx.post(f"{base}/claim", headers=ada).status_code == 200
        after = await customer.until(lambda f: f["type"] == "status" and f["state"] == "agent")
        assert httpx.post(f"{base}/return-to-bot", headers=ada).status_code == 200
        after += await customer.until(lambda f: f["type"] == "status" and f["state"] == "bot")
        await customer.send({"type": "message", "client_id": "m2", "text": SHORT_QUESTION})
        after += await customer.until(lambda f: f["type"] == "message" and f["role"] == "assistant")
    transcript = await desk.transcript(cid)
    lost, never_ended = account(
        "return_to_bot", transcript, customer.acked(), await desk.turn_lock_held(cid),
        customer.worst_wait_s(),
    )  # fmt: skip

    stale = [f for f in after if bot_frame(f) and f.get("reply_id") == f"r{first}"]
    reply = after[-1]
    deltas = "".join(f["text"] for f in after if f["type"] == "delta" and f["reply_id"] == reply["reply_id"])
    assert stale == []
    assert (reply["text"], deltas) == (SHORT_ANSWER, SHORT_ANSWER)
    assert [f["text"] for f in transcript if f.get("role") == "assistant"] == [SHORT_ANSWER]
    assert (lost, never_ended) == (0, 0)


KNOWN = "How long do I have to return a tent?"
UNKNOWN = "Can you engrave our names on a wedding tent?"


@pytest.fixture
def model_down(fake_api: FakeAnthropic) -> FakeAnthropic:
    """The model API answers every request 529 (overloaded), with a key set."""
    fake_api.fail_next(529, n=10_000)
    return fake_api


async def ask_with_model_down(desk: Desk, question: str) -> tuple[Customer, list[dict[str, Any]], str]:
    cid = desk.open()["conversation_id"]
    async with customer_on(desk.servers[0], desk.token_of(cid)) as customer:
        await customer.send({"type": "message", "client_id": "m1", "text": question})
        frames = await customer.until(
            lambda f: (f["type"] == "message" and f["role"] == "assistant") or f["type"] == "status"
        )
    return customer, frames, cid


async def test_model_down_a_policy_question_gets_an_offline_answer(
    desk_factory: Callable[[int], Desk], model_down: FakeAnthropic
) -> None:
    """Key set, model API down: a question the policy answers gets the offline (help-centre) answer, not a
    person's queue."""
    desk = desk_factory(1)
    customer, frames, cid = await ask_with_model_down(desk, KNOWN)
    transcript = await desk.transcript(cid)
    lost, never_ended = account(
        "model_down_known", transcript, customer.acked(), await desk.turn_lock_held(cid),
        customer.worst_wait_s(),
    )  # fmt: skip
    print(f"reliability model_down_known: time_to_answer_s={customer.frames[-1][0] - customer.sent[0]:.3f}")

    assert (frames[-1]["type"], "30 days" in frames[-1].get("text", "")) == ("message", True)
    assert (lost, never_ended) == (0, 0)


async def test_model_down_an_uncovered_question_goes_to_a_person(
    desk_factory: Callable[[int], Desk], model_down: FakeAnthropic
) -> None:
    """Key set, model API down, nothing in the policy or examples: the turn hands off."""
    desk = desk_factory(1)
    customer, frames, cid = await ask_with_model_down(desk, UNKNOWN)
    transcript = await desk.transcript(cid)
    lost, never_ended = account(
        "model_down_unknown", transcript, customer.acked(), await desk.turn_lock_held(cid),
        customer.worst_wait_s(),
    )  # fmt: skip
    waited = customer.frames[-1][0] - customer.sent[0]
    print(f"reliability model_down_unknown: time_to_handoff_s={waited:.3f}")

    assert (frames[-1]["type"], frames[-1].get("state")) == ("status", "queued")
    assert (lost, never_ended) == (0, 0)
