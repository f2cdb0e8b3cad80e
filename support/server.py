"""Running the app under uvicorn with a drain on SIGTERM.

uvicorn on SIGTERM stops listening and closes WebSockets itself (code 1012) before the app's lifespan
shutdown runs. PROTOCOL.md wants in-flight turns finished and sockets closed with 1001, so the signal
first runs :meth:`support.runtime.Runtime.drain` (readyz turns 503, drain hooks finish turns and close
sockets) and only then lets uvicorn stop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import signal
import socket
from types import FrameType

import uvicorn
from litestar import Litestar

from support.runtime import Runtime

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn, but SIGTERM/SIGINT first drain the app."""

    def __init__(self, config: uvicorn.Config, app: Litestar) -> None:
        super().__init__(config)
        self._app = app
        self._drain_task: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup (the app's lifespan has run), then :func:`freeze_startup_heap`."""
        await super().startup(sockets)
        freeze_startup_heap()

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


def serve(app: Litestar, *, host: str, port: int, log_level: str, drain_timeout_s: float) -> None:
    """Serve ``app`` until a signal, then drain."""
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
    asyncio.run(DrainingServer(config, app).serve())
