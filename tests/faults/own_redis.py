"""A redis-server a fault test owns: on a free loopback port, started, signalled, stopped and started again on
the same port, and ended by its PID only (never the shared test Redis)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from support.embedded_redis import redis_server_binary
from tests.servers import free_port

START_BOUND_S = 10.0


class OwnRedis:
    """Without ``data``: no persistence (started again empty). With ``data``: an append-only file there,
    synced ``appendfsync`` (``always`` or ``everysec``), so a restart on the same port keeps the data."""

    def __init__(self, data: Path | None = None, *, appendfsync: str = "everysec") -> None:
        self.port = free_port()
        self.data = data
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.data is None:
            args += ["--appendonly", "no"]
        else:
            self.data.mkdir(parents=True, exist_ok=True)
            args += ["--appendonly", "yes", "--appendfsync", self.appendfsync, "--dir", str(self.data)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_BOUND_S
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError, OSError):
                client = redis.Redis(port=self.port, socket_timeout=0.5)
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            time.sleep(0.05)
        raise RuntimeError("the test's own redis-server did not start")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def terminate(self) -> None:
        """SIGTERM (Redis flushes and fsyncs its AOF before it exits) and wait for it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped process dies on SIGKILL too; be explicit
            self.proc.kill()
            self.proc.wait(timeout=10)
