"""One Redis pub/sub connection per process, multiplexing every conversation channel its sockets follow.

A customer socket used to open its own pub/sub connection; with thousands of sockets per process that is
thousands of Redis connections (and file descriptors on both sides). :class:`Fanout` holds a single
connection and a table ``channel -> listeners``:

- ``subscribe`` counts references: the first listener of a channel sends ``SUBSCRIBE`` and waits until
  Redis confirms it (so a socket that subscribes, then serves ``resume`` from the stream, cannot miss an
  event published between the two); later listeners of the same channel share it. The last ``release``
  sends ``UNSUBSCRIBE``.
- One reader task parses every message and puts it on the listeners' bounded queues without ever
  awaiting a client: a listener whose queue is full (a client that does not read) is ended with close
  code 1013 instead of buffering without limit or stalling the others.
- On a connection failure the reader reconnects (with a capped backoff), resubscribes every channel that
  still has listeners and, once Redis confirmed each, tells its listeners there was a gap: a listener that
  has seen a persisted event replays what it missed from the conversation's stream (``replay``, deduped
  by ``seq``); one that has not ends with close code 1012 so its client reconnects and resumes.

The pub/sub client is passed in and not owned. It must not retry or reconnect on its own (``Retry`` with
0 retries): redis-py would otherwise reconnect and resubscribe silently, and the gap would go unnoticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from support import keys
from support.errors import ServiceUnavailable

log = logging.getLogger(__name__)

# Frames a listener may have waiting. A streamed reply is a few hundred deltas at most; a client this far
# behind is not reading, and holding more only moves the problem into the server's memory.
LISTENER_QUEUE_FRAMES = 1000
SUBSCRIBE_CONFIRM_TIMEOUT_S = 5.0  # Redis answers a SUBSCRIBE in well under a millisecond when healthy
RECONNECT_BACKOFF_S = (0.05, 0.2, 0.5, 1.0, 2.0)  # then stays at the last value
SUBSCRIBE_CHUNK = 500  # channels per SUBSCRIBE command when resubscribing after a reconnect
CLOSE_TRY_AGAIN = 1013  # the client fell behind: reconnect later and resume
CLOSE_SERVICE_RESTART = 1012  # the live feed had a gap this socket cannot fill: reconnect and resume

Replay = Callable[[str, int], Awaitable[list[dict[str, Any]]]]
_END = object()
_GAP = object()


class FanoutUnavailable(ServiceUnavailable):
    """Redis did not confirm a subscription in time (it is down or unreachable)."""

    code = "unavailable"


class Listener:
    """One socket's view of one conversation channel: ``async for frame in listener``.

    Iteration ends when the listener is released, falls behind, or hits a gap it cannot fill; then
    ``close_code``/``close_reason`` say how the socket should be closed (None: it should not).
    """

    def __init__(self, fanout: Fanout, conversation_id: str, channel: bytes, max_frames: int) -> None:
        self.conversation_id = conversation_id
        self.channel = channel
        self.close_code: int | None = None
        self.close_reason = ""
        self.last_seq: int | None = None  # highest persisted seq this listener delivered
        self._fanout = fanout
        self._max_frames = max_frames
        self._items: deque[object] = deque()
        self._wake = asyncio.Event()
        self._replayed: deque[dict[str, Any]] = deque()
        self._ended = False

    # -- called by the reader ----------------------------------------------------------------------

    def _push(self, item: object) -> bool:
        """Queue a raw payload or a signal; False when the listener is full (the caller ends it)."""
        if self._ended:
            return True
        if item is not _END and len(self._items) >= self._max_frames:
            return False
        self._items.append(item)
        self._wake.set()
        return True

    def _end(self, code: int | None, reason: str) -> None:
        if self._ended:
            return
        self.close_code, self.close_reason = code, reason
        self._items.clear()
        self._items.append(_END)
        self._ended = True
        self._wake.set()

    # -- called by the socket ----------------------------------------------------------------------

    def __aiter__(self) -> Listener:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while True:
            if self._replayed:
                return self._replayed.popleft()
            while not self._items:
                self._wake.clear()
                await self._wake.wait()
            item = self._items.popleft()
            if item is _END:
                self._items.append(_END)  # iteration stays finished
                raise StopAsyncIteration
            if item is _GAP:
                await self._fill_gap()
                continue
            assert isinstance(item, bytes)
            frame: dict[str, Any] = json.loads(item)
            if self._seen(frame):
                return frame

    def _seen(self, frame: dict[str, Any]) -> bool:
        """Track the highest persisted seq; False for a persisted event already delivered (after a replay)."""
        seq = frame.get("seq")
        if not isinstance(seq, int) or frame.get("type") not in ("message", "status"):
            return True
        if self.last_seq is not None and seq <= self.last_seq:
            # A queue-position update repeats its status event's seq on purpose (protocol.md): pass it.
            return frame.get("type") == "status" and "queue_position" in frame
        self.last_seq = seq
        return True

    async def _fill_gap(self) -> None:
        replay = self._fanout.replay
        if replay is None or self.last_seq is None:
            self._end(CLOSE_SERVICE_RESTART, "live feed interrupted; resume")
            return
        for frame in await replay(self.conversation_id, self.last_seq):
            if self._seen(frame):
                self._replayed.append(frame)

    def release(self) -> None:
        """Stop listening; the last listener of a channel unsubscribes it. Idempotent."""
        self._end(self.close_code, self.close_reason)
        self._fanout._release(self)


class Fanout:
    """The process's shared subscriber (see the module docstring). Start it once, close it at shutdown."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        replay: Replay | None = None,
        max_frames: int = LISTENER_QUEUE_FRAMES,
        confirm_timeout_s: float = SUBSCRIBE_CONFIRM_TIMEOUT_S,
    ) -> None:
        self.redis = redis
        self.replay = replay
        self.max_frames = max_frames
        self.confirm_timeout_s = confirm_timeout_s
        self.reconnects = 0  # connections made after the first (observability and tests)
        self._listeners: dict[bytes, set[Listener]] = {}
        self._sent: dict[bytes, int] = {}  # SUBSCRIBE commands sent per channel on this connection
        self._seen: dict[bytes, int] = {}  # subscribe confirmations read per channel on this connection
        self._waiters: dict[bytes, list[tuple[int, asyncio.Future[None]]]] = {}
        self._resync: dict[bytes, set[Listener]] = {}  # listeners that were live when the connection broke
        self._pubsub: PubSub | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def channels(self) -> int:
        """Channels subscribed (or being subscribed) right now."""
        return len(self._listeners)

    async def start(self) -> None:
        """Start the reader, which connects (and keeps reconnecting while Redis is down: sockets get
        ``unavailable`` until the connection is up). ``serve`` has checked that a configured Redis answers
        before this; an embedded one may still be restarting."""
        self._task = asyncio.create_task(self._run(), name="fanout-reader")

    async def aclose(self) -> None:
        """End every listener, stop the reader and close the connection."""
        self._closing = True
        for listeners in list(self._listeners.values()):
            for listener in list(listeners):
                listener._end(None, "")
        self._listeners.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._disconnect()

    async def subscribe(self, conversation_id: str) -> Listener:
        """A listener of the conversation, returned once Redis has confirmed the channel's subscription."""
        channel = keys.conv_channel(conversation_id).encode()
        listener = Listener(self, conversation_id, channel, self.max_frames)
        try:
            async with asyncio.timeout(self.confirm_timeout_s):
                await self._connected.wait()
                listeners = self._listeners.setdefault(channel, set())
                listeners.add(listener)
                waiter = self._pending(channel)
                if len(listeners) == 1 and waiter is None:
                    waiter = await self._send_subscribe([channel])
                if waiter is not None:
                    await asyncio.shield(waiter)
        except (TimeoutError, RedisError, OSError) as exc:
            listener.release()
            raise FanoutUnavailable("live updates are unavailable; try again") from exc
        return listener

    # -- internals ---------------------------------------------------------------------------------

    def _pending(self, channel: bytes) -> asyncio.Future[None] | None:
        waiters = self._waiters.get(channel)
        return waiters[-1][1] if waiters else None

    async def _send_subscribe(self, channels: list[bytes]) -> asyncio.Future[None] | None:
        """Send SUBSCRIBE; returns the future of the last channel's confirmation."""
        pubsub = self._pubsub
        if pubsub is None:
            raise ConnectionError("not connected")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] | None = None
        for channel in channels:
            self._sent[channel] = self._sent.get(channel, 0) + 1
            future = loop.create_future()
            self._waiters.setdefault(channel, []).append((self._sent[channel], future))
        await pubsub.execute_command("SUBSCRIBE", *channels)
        return future

    def _release(self, listener: Listener) -> None:
        listeners = self._listeners.get(listener.channel)
        if listeners is None or listener not in listeners:
            return
        listeners.discard(listener)
        if listeners or self._closing:
            return
        del self._listeners[listener.channel]
        self._resync.pop(listener.channel, None)
        pubsub = self._pubsub
        if pubsub is not None and self._connected.is_set():
            # Fire and forget is safe: the reply is consumed by the reader; a failure means the connection
            # is gone and with it the subscription.
            task = asyncio.create_task(self._unsubscribe(pubsub, listener.channel))
            task.add_done_callback(_ignore_result)

    async def _unsubscribe(self, pubsub: PubSub, channel: bytes) -> None:
        if channel in self._listeners:  # someone subscribed again in between: keep it
            return
        with contextlib.suppress(RedisError, OSError):
            await pubsub.execute_command("UNSUBSCRIBE", channel)

    async def _connect(self) -> None:
        pubsub = self.redis.pubsub()
        try:
            await pubsub.connect()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2
        except BaseException:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
            raise
        self._pubsub = pubsub
        self._sent.clear()
        self._seen.clear()
        channels = list(self._listeners)
        self._resync = {channel: set(self._listeners[channel]) for channel in channels}
        self._connected.set()
        for i in range(0, len(channels), SUBSCRIBE_CHUNK):
            await self._send_subscribe(channels[i : i + SUBSCRIBE_CHUNK])

    async def _disconnect(self) -> None:
        self._connected.clear()
        pubsub, self._pubsub = self._pubsub, None
        error = ConnectionError("pub/sub connection lost")
        for waiters in self._waiters.values():
            for _, future in waiters:
                if not future.done():
                    future.set_exception(error)
                    future.exception()  # retrieved: a waiter that gave up must not log it
        self._waiters.clear()
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    async def _run(self) -> None:
        attempt = 0
        connected_before = False
        while True:
            try:
                if self._pubsub is None:
                    await self._connect()
                    if connected_before:
                        self.reconnects += 1
                        log.info("fanout: reconnected, resubscribing %d channels", len(self._listeners))
                    connected_before = True
                attempt = 0
                await self._read_forever()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, RuntimeError) as exc:
                if self._pubsub is not None:
                    log.warning("fanout: pub/sub connection lost (%s); reconnecting", exc)
                await self._disconnect()
                await asyncio.sleep(RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)])
                attempt += 1

    async def _read_forever(self) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        while True:
            msg = await pubsub.get_message(timeout=None)
            if msg is None:
                continue
            kind, channel = msg["type"], msg["channel"]
            if kind == "message":
                for listener in list(self._listeners.get(channel, ())):
                    if not listener._push(msg["data"]):
                        log.warning("fanout: a client of %s fell behind; closing it", channel)
                        listener._end(CLOSE_TRY_AGAIN, "client too slow")
                        listener.release()
            elif kind == "subscribe":
                self._confirmed(channel)

    def _confirmed(self, channel: bytes) -> None:
        seen = self._seen[channel] = self._seen.get(channel, 0) + 1
        waiters = self._waiters.get(channel, [])
        while waiters and waiters[0][0] <= seen:
            _, future = waiters.pop(0)
            if not future.done():
                future.set_result(None)
        if not waiters:
            self._waiters.pop(channel, None)
        if channel in self._resync and seen >= self._sent.get(channel, 0):
            live = self._listeners.get(channel, set())
            for listener in self._resync.pop(channel) & live:
                if not listener._push(_GAP):
                    listener._end(CLOSE_TRY_AGAIN, "client too slow")
                    listener.release()


def _ignore_result(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
