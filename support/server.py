"""Running the app under uvicorn with a drain on SIGTERM.

uvicorn on SIGTERM stops listening and closes WebSockets itself (code 1012) before the app's lifespan
shutdown runs. PROTOCOL.md wants in-flight turns finished and sockets closed with 1001, so the signal
first runs :meth:`support.runtime.Runtime.drain` (readyz turns 503, drain hooks finish turns and close
sockets) and only then lets uvicorn stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import resource
import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn
from litestar import Litestar

from support.errors import StartupFailed

if TYPE_CHECKING:  # the runtime imports the whole app: `serve` binds its address before paying for that
    from support.runtime import Runtime
    from support.settings import Settings

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn, but SIGTERM/SIGINT first drain the app.

    With ``settings``, the server opens the app's :class:`~support.runtime.Runtime` itself before uvicorn's
    start-up (the app was built with ``own_runtime=False``) and closes it after uvicorn's shutdown. A
    runtime that fails to open inside the ASGI lifespan would be reported by uvicorn as a traceback and a
    ``sys.exit`` from inside the event loop; opened here, the failure propagates as
    :class:`~support.errors.StartupFailed` (or the exception) to the caller, which prints one line.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        app: Litestar,
        settings: Settings | None = None,
        on_listening: Callable[[str, int], None] | None = None,
    ) -> None:
        super().__init__(config)
        self._app = app
        self._settings = settings
        self._on_listening = on_listening
        self._runtime_scope = contextlib.AsyncExitStack()
        self._drain_task: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Open the runtime, uvicorn's startup (the app's lifespan), then :func:`freeze_startup_heap`."""
        try:
            if self._settings is not None:
                from support.runtime import open_runtime

                runtime = await self._runtime_scope.enter_async_context(open_runtime(self._settings))
                self._app.state.runtime = runtime
            try:
                await super().startup(sockets)
            except SystemExit as exc:  # uvicorn's way of saying the lifespan failed (it logged why)
                raise StartupFailed("the application's start-up failed (see the log above)") from exc
        except BaseException:
            await self._runtime_scope.aclose()
            raise
        freeze_startup_heap()
        if sockets:  # uvicorn announces only the sockets it bound itself
            host, port = sockets[0].getsockname()[:2]
            log.info("listening on http://%s:%d", host, port)
            if self._on_listening is not None:
                self._on_listening(host, port)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown (connections, then the app's lifespan), then the runtime's clients."""
        try:
            await super().shutdown(sockets)
        finally:
            await self._runtime_scope.aclose()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Drain once, then hand over to uvicorn's own shutdown (a second signal forces it)."""
        runtime: Runtime | None = getattr(self._app.state, "runtime", None)
        if runtime is None or self._drain_task is not None or sig not in (signal.SIGTERM, signal.SIGINT):
            super().handle_exit(sig, frame)
            return

        async def drain_then_exit() -> None:
            await runtime.drain()
            uvicorn.Server.handle_exit(self, sig, frame)

        self._drain_task = asyncio.get_running_loop().create_task(drain_then_exit())


def freeze_startup_heap() -> None:
    """Move everything allocated during start-up (modules, pydantic and SQLAlchemy schemas, the policy and
    its index) out of the garbage collector's sight.

    CPython's full collection walks every tracked object. Without this, a full collection in a
    warmed-up server walked the start-up heap too and paused the event loop for ~200 ms, in the middle of
    customers' turns (every socket waits while it runs). Start-up objects live as long as the process, so
    scanning them finds nothing; ``gc.freeze`` is CPython's documented tool for exactly this.
    """
    gc.collect()
    gc.freeze()
    log.debug("gc: %d start-up objects frozen", gc.get_freeze_count())


def raise_open_files_limit() -> int:
    """Raise the soft open-files limit to the hard one; returns the soft limit now in force.

    Every customer WebSocket is a file descriptor, and distributions often default the soft limit to 1024,
    far below the thousands of idle sockets one process can hold. Raising soft up to hard needs no privilege.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        log.info("open files limit raised from %d to %d", soft, hard)
        return hard
    return soft


def bind_listener(host: str, port: int) -> socket.socket:
    """The listening address, bound (not yet listening: until start-up has finished, a connection is
    refused rather than left waiting); :class:`~support.errors.StartupFailed` naming the address when it
    cannot be bound (in use, a privileged port, an address this machine does not have)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn's own bind
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait out TIME_WAIT
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupFailed(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def serve(
    app: Litestar,
    *,
    host: str,
    port: int,
    log_level: str,
    drain_timeout_s: float,
    settings: Settings | None = None,
    listener: socket.socket | None = None,
    on_listening: Callable[[str, int], None] | None = None,
) -> None:
    """Serve ``app`` until a signal, then drain. The address is bound first, before anything starts, and
    with ``settings`` the runtime is opened by the server (see :class:`DrainingServer`); a start-up failure
    raises (:class:`~support.errors.StartupFailed` for the expected ones) instead of hanging or exiting
    from inside the event loop. ``listener``: the address already bound by :func:`bind_listener`."""
    listener = listener or bind_listener(host, port)
    raise_open_files_limit()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        lifespan="on",
        ws_max_size=64 * 1024,  # PROTOCOL frames are small; a larger one is abuse
        # No permessage-deflate: frames are tiny (deltas of a few words), and each connection's zlib state
        # costs ~46 KB, more than everything else an idle socket holds (browsers always offer it).
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=int(drain_timeout_s) + 1,
    )
    # The stdlib loop. uvloop (in uvicorn[standard]) was measured with `switchboard bench` and changed
    # neither saturated throughput (62 vs 64 turns/s, within run-to-run noise) nor per-turn overhead: the
    # time goes to the SDK, redis-py and the machine's wake-ups, not to the loop itself.
    try:
        asyncio.run(DrainingServer(config, app, settings, on_listening).serve(sockets=[listener]))
    finally:
        listener.close()
