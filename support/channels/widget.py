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
import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Litestar, Request, WebSocket, post, websocket
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.status_codes import HTTP_201_CREATED
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)

from support import metrics
from support.channels.socket_failures import end_socket
from support.channels.widget_frames import (
    ClientFrame,
    CloseFrame,
    ContactFrame,
    FrameError,
    MessageFrame,
    RatingFrame,
    RequestHumanFrame,
    ResumeFrame,
    TypingFrame,
    client_id_of,
    encode_frame,
    parse_frame,
)
from support.channels.widget_sessions import VisitorClaims
from support.conversation.fanout import Listener
from support.conversation.store import ConversationStore
from support.errors import InternalError, RateLimited, ServiceUnavailable, SwitchboardError
from support.openapi_errors import errors
from support.runtime import Runtime

log = logging.getLogger(__name__)

RATE_BURST = 10  # messages a customer may send at once...
RATE_PER_S = 1.0  # ...refilled at this rate; far above human typing, far below a script
ABUSE_STRIKES = 20  # rate-limit errors after which the socket is closed with 1008
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008

# Visitor fields are claims a page makes about its visitor and are shown to agents: long enough for any
# real value, short enough that a field cannot carry a document (200,000 characters used to be stored).
VISITOR_ID_MAX_CHARS = 256  # a user id, UUID or e-mail address used as an id
VISITOR_NAME_MAX_CHARS = 200
EMAIL_MAX_CHARS = 254  # RFC 5321's longest usable address
IDENTITY_HASH_MAX_CHARS = 128  # a SHA-256 HMAC in hex is 64; anything longer cannot be one
WIDGET_KEY_MAX_CHARS = 128
TOKEN_MAX_CHARS = 4096  # a session token is about 250 characters
# local@domain.tld: no spaces, one @, dot-separated labels. Each part excludes the separator after it,
# so matching is linear (no backtracking on a hostile 200 k-character value).
EMAIL_PATTERN = r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$"


class VisitorIn(msgspec.Struct, kw_only=True):
    """Who the visitor says they are; with an identity secret for the key, ``identity_hash`` proves ``id``."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=VISITOR_ID_MAX_CHARS)] | None = None
    name: Annotated[str, msgspec.Meta(max_length=VISITOR_NAME_MAX_CHARS)] | None = None
    email: Annotated[str, msgspec.Meta(max_length=EMAIL_MAX_CHARS, pattern=EMAIL_PATTERN)] | None = None
    identity_hash: Annotated[str, msgspec.Meta(max_length=IDENTITY_HASH_MAX_CHARS)] | None = None


class SessionIn(msgspec.Struct, kw_only=True):
    """Body of ``POST /api/v1/widget/sessions``."""

    widget_key: Annotated[str, msgspec.Meta(min_length=1, max_length=WIDGET_KEY_MAX_CHARS)]
    visitor: VisitorIn = msgspec.field(default_factory=VisitorIn)
    token: Annotated[str, msgspec.Meta(max_length=TOKEN_MAX_CHARS)] | None = None


class SessionOut(msgspec.Struct):
    """A widget session: the conversation and the token the socket needs."""

    conversation_id: str
    token: str
    expires_at: datetime
    # The admin lets this widget key show a "Source" line under answers (SWITCHBOARD_WIDGET_SHOW_SOURCES).
    show_sources: bool = False


CORS_MAX_AGE_S = 600  # a browser reuses a preflight this long (Chromium caps it at 7200)


class WidgetCORSMiddleware(ASGIMiddleware):
    """CORS for the widget's HTTP routes only (agent and admin routes never carry CORS headers).

    A widget runs on the company's own site, another origin than Switchboard's. Origins allowed for any
    widget key get ``Access-Control-Allow-Origin: <origin>`` on preflights and on responses (errors
    included, so the widget can read a refusal); other origins get no CORS header at all, and their
    preflight a 403. A preflight names no widget key, hence the union of every key's origins; the session
    request itself is still checked against its own key's list (403 otherwise).
    """

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Answer a preflight here; add the CORS headers to any other response."""
        headers = dict(scope["headers"])
        origin_raw = headers.get(b"origin")
        if origin_raw is None:
            await next_app(scope, receive, send)
            return
        runtime: Runtime = Litestar.from_scope(scope).state.runtime
        allowed = runtime.widget_sessions.origin_allowed_for_any_key(origin_raw.decode("latin-1"))
        cors: list[tuple[bytes, bytes]] = [(b"vary", b"Origin")]
        if allowed:
            cors.append((b"access-control-allow-origin", origin_raw))
        if scope.get("method") == "OPTIONS" and b"access-control-request-method" in headers:
            await _preflight(send, allowed, cors)
            return
        if allowed:  # a 429's Retry-After must be readable by the widget
            cors.append((b"access-control-expose-headers", b"Retry-After"))

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *cors]
            await send(message)

        await next_app(scope, receive, send_with_cors)


async def _preflight(send: Send, allowed: bool, headers: list[tuple[bytes, bytes]]) -> None:
    """204 with what the session request needs, or a 403 JSON error without any CORS header."""
    if allowed:
        status, body = 204, b""
        headers = [
            *headers,
            (b"access-control-allow-methods", b"POST"),
            (b"access-control-allow-headers", b"Content-Type"),
            (b"access-control-max-age", str(CORS_MAX_AGE_S).encode()),
        ]
    else:
        status = 403
        error = {"code": "forbidden", "message": "this origin is not allowed for any widget key"}
        body = encode_frame({"error": error}).encode()
        headers = [*headers, (b"content-type", b"application/json")]
    headers.append((b"content-length", str(len(body)).encode()))
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)


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
    middleware = [WidgetCORSMiddleware()]  # noqa: RUF012 - Litestar reads it as a class attribute

    @post(
        "/sessions", status_code=HTTP_201_CREATED, summary="Open or renew a widget session",
        responses=errors(403, 429, 503, s403=(
            "The widget key is unknown, the page's `Origin` is not allowed for it (`forbidden`), or the "
            "visitor's identity is not proven (`identity_invalid`)"
        )),
    )  # fmt: skip
    async def open_session(
        self, data: SessionIn, request: Request[Any, Any, Any], runtime: Runtime
    ) -> SessionOut:
        """403 unless the widget key exists and the page's Origin is allowed for it; with an identity secret
        for the key, 403 ``identity_invalid`` unless ``visitor.identity_hash`` proves ``visitor.id``."""
        await runtime.limits.new_session(runtime.limits.client(request))
        visitor = VisitorClaims(
            id=data.visitor.id, name=data.visitor.name or None, email=data.visitor.email,
            identity_hash=data.visitor.identity_hash,
        )  # fmt: skip
        grant = await runtime.widget_sessions.open(
            widget_key=data.widget_key, origin=request.headers.get("origin"), visitor=visitor,
            earlier_token=data.token,
        )  # fmt: skip
        return SessionOut(
            grant.conversation_id, grant.token, grant.expires_at,
            show_sources=runtime.settings.app.shows_sources(data.widget_key),
        )  # fmt: skip

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
        self.show_sources = False

    async def send(self, frame: dict[str, Any]) -> None:
        """Frames from the forwarder and the receive loop never interleave mid-write. An answer's
        ``sources`` (the knowledge sections it cites) reach only a widget key the admin lets show them: the
        section names of an internal policy are not every customer's to read."""
        if "sources" in frame and not self.show_sources:
            frame = {k: v for k, v in frame.items() if k != "sources"}
        async with self.send_lock:
            await self.socket.send_text(encode_frame(frame))

    async def serve(self) -> None:
        """Authenticate, subscribe, then read frames until the client leaves or the process drains."""
        await self.socket.accept()
        try:
            claims = self.runtime.widget_sessions.claims(self.socket.query_params.get("token", ""))
        except SwitchboardError as exc:
            await self._close(exc)
            return
        self.conversation_id = claims.conversation_id
        self.show_sources = self.runtime.settings.app.shows_sources(claims.widget_key)
        try:
            subscription = await self.runtime.fanout.subscribe(self.conversation_id)
        except Exception as exc:
            await end_socket(self.socket, exc, name=self._name, send=self.send)
            return
        forwarder = asyncio.create_task(self._forward(subscription))
        self.runtime.widget_sockets.add(self.socket)
        open_sockets = metrics.WEBSOCKETS_OPEN.labels(kind="widget")
        open_sockets.inc()
        try:
            if self.runtime.draining.is_set():  # checked after registering: a drain cannot miss this socket
                await self.socket.close(code=CLOSE_GOING_AWAY, reason="server restarting")
                return
            while True:
                raw = await self.socket.receive_text()
                if not await self._handle(raw):
                    break
        except Exception as exc:
            # Redis down (or the pool had no connection for 10 s) while a frame was handled, or a bug: that
            # frame was not acknowledged. 1011 makes the widget reconnect, resume and send its unacknowledged
            # messages again (same client_id: stored at most once). Litestar would close with 4500 and log
            # nothing.
            await end_socket(self.socket, exc, name=self._name, send=self.send)
        finally:
            open_sockets.dec()
            self.runtime.widget_sockets.discard(self.socket)
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await forwarder
            subscription.release()

    @property
    def _name(self) -> str:
        return f"widget socket {self.conversation_id}"

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
        client_id: str | None = None  # echoed by an error about this frame
        try:
            try:
                frame = parse_frame(raw)
            except FrameError:
                client_id = client_id_of(raw)
                raise
            if isinstance(frame, MessageFrame):
                client_id = frame.client_id
            return await self._dispatch(frame)
        except SwitchboardError as exc:
            if isinstance(exc, ServiceUnavailable | InternalError):  # not the client's doing: end the socket
                raise
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

    async def _dispatch(self, frame: ClientFrame) -> bool:
        cid = self.conversation_id
        now = datetime.now(UTC)
        if isinstance(frame, MessageFrame):
            client_id, text = frame.client_id, frame.text
            if not self.bucket.take():
                metrics.RATE_LIMITED.labels(limit="socket").inc()
                raise RateLimited("too many messages; slow down", limit="socket")
            await self.runtime.limits.customer_message(cid, self.runtime.limits.client(self.socket))
            extra = None
            if frame.attachments:  # uploaded to this conversation by its customer, or refused
                found = await self.runtime.attachments.for_message(
                    cid, frame.attachments, uploader="customer"
                )
                extra = {"attachments": found}
            # One script stores it, publishes it and begins its turn (the turn lock and the window); the
            # examples' version check runs alongside. Nothing is awaited between the append and start().
            turns = self.runtime.turns
            refreshed = turns.refresh_examples()
            try:
                event, created, context = await self.store.receive_customer_message(
                    cid, client_id, text, now=now, lock_ttl_ms=turns.lock_ttl_ms, extra=extra
                )
            except BaseException:
                refreshed.cancel()
                raise
            if created:
                turns.start(cid, event, context, refreshed)
            else:
                refreshed.cancel()  # a resend starts no turn of its own...
                if context is not None:  # ...but begins the owed turn whose start was lost
                    turns.recover(cid, context)
            await self.send({"type": "ack", "client_id": client_id, "seq": event.seq})
        elif isinstance(frame, ResumeFrame):
            for event in await self.store.events_after(cid, frame.after):
                await self.send(event.to_frame())
        elif isinstance(frame, TypingFrame):
            await self.store.publish_agent(
                cid, {"type": "typing", "role": "customer", "conversation_id": cid}
            )
        elif isinstance(frame, RequestHumanFrame):
            await self.runtime.turns.request_human(cid)
        elif isinstance(frame, RatingFrame):
            await self.runtime.ratings.record(cid, score=frame.score, comment=frame.comment, now=now)
        elif isinstance(frame, CloseFrame):
            await self.runtime.turns.close(cid)
        elif isinstance(frame, ContactFrame):
            # Only this socket's own conversation (its token's): a conversation id in the frame is ignored.
            # Each one writes SQL: it spends from the socket's message budget.
            if not self.bucket.take():
                metrics.RATE_LIMITED.labels(limit="socket").inc()
                raise RateLimited("too many frames; slow down", limit="socket")
            ticket = await self.runtime.tickets.from_chat(cid, frame.email)
            await self.send({"type": "contact_saved", "email": ticket.customer_email})
        return True
