"""Widget HTTP + WebSocket: thin handlers over the session service, the store and the turn runner.

Frames are PROTOCOL.md's. A message is acknowledged only after the store's Lua append returned (it is in
Redis); everything the customer sees afterwards (their message, deltas, the reply, status) arrives through
the conversation's pub/sub channel, so whichever process runs the turn, the customer's process delivers it.
Heartbeats are WebSocket pings sent by the server (uvicorn, every 20 s; a peer that does not answer within
20 s is dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Request, WebSocket, post, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.status_codes import HTTP_201_CREATED
from redis.exceptions import RedisError

from support.conversation.fanout import Listener
from support.conversation.store import ConversationStore
from support.errors import InternalError, RateLimited, ServiceUnavailable, SwitchboardError
from support.runtime import Runtime

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 4000  # a customer message longer than this is a paste of a document, not a chat turn
RATE_BURST = 10  # messages a customer may send at once...
RATE_PER_S = 1.0  # ...refilled at this rate; far above human typing, far below a script
ABUSE_STRIKES = 20  # rate-limit errors after which the socket is closed with 1008
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008


@dataclass
class VisitorIn:
    """Who the visitor says they are (verified later by identity_hash when configured)."""

    id: str | None = None
    name: str | None = None
    email: str | None = None
    identity_hash: str | None = None


@dataclass
class SessionIn:
    """Body of ``POST /api/v1/widget/sessions``."""

    widget_key: str
    visitor: VisitorIn = field(default_factory=VisitorIn)
    token: str | None = None


@dataclass
class SessionOut:
    """A widget session: the conversation and the token the socket needs."""

    conversation_id: str
    token: str
    expires_at: datetime


class FrameError(SwitchboardError):
    """A frame the server cannot accept; the socket stays open."""

    code = "bad_frame"
    http_status = 400


class TokenBucket:
    """Per-connection message rate limit (process-local on purpose: it guards one socket)."""

    def __init__(self, burst: int, rate_per_s: float) -> None:
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.rate = rate_per_s
        self.updated = time.monotonic()

    def take(self) -> bool:
        """Spend one token if available."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class WidgetController(Controller):
    """``/api/v1/widget``."""

    path = "/api/v1/widget"
    tags = ["widget"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @post("/sessions", status_code=HTTP_201_CREATED, summary="Open or renew a widget session")
    async def open_session(
        self, data: SessionIn, request: Request[Any, Any, Any], runtime: Runtime
    ) -> SessionOut:
        """403 unless the widget key exists and the page's Origin is allowed for it."""
        await runtime.limits.new_session(runtime.limits.client(request))
        visitor = {k: v for k, v in vars(data.visitor).items() if v is not None}
        grant = await runtime.widget_sessions.open(
            widget_key=data.widget_key, origin=request.headers.get("origin"), visitor=visitor,
            earlier_token=data.token,
        )  # fmt: skip
        return SessionOut(grant.conversation_id, grant.token, grant.expires_at)

    @websocket("/ws")
    async def socket(self, socket: WebSocket[Any, Any, Any], runtime: Runtime) -> None:
        """The widget's live connection (see PROTOCOL.md for frames)."""
        await WidgetConnection(socket, runtime).serve()


class WidgetConnection:
    """One customer socket."""

    def __init__(self, socket: WebSocket[Any, Any, Any], runtime: Runtime) -> None:
        self.socket = socket
        self.runtime = runtime
        self.store: ConversationStore = runtime.store
        self.bucket = TokenBucket(RATE_BURST, RATE_PER_S)
        self.strikes = 0
        self.send_lock = asyncio.Lock()
        self.conversation_id = ""

    async def send(self, frame: dict[str, Any]) -> None:
        """Frames from the forwarder and the receive loop never interleave mid-write."""
        async with self.send_lock:
            await self.socket.send_text(json.dumps(frame, separators=(",", ":")))

    async def serve(self) -> None:
        """Authenticate, subscribe, then read frames until the client leaves or the process drains."""
        await self.socket.accept()
        try:
            self.conversation_id = self.runtime.widget_sessions.authenticate(
                self.socket.query_params.get("token", "")
            )
        except SwitchboardError as exc:
            await self._close(exc)
            return
        try:
            subscription = await self.runtime.fanout.subscribe(self.conversation_id)
        except SwitchboardError as exc:
            await self._close(exc)
            return
        forwarder = asyncio.create_task(self._forward(subscription))
        self.runtime.widget_sockets.add(self.socket)
        try:
            if self.runtime.draining.is_set():  # checked after registering: a drain cannot miss this socket
                await self.socket.close(code=CLOSE_GOING_AWAY, reason="server restarting")
                return
            while True:
                raw = await self.socket.receive_text()
                if not await self._handle(raw):
                    break
        except (WebSocketDisconnect, OSError):  # the client left (uvicorn's ClientDisconnected: an OSError)
            pass
        except RedisError as exc:
            # Redis failed (down, or the pool had no connection for 10 s) while a frame was handled: that
            # frame was not acknowledged. 1011 makes the widget reconnect, resume and send its unacknowledged
            # messages again (same client_id: stored at most once).
            log.warning("widget socket %s: Redis failed: %r", self.conversation_id, exc)
            with contextlib.suppress(Exception):  # the socket may be broken as well
                await self._close(ServiceUnavailable("the conversation store is unreachable; reconnect"))
        except Exception:
            # Unexpected: logged with its traceback (Litestar would close with 4500 and log nothing).
            log.exception("widget socket %s failed", self.conversation_id)
            with contextlib.suppress(Exception):
                await self._close(InternalError("internal error; reconnect"))
        finally:
            self.runtime.widget_sockets.discard(self.socket)
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await forwarder
            subscription.release()

    async def _close(self, exc: SwitchboardError) -> None:
        """Tell the client why (no ``client_id``: nothing it sent is marked failed) and close the socket
        with the error's close code."""
        await self.send({"type": "error", "code": exc.code, "message": exc.message})
        await self.socket.close(code=exc.ws_close_code, reason=exc.code)

    async def _forward(self, subscription: Listener) -> None:
        async for frame in subscription:
            try:
                await self.send(frame)
            except Exception:
                return
        if subscription.close_code is not None:  # fell behind, or a gap it cannot fill: client resumes
            with contextlib.suppress(Exception):
                await self.socket.close(code=subscription.close_code, reason=subscription.close_reason)

    async def _handle(self, raw: str) -> bool:
        """Handle one frame; False when the connection must end."""
        client_id: str | None = None
        try:
            try:
                frame = json.loads(raw)
            except ValueError as exc:
                raise FrameError("frame is not JSON") from exc
            if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
                raise FrameError("frame must be an object with a string `type`")
            client_id = frame.get("client_id") if isinstance(frame.get("client_id"), str) else None
            return await self._dispatch(frame)
        except SwitchboardError as exc:
            error: dict[str, Any] = {"type": "error", "code": exc.code, "message": exc.message}
            if client_id:
                error["client_id"] = client_id
            if isinstance(exc, RateLimited) and exc.retry_after_s is not None:  # a limit shared by processes
                error["retry_after"] = exc.retry_after_s
            await self.send(error)
            if exc.code == "rate_limited":
                self.strikes += 1
                if self.strikes >= ABUSE_STRIKES:
                    await self.socket.close(code=CLOSE_POLICY, reason="rate limit")
                    return False
            return True

    async def _dispatch(self, frame: dict[str, Any]) -> bool:
        kind = frame["type"]
        cid = self.conversation_id
        now = datetime.now(UTC)
        if kind == "message":
            client_id, text = frame.get("client_id"), frame.get("text")
            if not isinstance(client_id, str) or not client_id or len(client_id) > 128:
                raise FrameError("`client_id` must be a non-empty string of at most 128 characters")
            if not isinstance(text, str) or not text.strip():
                raise FrameError("`text` must be a non-empty string")
            if len(text) > MAX_TEXT_CHARS:
                raise FrameError(f"`text` is longer than {MAX_TEXT_CHARS} characters")
            if not self.bucket.take():
                raise RateLimited("too many messages; slow down")
            await self.runtime.limits.customer_message(cid, self.runtime.limits.client(self.socket))
            # One script stores it, publishes it and begins its turn (the turn lock and the window); the
            # examples' version check runs alongside. Nothing is awaited between the append and start().
            turns = self.runtime.turns
            refreshed = turns.refresh_examples()
            try:
                event, created, context = await self.store.receive_customer_message(
                    cid, client_id, text, now=now, lock_ttl_ms=turns.lock_ttl_ms
                )
            except BaseException:
                refreshed.cancel()
                raise
            if created:
                turns.start(cid, event, context, refreshed)
            else:
                refreshed.cancel()  # a resend starts no turn
            await self.send({"type": "ack", "client_id": client_id, "seq": event.seq})
        elif kind == "resume":
            after = frame.get("after")
            if not isinstance(after, int) or isinstance(after, bool) or after < 0:
                raise FrameError("`after` must be a non-negative integer seq")
            for event in await self.store.events_after(cid, after):
                await self.send(event.to_frame())
        elif kind == "typing":
            await self.store.publish_agent(
                cid, {"type": "typing", "role": "customer", "conversation_id": cid}
            )
        elif kind == "request_human":
            await self.runtime.turns.request_human(cid)
        elif kind == "rating":
            score, comment = frame.get("score"), frame.get("comment")
            if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
                raise FrameError("`score` must be an integer from 1 to 5")
            if comment is not None and (not isinstance(comment, str) or len(comment) > 2000):
                raise FrameError("`comment` must be a string of at most 2000 characters")
            await self.runtime.ratings.record(cid, score=score, comment=comment, now=now)
        elif kind == "close":
            await self.runtime.turns.close(cid)
        else:
            raise FrameError(f"unknown frame type {kind!r}")
        return True
