"""What a WebSocket does when serving it fails: the one mapping shared by the widget and agent sockets.

A failure while a socket is served is one of three things:

- the client left (a disconnect, or uvicorn's ``ClientDisconnected``, an ``OSError``): nothing to say;
- a dependency cannot be reached (Redis, the database: :func:`support.errors.unavailable_from`): expected
  in an outage, so a warning with the exception's repr and no traceback; the client gets an ``error`` frame
  ``unavailable`` and close 1011, reconnects with backoff and resumes;
- anything else is a bug: an error with its traceback; the client gets ``internal_error`` and 1011.

The client's own mistakes (a bad frame, a refused transition, a rate limit) never come here: each socket
answers them with a typed ``error`` frame and keeps the socket open (or closes with 1008 for abuse).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect

from support.errors import InternalError, SwitchboardError, unavailable_from

log = logging.getLogger(__name__)

CLOSE_INTERNAL_ERROR = 1011  # RFC 6455: the server hit a condition that prevented it from serving
# The error frame and the close go to a client that may itself be gone or not reading: neither may hold
# the socket's task (and its Redis subscriptions) for long.
FAREWELL_TIMEOUT_S = 2.0

SendFrame = Callable[[dict[str, Any]], Awaitable[None]]


def client_left(exc: BaseException) -> bool:
    """The peer disconnected (uvicorn raises ``ClientDisconnected``, an ``OSError``, on a send to it).

    Redis's and the database's failures arrive wrapped in their libraries' exceptions, none an ``OSError``.
    """
    return isinstance(exc, WebSocketDisconnect | OSError)


def classify(exc: BaseException) -> SwitchboardError:
    """The typed error a client is told for ``exc``: ``unavailable`` for a dependency's outage (or a
    :class:`~support.errors.ServiceUnavailable` raised on purpose), else ``internal_error``."""
    return unavailable_from(exc) or InternalError("internal error; reconnect")


async def end_socket(
    socket: WebSocket[Any, Any, Any], exc: BaseException, *, name: str, send: SendFrame
) -> None:
    """Log ``exc`` and end the socket with a typed ``error`` frame and close 1011 (nothing when the client
    left). ``name`` says which socket in the log (``widget socket <conversation>``, ``agent socket
    <agent>``); ``send`` is the socket's own serialised sender, so the frame never interleaves with one
    being forwarded."""
    if client_left(exc):
        return
    error = classify(exc)
    if isinstance(error, InternalError):
        log.error("%s failed", name, exc_info=exc)
    else:
        log.warning("%s ended: %s (%r)", name, error.code, exc)
    # No client_id: the frame being handled was not acknowledged; the client resends it after resuming.
    frame = {"type": "error", "code": error.code, "message": error.message}
    with contextlib.suppress(Exception):  # the socket may be broken as well
        async with asyncio.timeout(FAREWELL_TIMEOUT_S):
            await send(frame)
    with contextlib.suppress(Exception):
        async with asyncio.timeout(FAREWELL_TIMEOUT_S):
            await socket.close(code=CLOSE_INTERNAL_ERROR, reason=error.code)
