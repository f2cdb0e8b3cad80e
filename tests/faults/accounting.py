"""What a fault test promises a customer, counted the same way in every fault test that uses it.

Per scenario: messages the customer got an ``ack`` for; of those, missing from the transcript a reconnecting
widget gets (``resume`` from 0) — lost; turns that never ended (an acknowledged customer message followed by
neither an assistant/agent message nor a ``status``, and not written to people: see :func:`turn_ended`); and
the worst wait from a frame a customer sent to the next frame it received. :func:`report` prints the one
``reliability`` line each scenario owes (``pytest -s`` shows it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import websockets

from tests.servers import ServerProcess

RECV_TIMEOUT_S = 40.0  # longer than any bound a fault test asserts: the assertion, not the read, fails


@dataclass
class Widget:
    """A customer's widget: timestamps what it sends and receives, reconnects and resends like widget.js.

    widget.js keeps every message it has not seen an ``ack`` for and sends it again, with the same
    ``client_id``, on its next connection; the server stores a ``client_id`` once. :meth:`send_message`
    does the same: a message goes out until it is acknowledged, over as many connections as that takes.
    """

    server: ServerProcess
    token: str
    ws: websockets.ClientConnection | None = None
    frames: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    reconnects: int = 0
    last_seq: int = 0

    async def connect(self, timeout_s: float = 60.0) -> None:
        """(Re)open the socket, retrying while the server cannot take it, then ``resume`` after the last
        event seen (what the widget does after a drop)."""
        await self.close()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.ws = await websockets.connect(
                    f"ws://127.0.0.1:{self.server.port}/api/v1/widget/ws?token={self.token}", open_timeout=5
                )
                await self.send_frame({"type": "resume", "after": self.last_seq})
                return
            except (OSError, websockets.WebSocketException, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
            self.ws = None

    async def send_frame(self, frame: dict[str, Any]) -> None:
        assert self.ws is not None
        self.sent.append(time.monotonic())
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout_s: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        assert self.ws is not None
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout_s))
        self.frames.append((time.monotonic(), frame))
        if "seq" in frame and frame["type"] != "ack":
            self.last_seq = max(self.last_seq, int(frame["seq"]))
        return frame

    async def send_message(self, client_id: str, text: str, timeout_s: float = 60.0) -> int:
        """Send until acknowledged (reconnecting and resending on a dropped socket or an ``error``
        frame); the message's seq."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.ws is None:
                    await self.connect()
                await self.send_frame({"type": "message", "client_id": client_id, "text": text})
                while True:
                    frame = await self.recv(max(0.1, deadline - time.monotonic()))
                    if frame["type"] == "ack" and frame.get("client_id") == client_id:
                        return int(frame["seq"])
                    if frame["type"] == "error":
                        raise ConnectionError(f"error frame: {frame}")
            except (OSError, ConnectionError, websockets.WebSocketException, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                self.reconnects += 1
                await self.close()
                await asyncio.sleep(0.2)

    async def until_outcome(self, after_seq: int, timeout_s: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        """Read (reconnecting if the socket drops) until the turn of message ``after_seq`` ends: an
        assistant or agent message or a ``status`` with a larger seq, or the ``status`` that had already
        given the conversation to people when the message was stored (see :func:`turn_ended`). That frame."""
        deadline = time.monotonic() + timeout_s
        outcome = turn_ended([f for _, f in self.frames], after_seq)
        if outcome is not None:
            return outcome
        while True:
            try:
                if self.ws is None:
                    await self.connect()
                await self.recv(max(0.1, deadline - time.monotonic()))
                outcome = turn_ended([f for _, f in self.frames], after_seq)
                if outcome is not None:
                    return outcome
            except (OSError, websockets.WebSocketException):
                if time.monotonic() > deadline:
                    raise
                self.reconnects += 1
                await self.close()
                await asyncio.sleep(0.2)

    def acked(self) -> list[int]:
        return sorted({int(f["seq"]) for _, f in self.frames if f["type"] == "ack"})

    def worst_wait_s(self) -> float:
        """The longest wait from a frame this client sent to the next frame it received."""
        worst = 0.0
        for sent in self.sent:
            later = [at for at, _ in self.frames if at >= sent]
            worst = max(worst, (min(later) if later else time.monotonic()) - sent)
        return worst

    async def transcript(self) -> list[dict[str, Any]]:
        """The persisted events, as a reconnecting widget gets them: ``resume`` from 0 on a new socket."""
        url = f"ws://127.0.0.1:{self.server.port}/api/v1/widget/ws?token={self.token}"
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"type": "resume", "after": 0}))
            events: list[dict[str, Any]] = []
            with contextlib.suppress(TimeoutError):
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                    if "seq" in frame and frame["type"] != "ack":
                        events.append(frame)
            return events


def ends_turn(frame: dict[str, Any], after_seq: int) -> bool:
    """Whether ``frame`` ends the turn of customer message ``after_seq``."""
    if int(frame.get("seq", 0)) <= after_seq or frame["type"] == "ack":
        return False
    return frame["type"] == "status" or (
        frame["type"] == "message" and frame.get("role") in ("assistant", "agent")
    )


def turn_ended(events: Iterable[dict[str, Any]], seq: int) -> dict[str, Any] | None:
    """The event that ends the turn of customer message ``seq`` among a conversation's ``events``, or None.

    Either a later event that ends it (:func:`ends_turn`), or, for a message written while people had the
    conversation (its latest ``status`` before the message is ``queued`` or ``agent``), that status: such a
    message goes to the agents (the engine's ``PublishToAgent``), the bot never answers it, and nothing
    follows it in the transcript until a person does; it ended with people, which the promise allows.
    """
    events = [f for f in events if "seq" in f and f["type"] != "ack"]
    later = [f for f in events if ends_turn(f, seq)]
    if later:
        return later[0]  # the first to arrive (a transcript is in seq order)
    before = [f for f in events if f["type"] == "status" and int(f["seq"]) < seq]
    if before:
        last = max(before, key=lambda f: int(f["seq"]))
        if last.get("state") in ("queued", "agent"):
            return last
    return None


@dataclass
class Tally:
    acked: int
    lost: int
    never_ended: int
    worst_wait_s: float


async def tally_widgets(widgets: Iterable[Widget]) -> Tally:
    """:func:`tally` over widgets, their transcripts read concurrently."""
    widgets = list(widgets)
    transcripts = await asyncio.gather(*(w.transcript() for w in widgets))
    return tally((w.acked(), t, w.worst_wait_s()) for w, t in zip(widgets, transcripts, strict=True))


def tally(results: Iterable[tuple[list[int], list[dict[str, Any]], float]]) -> Tally:
    """Sum per-customer (acknowledged seqs, transcript, worst wait) into one scenario's numbers."""
    total = Tally(0, 0, 0, 0.0)
    for acked, transcript, worst in results:
        seqs = {f["seq"] for f in transcript}
        total.acked += len(acked)
        total.lost += sum(1 for seq in acked if seq not in seqs)
        total.never_ended += sum(1 for seq in acked if turn_ended(transcript, seq) is None)
        total.worst_wait_s = max(total.worst_wait_s, worst)
    return total


def report(name: str, numbers: Tally, **extra: float) -> None:
    """Print the scenario's ``reliability`` line."""
    more = "".join(f" {k}={v:.2f}s" for k, v in extra.items())
    print(
        f"\nreliability {name} acked={numbers.acked} lost={numbers.lost} never_ended={numbers.never_ended} "
        f"worst_wait={numbers.worst_wait_s:.2f}s{more}"
    )
