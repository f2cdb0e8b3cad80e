"""The job engine: background work as jobs on saq over the service's Redis.

Batch submission and polling, webhook deliveries, archiving and retention are jobs, not loops of our own:
saq keeps them in Redis, so several worker processes share them and none runs one job twice (a job moves
from the queue to the active list atomically), retries them with backoff, and its sweep re-queues a job
whose worker died (SIGKILL, lost host) once the job's heartbeat or timeout has passed.

``switchboard serve`` runs a worker in-process when ``SWITCHBOARD_JOBS_IN_PROCESS`` is true (the default,
so the README's one command gives a complete system); ``switchboard worker`` runs one without HTTP.

Every key of the queue carries the hash tag ``{switchboard-jobs}`` (the queue's name, and the prefix of
every job key given here), so a Redis Cluster holds the whole queue in one slot and saq's multi-key
scripts run there unchanged.

Periodic work uses saq's scheduled jobs rather than a cron string (whose finest step is a minute): a
periodic job's key names its time slot, so every worker may schedule the next slot and only one job
exists per slot; each run schedules the following slot before it does its work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError
from saq.job import Job
from saq.queue.redis import RedisQueue
from saq.types import PartialTimersDict
from saq.worker import Worker

from support import metrics
from support.redis_client import RedisClient, cluster_client, is_cluster, single_client

log = logging.getLogger(__name__)

QUEUE_NAME = "{switchboard-jobs}"
KEY_PREFIX = (
    "{switchboard-jobs}"  # job keys begin with the queue's hash tag (saq derives more keys from them)
)
PERIODIC_FUNCTION = "periodic"
# saq's upkeep timers, in seconds: how often scheduled jobs are moved to the queue, and how often a job
# whose worker died is looked for. A dead worker's job is picked up after its timeout or heartbeat plus
# at most SWEEP_S.
SCHEDULE_S = 1
SWEEP_S = 5

JobFunction = Callable[..., Awaitable[Any]]


# While Redis is unreachable a worker waits this long between attempts to take a job. saq's own loop would
# try again at once: ten spinning tasks and a traceback each per attempt, for as long as the outage lasts.
OUTAGE_RETRY_S = 1.0
REDIS_OUTAGES = (RedisError, OSError)


class _Queue(RedisQueue):
    """saq's Redis queue, calm through a Redis outage: a failed dequeue waits, says so once, and finds no
    job (the worker asks again); the outage's end is logged too."""

    _away = False

    async def dequeue(
        self,
        timeout: float = 0.0,  # noqa: ASYNC109 - saq's signature
        poll_interval: float = 0.0,
    ) -> Job | None:
        try:
            job = await super().dequeue(timeout=timeout, poll_interval=poll_interval)
        except REDIS_OUTAGES as exc:
            if not self._away:
                log.warning(
                    "jobs: Redis unreachable (%s); taking no jobs until it is back", type(exc).__name__
                )
            self._away = True
            await asyncio.sleep(OUTAGE_RETRY_S)
            return None
        if self._away:
            log.info("jobs: Redis is back; taking jobs again")
            self._away = False
        return job


class _OutageTracebacks(logging.Filter):
    """Drops saq's tracebacks of Redis being unreachable (its upkeep loops log one per tick, and retry
    on their own): the queue above says it once per outage."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], REDIS_OUTAGES))


_SAQ_FILTER = _OutageTracebacks()


class _Worker(Worker[Any]):
    """saq's worker without its SIGINT/SIGTERM handlers: the process that runs it (the HTTP server, or
    ``switchboard worker``) owns the signals and stops the worker by cancelling it."""

    SIGNALS: list[signal.Signals] = []  # noqa: RUF012 - saq reads it from the instance


@dataclass(frozen=True)
class Periodic:
    """Work that runs every ``every_s`` seconds on one worker (whichever takes the slot's job)."""

    name: str
    every_s: float
    function: Callable[[], Awaitable[Any]]
    timeout_s: int = 300


def job_key(key: str) -> str:
    """A job key within the queue's hash tag (callers pass their own unique part)."""
    return key if key.startswith(KEY_PREFIX) else f"{KEY_PREFIX}{key}"


class JobEngine:
    """Enqueue jobs from any process; run them in the processes that call :meth:`run_worker`.

    The engine owns its Redis client (saq closes it with the queue); functions are registered by name
    before a worker starts, and receive the job's keyword arguments.
    """

    def __init__(self, redis_url: str, *, concurrency: int = 10) -> None:
        self._cluster = is_cluster(redis_url)
        client: RedisClient = (
            cluster_client(redis_url, decode_responses=False)
            if self._cluster
            else single_client(redis_url, decode_responses=False)
        )
        self.queue = _Queue(client, name=QUEUE_NAME)  # type: ignore[arg-type]
        saq_log = logging.getLogger("saq")  # every saq module logs here
        if _SAQ_FILTER not in saq_log.filters:
            saq_log.addFilter(_SAQ_FILTER)
        self._client = client
        self.concurrency = concurrency
        self._functions: dict[str, JobFunction] = {}
        self._periodic: dict[str, Periodic] = {}

    # -- definition ------------------------------------------------------------------------------------

    def register(self, name: str, function: JobFunction) -> None:
        """Make ``function`` runnable as job ``name`` (it is called with the job's keyword arguments)."""
        if name in self._functions or name == PERIODIC_FUNCTION:
            raise ValueError(f"job function {name!r} is registered already")
        self._functions[name] = function

    def every(
        self, name: str, every_s: float, function: Callable[[], Awaitable[Any]], timeout_s: int = 300
    ) -> None:
        """Run ``function`` every ``every_s`` seconds (at least a second) on one of the workers."""
        if name in self._periodic:
            raise ValueError(f"periodic job {name!r} is registered already")
        self._periodic[name] = Periodic(name, max(1.0, every_s), function, timeout_s)

    @property
    def functions(self) -> list[str]:
        """The registered job names (periodic ones included), sorted."""
        return sorted([*self._functions, *self._periodic])

    # -- enqueueing ------------------------------------------------------------------------------------

    async def enqueue(
        self,
        function: str,
        /,
        *,
        key: str | None = None,
        delay_s: float = 0.0,
        timeout_s: int = 60,
        heartbeat_s: int = 0,
        retries: int = 1,
        retry_delay_s: float = 0.0,
        retry_backoff: bool | float = False,
        **kwargs: Any,
    ) -> bool:
        """Queue job ``function``; False when a job with the same ``key`` is queued or running already.

        ``retries`` counts attempts (1: no retry); ``retry_backoff`` doubles the delay each time, with
        jitter, up to the given number of seconds when it is a number.
        """
        options: dict[str, Any] = {
            "timeout": timeout_s, "heartbeat": heartbeat_s, "retries": retries,
            "retry_delay": retry_delay_s, "retry_backoff": retry_backoff,
        }  # fmt: skip
        if key is not None:
            options["key"] = job_key(key)
        else:
            options["key"] = job_key(f"{function}:{uuid.uuid4().hex}")
        if delay_s > 0:
            options["scheduled"] = math.ceil(time.time() + delay_s)
        job = await self.queue.enqueue(function, **options, **kwargs)
        return job is not None

    async def _schedule_next(self, periodic: Periodic) -> None:
        slot = math.floor(time.time() / periodic.every_s) + 1
        await self.enqueue(
            PERIODIC_FUNCTION,
            key=f"periodic:{periodic.name}:{slot}",
            delay_s=max(0.0, slot * periodic.every_s - time.time()),
            timeout_s=periodic.timeout_s,
            name=periodic.name,
        )

    # -- running ---------------------------------------------------------------------------------------

    async def _run_periodic(self, _ctx: dict[str, Any], *, name: str) -> None:
        periodic = self._periodic.get(name)
        if periodic is None:
            log.warning("periodic job %s is not known to this worker; dropped", name)
            return
        await self._schedule_next(periodic)
        await periodic.function()

    def _wrap(self, name: str, function: JobFunction) -> Callable[..., Awaitable[Any]]:
        async def run(_ctx: dict[str, Any], **kwargs: Any) -> Any:
            try:
                result = await function(**kwargs)
            except asyncio.CancelledError:
                metrics.JOBS.labels(function=name, outcome="aborted").inc()
                raise
            except Exception:
                metrics.JOBS.labels(function=name, outcome="failed").inc()
                raise
            metrics.JOBS.labels(function=name, outcome="complete").inc()
            return result

        run.__qualname__ = name
        return run

    async def run_worker(self) -> None:
        """Run a worker until cancelled: the registered jobs, and the periodic ones on their schedule."""
        functions: list[tuple[str, Callable[..., Awaitable[Any]]]] = [
            (name, self._wrap(name, fn)) for name, fn in self._functions.items()
        ]
        functions.append((PERIODIC_FUNCTION, self._run_periodic))
        timers: PartialTimersDict = {"schedule": SCHEDULE_S, "sweep": SWEEP_S, "worker_info": 10, "abort": 1}
        worker: Worker[Any] = _Worker(
            self.queue,
            functions=functions,
            concurrency=self.concurrency,
            timers=timers,
            # saq's grace would also wait out its idle polling loops, holding every shutdown for the whole
            # period. A job cut short is run again (jobs are idempotent: a SIGKILL cuts them short too).
            shutdown_grace_period_s=0,
        )
        for periodic in self._periodic.values():
            await self._schedule_next(periodic)
        try:
            await worker.start()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(worker.stop())

    async def aclose(self) -> None:
        """Close the queue and its client (saq closes the client it was given)."""
        with contextlib.suppress(Exception):
            await self.queue.disconnect()
        if self._cluster:
            # saq's disconnect assumes a single server's connection pool; a cluster client closes itself.
            with contextlib.suppress(Exception):
                await self._client.aclose()
