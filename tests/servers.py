"""Run ``switchboard serve`` (and other ``switchboard`` commands) as real processes for integration tests.

Starting one by exec pays the whole import of the app (about 4.5 s on a slow machine, mostly the
``anthropic`` SDK's types) every time. By default these helpers fork instead, from a multiprocessing
forkserver that imported the app once: each child runs the same ``support.cli.main`` in its own process
and session, with only the environment and working directory the test gives it, and is signalled, killed
and waited for like a subprocess. ``exec_cli=True`` starts the real command line instead (test_serve does,
to test ``switchboard serve`` exactly as a user runs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.context
import multiprocessing.process
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from support.settings import PUBLIC_ENV_NAMES

# A test server sees only the configuration the test gives it (plus secrets and mode, never inherited).
STRIPPED_ENV = (
    *PUBLIC_ENV_NAMES, "SWITCHBOARD_ENVIRONMENT", "SWITCHBOARD_SECRET_KEY", "SWITCHBOARD_SECRET_KEY_FILE",
)  # fmt: skip


# Every test server is reached from 127.0.0.1 and test modules share one Redis, so the per-address limits
# would add up across unrelated tests (a session limit hit because another module opened sessions a minute
# before). Test servers get room; the tests of the limits themselves set the production defaults back.
ROOMY_ADDRESS_LIMITS = {
    "SWITCHBOARD_LIMIT_SESSIONS_PER_IP": "100000/minute",
    "SWITCHBOARD_LIMIT_MODEL_TURNS_PER_IP": "100000/minute",
    "SWITCHBOARD_LIMIT_LOGIN_ATTEMPTS_PER_IP": "100000/minute",
    "SWITCHBOARD_LIMIT_API_KEY_FAILURES_PER_IP": "100000/minute",
}


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_FORKSERVER_PRELOAD = ["support.app", "support.cli", "support.server", "handoff.agents", "support.db.migrate"]
_context: multiprocessing.context.ForkServerContext | None = None


def _forkserver() -> multiprocessing.context.ForkServerContext:
    """The forkserver context, preloading the app the first time it is asked for."""
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(_FORKSERVER_PRELOAD)
    return _context


def _cli_child(argv: list[str], env: dict[str, str], cwd: str, log_path: str) -> None:
    """Body of a forked ``switchboard`` process: its own session, environment, cwd and output file."""
    os.setsid()  # its own process group, so kill() also stops what it starts (its embedded Redis)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    # line-buffered, like PYTHONUNBUFFERED for an exec'd one: a SIGKILL must not eat the log
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    from support.cli import main

    sys.exit(main(argv))


class ForkedProcess:
    """A forked ``switchboard`` child with the part of ``subprocess.Popen``'s interface the tests use."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self._process: multiprocessing.process.BaseProcess = _forkserver().Process(
            target=_cli_child, args=(list(argv), env, str(cwd), str(log_path)), daemon=False
        )
        self._process.start()
        assert self._process.pid is not None
        self.pid: int = self._process.pid

    def poll(self) -> int | None:
        """The exit code if it has exited, else None."""
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for exit and return the exit code (negative signal number if a signal ended it)."""
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None:
            raise subprocess.TimeoutExpired(["switchboard"], timeout or 0.0)
        return code

    def send_signal(self, sig: int) -> None:
        """Send a signal to the child."""
        os.kill(self.pid, sig)


def run_cli(
    argv: Sequence[str], env: dict[str, str], cwd: Path, timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run one ``switchboard`` command to completion (forked, see the module docstring); its stdout and
    stderr, interleaved as it wrote them, are the result's ``stdout``."""
    cwd.mkdir(parents=True, exist_ok=True)
    out = cwd / f"cli-{os.getpid()}-{time.monotonic_ns()}.log"
    proc = ForkedProcess(argv, env, cwd, out)
    try:
        code = proc.wait(timeout_s)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    text = out.read_text(errors="replace")
    out.unlink()
    return subprocess.CompletedProcess(list(argv), code, stdout=text)


def create_agent(
    env: dict[str, str], cwd: Path, email: str, password: str, name: str, role: str = "agent"
) -> str:
    """``switchboard create-agent`` (the real CLI, through :func:`run_cli`); asserts it succeeded and
    returns its output."""
    made = run_cli(
        ["create-agent", "--email", email, "--password", password, "--name", name, "--role", role],
        env=env, cwd=cwd,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout
    return made.stdout


class ServerProcess:
    """``switchboard serve`` in a subprocess, with only the environment the test gives it."""

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
        *,
        exec_cli: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.exec_cli = exec_cli
        self.port = port or free_port()
        self.env = {k: v for k, v in os.environ.items() if k not in STRIPPED_ENV}
        self.env.update({"SWITCHBOARD_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"})
        self.env.update(ROOMY_ADDRESS_LIMITS)
        self.env.update(env or {})
        self.log_path = data_dir / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | ForkedProcess | None = None

    @property
    def url(self) -> str:
        """Base HTTP URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> ServerProcess:
        """Start and wait until /readyz answers 200."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = ["serve", "--port", str(self.port)]
        if self.exec_cli:
            log = self.log_path.open("ab")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "support.cli", *argv],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,  # its own process group, so kill() also stops its embedded Redis
            )
            log.close()
        else:
            self.proc = ForkedProcess(argv, self.env, self.data_dir, self.log_path)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server not ready in {timeout_s}s:\n{self.log()}")

    def log(self) -> str:
        """Everything the server printed."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, wait for exit, return the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        """SIGKILL the server and anything it started (its embedded Redis), if still running."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: its pgid is its pid
        except ProcessLookupError:  # exited, or (forked) killed before it made its own session
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def agent_auth(server: ServerProcess, email: str, password: str) -> dict[str, str]:
    """Log an agent in over HTTP; the Authorization header its token gives."""
    resp = httpx.post(f"{server.url}/api/v1/agent/login", json={"email": email, "password": password})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


async def wait_for(pred: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    """Poll ``pred`` every 0.1 s until it returns something truthy (returned), else fail the test."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")
