"""A real Redis Cluster of three masters (no replicas) on free loopback ports, for tests.

``redis-server --cluster-enabled yes`` three times, ``redis-cli --cluster create`` over them, then wait
until every node reports ``cluster_state:ok``. Each server runs in its own temp directory with
persistence off; :meth:`RedisClusterServers.stop` ends exactly the processes it started, by PID.

``python -m tests.redis_cluster`` starts one, prints its ``redis+cluster://`` URL and keeps it up until
interrupted (for running the suite against a cluster by hand).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
import redis.asyncio as aioredis

from support.redis_client import RedisClient, cluster_client, is_cluster, node_url

MASTERS = 3
BUS_PORT_OFFSET = 10000  # Redis's cluster bus listens on the node's port + 10000
START_TIMEOUT_S = 30.0  # three local servers and the slot assignment take about a second


def redis_client_for(url: str, **kwargs: Any) -> RedisClient:
    """A test's own client of the test Redis: a cluster client for a ``redis+cluster://`` URL."""
    return cluster_client(url, **kwargs) if is_cluster(url) else aioredis.Redis.from_url(url, **kwargs)


def sync_redis_client_for(url: str, **kwargs: Any) -> redis.Redis | redis.RedisCluster:
    """The blocking twin of :func:`redis_client_for`, for tests that drive a server from a thread."""
    if is_cluster(url):
        return redis.RedisCluster.from_url(node_url(url), **kwargs)
    return redis.Redis.from_url(url, **kwargs)


def free_cluster_port() -> int:
    """A free loopback port whose cluster-bus twin (port + 10000, fixed by Redis) is free as well."""
    for _ in range(200):
        port = random.randint(20000, 40000)
        with contextlib.ExitStack() as stack:
            try:
                for candidate in (port, port + BUS_PORT_OFFSET):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisClusterServers:
    """Three cluster-enabled redis-server processes joined into one cluster."""

    def __init__(self, masters: int = MASTERS) -> None:
        self.masters = masters
        self.ports: list[int] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._tmp: Path | None = None

    @property
    def url(self) -> str:
        """The service's cluster URL: one seed node, the client discovers the others."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    @property
    def node_urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{port}" for port in self.ports]

    def start(self) -> RedisClusterServers:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise RuntimeError("redis-server and redis-cli are needed for a Redis Cluster")
        self._tmp = Path(tempfile.mkdtemp(prefix="sb-redis-cluster-"))
        try:
            for _ in range(self.masters):
                port = free_cluster_port()
                node_dir = self._tmp / str(port)
                node_dir.mkdir()
                argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                        "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000",
                        "--dir", str(node_dir), "--save", "", "--appendonly", "no"]  # fmt: skip
                self._procs.append(
                    subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                )
                self.ports.append(port)
            deadline = time.monotonic() + START_TIMEOUT_S
            for port in self.ports:
                while not self._cli(cli, port, "ping").startswith("PONG"):
                    self._check_alive()
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server on {port} did not start")
                    time.sleep(0.05)
            nodes = [f"127.0.0.1:{port}" for port in self.ports]
            subprocess.run(
                [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                check=True, capture_output=True, timeout=START_TIMEOUT_S,
            )  # fmt: skip
            for port in self.ports:
                while "cluster_state:ok" not in self._cli(cli, port, "cluster", "info"):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cluster node {port} did not reach cluster_state:ok")
                    time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def kill_node(self, index: int) -> None:
        """SIGKILL one master (a crashed node), by the PID this object started."""
        proc = self._procs[index]
        proc.kill()
        proc.wait(timeout=10)

    def _check_alive(self) -> None:
        for proc in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {proc.returncode}")

    @staticmethod
    def _cli(cli: str, port: int, *args: str) -> str:
        done = subprocess.run(
            [cli, "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True, text=True, timeout=5
        )
        return done.stdout

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> RedisClusterServers:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":
    with RedisClusterServers() as cluster:
        print(cluster.url, flush=True)
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        signal.sigwait(stop_signals)
    sys.exit(0)
