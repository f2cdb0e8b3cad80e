"""Prometheus metrics: every metric object of the service, and the text a scrape of ``/metrics`` returns.

A low-layer module (it imports nothing of the service): the pipeline, the gateway, the handoff service, the
rate limits and the socket handlers count here; the ``/metrics`` handler renders. Label values are bounded
sets (outcomes, reason codes, model names, limit names), never ids.

Multiprocess: with ``PROMETHEUS_MULTIPROC_DIR`` set in the environment before the process starts, every
process of the host (``serve --workers``, a ``worker`` beside it) writes its samples to files there and any
one process's ``/metrics`` returns the sum over all of them (prometheus-client's multiprocess mode: the
directory must be emptied before the processes start). Without it, each process reports its own.

The handoff queue's depth is not kept here: the handler reads it from Redis at scrape time and passes it to
:func:`render`, so it is right whichever process moved the queue.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from decimal import Decimal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST

# No ``*_created`` series beside every counter and histogram: a timestamp per label set that nothing here
# queries, doubling the series count (multiprocess mode never exports them either).
disable_created_metrics()  # type: ignore[no-untyped-call]

TURNS = Counter(
    "switchboard_turns_total",
    "Customer turns by how they ended: answered (model), offline (offline responder), handed_off, "
    "to_person (a person owned the conversation), disowned (a person took it mid-turn), superseded, "
    "cancelled (process stopping), failed (left owed for recovery), ended (none of these).",
    ["outcome"],
)
HANDOFFS = Counter(
    "switchboard_handoffs_total",
    "Conversations newly queued for people, by handoff reason code (unknown codes: other).",
    ["reason"],
)
MODEL_REQUESTS = Counter(
    "switchboard_model_requests_total",
    "Model API calls by model, purpose (triage, answer, summary, batch, other) and ledger outcome.",
    ["model", "purpose", "outcome"],
)
MODEL_TTFT = Histogram(
    "switchboard_model_ttft_seconds",
    "Time to the first token of streamed model calls.",
    ["model"],
    buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0),
)
MODEL_COST = Counter(
    "switchboard_model_cost_usd_total",
    "What model calls cost, in US dollars (the usage ledger's cost_usd summed).",
    ["model"],
)
WEBSOCKETS_OPEN = Gauge(
    "switchboard_websockets_open",
    "Open WebSockets by kind (widget: customers, agent: consoles).",
    ["kind"],
    multiprocess_mode="livesum",
)
RATE_LIMITED = Counter(
    "switchboard_rate_limited_total",
    "Requests refused by an abuse limit, by limit name (socket: a widget socket's own message bucket).",
    ["limit"],
)
JOBS = Counter(
    "switchboard_jobs_total",
    "Background jobs run, by job function and outcome (complete, failed, aborted).",
    ["function", "outcome"],
)
WEBHOOK_DELIVERIES = Counter(
    "switchboard_webhook_deliveries_total",
    "Outbound webhook delivery attempts by outcome (delivered, failed).",
    ["outcome"],
)

QUEUE_DEPTH_NAME = "switchboard_queue_depth"
QUEUE_DEPTH_HELP = "Conversations waiting in the handoff queue for a person (read from Redis at scrape time)."


def model_call(model: str, purpose: str, outcome: str, cost_usd: Decimal, ttft_ms: float | None) -> None:
    """Count one model call as its ledger row records it."""
    MODEL_REQUESTS.labels(model=model, purpose=purpose, outcome=outcome).inc()
    if cost_usd:
        MODEL_COST.labels(model=model).inc(float(cost_usd))
    if ttft_ms is not None:
        MODEL_TTFT.labels(model=model).observe(ttft_ms / 1000)


def multiprocess_dir() -> str | None:
    """The multiprocess directory, when this process writes its samples there."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _Scrape(Collector):
    """One scrape: the process's (or every process's) samples, and the queue depth read for it."""

    def __init__(self, source: Iterable[Collector], queue_depth: int | None) -> None:
        self._source = source
        self._queue_depth = queue_depth

    def collect(self) -> Iterator[Metric]:
        for collector in self._source:
            yield from collector.collect()
        if self._queue_depth is not None:
            yield GaugeMetricFamily(QUEUE_DEPTH_NAME, QUEUE_DEPTH_HELP, value=self._queue_depth)


def render(queue_depth: int | None) -> bytes:
    """The Prometheus text exposition of this process (or, in multiprocess mode, of every process), with
    the queue depth when it could be read (None: Redis did not answer; the family is left out)."""
    path = multiprocess_dir()
    source: Collector = (
        MultiProcessCollector(None, path=path)  # type: ignore[no-untyped-call]
        if path is not None
        else REGISTRY
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape([source], queue_depth))
    return generate_latest(registry)


def process_exited() -> None:
    """In multiprocess mode, drop this process's live gauges (its open sockets) from the sum."""
    if multiprocess_dir() is not None:
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
