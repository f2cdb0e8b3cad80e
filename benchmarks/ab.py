"""A/B of the turn path: this checkout against another source tree (``--base``), side by side in one run.

``python -m benchmarks.ab --base /path/to/other/checkout [--rounds 3]``

Both variants run as ``switchboard serve`` against the same fake model API process and the same embedded
Redis (flushed before each server), in interleaved rounds (A, B, A, B...), so a noisy neighbour on the
machine lands on both. The base tree is served by this environment's interpreter with ``PYTHONPATH`` set
to it: its ``support`` and ``handoff`` packages are imported instead of this checkout's (its dependencies
must be installed here too). Extra variants of this checkout: ``multiproc`` (``PROMETHEUS_MULTIPROC_DIR``
set: every sample written to a memory-mapped file) and ``traced`` (an OTLP exporter configured, sending to
a receiver in this process that accepts and drops the spans).

Per round and variant, on a fresh server after a warm-up:
- *latency*: ``--conversations`` conversations of 2 turns (10 s think time, starts spread over 10 s) with
  the bench's latency model; per turn: the customer's latency (message sent -> assistant message) and the
  server overhead (that minus the model's own time, as ``switchboard bench`` computes it);
- *saturation*: ``--saturation-turns`` turns against a zero-latency fake, 32 at once: turns/s, and the
  server process's CPU time (user + system, from /proc) per turn.
Prints one table; writes ``ab.json`` to ``--out-dir``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks import harness as h
from benchmarks.suite import WARM_UP_CONVERSATIONS, Bench, Sizes

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SpanSink:
    """Accepts OTLP/HTTP exports and drops them (the traced variant's collector)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def one_variant(
    bench: Bench, extra: dict[str, str], conversations: int, sat_turns: int
) -> dict[str, Any]:
    assert bench.fake is not None
    await bench.fresh_redis()
    (server,) = bench.start_servers(1, extra)
    try:
        h.set_latency(bench.fake, bench.latency)
        warm = await h.open_sessions([server.url], WARM_UP_CONVERSATIONS)
        await asyncio.gather(*(h.run_conversation(u, t, f"warm-{i}", 2, 0.0, [])
                               for i, (u, t) in enumerate(warm)))  # fmt: skip
        sessions = await h.open_sessions([server.url], conversations)
        bench.fake.take_requests()
        results: list[h.TurnResult] = []
        think = bench.sizes.think_s

        async def conv(i: int, url: str, token: str) -> None:
            await asyncio.sleep(think * i / max(1, conversations))
            await h.run_conversation(url, token, f"ab-{i}", 2, think, results)

        await asyncio.gather(*(conv(i, u, t) for i, (u, t) in enumerate(sessions)))
        waits = h.model_wait_by_tag(bench.fake.take_requests())
        latency, overhead = [], []
        for r in results:
            w = waits.get(r.tag)
            if r.done is None or r.error or r.handed_off or w is None:
                continue
            latency.append((r.done - r.sent) * 1000)
            overhead.append((r.done - r.sent - w["model_wait_s"]) * 1000)
        h.set_latency(bench.fake, h.LatencyModel.zero())
        await bench._saturate([server], min(60, sat_turns), 32, "warm")
        cpu_before = cpu_seconds(server.pid)
        sat = await bench._saturate([server], sat_turns, 32, "sat")
        cpu = cpu_seconds(server.pid) - cpu_before
        bench.fake.take_requests()
    finally:
        bench.stop_servers()
    return {
        "latency_ms": latency,
        "overhead_ms": overhead,
        "errors": sum(1 for r in results if r.error),
        "turns_per_s": sat["turns_per_s"],
        "cpu_ms_per_turn": cpu * 1000 / max(1, sat["ok_turns"]),
    }


def empty(directory: Path) -> None:
    for stale in directory.glob("*.db"):
        stale.unlink()


def pct(values: list[float], p: float) -> float:
    return h.percentile(values, p) if values else float("nan")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sink = SpanSink()
    variants: dict[str, dict[str, str]] = {
        "base": {"PYTHONPATH": args.base},
        "this": {},
    }
    multiproc = Path(tempfile.mkdtemp(prefix="switchboard-ab-prom-"))
    if "multiproc" in args.variants:
        variants["multiproc"] = {"PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    if "traced" in args.variants:
        variants["traced"] = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_TRACES_EXPORTER": "otlp"}
    latency = h.LatencyModel()
    collected: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    try:
        with tempfile.TemporaryDirectory(prefix="switchboard-ab-") as tmp:
            bench = Bench(Sizes(), latency, print, Path(tmp))
            await asyncio.to_thread(bench.redis.start)
            bench.fake = await asyncio.to_thread(h.FakeProcess, latency)
            try:
                for round_no in range(args.rounds):
                    for name, extra in variants.items():
                        empty(multiproc)  # multiprocess mode starts from an empty directory
                        print(f"round {round_no + 1}/{args.rounds}: {name}", flush=True)
                        row = await one_variant(bench, extra, args.conversations, args.saturation_turns)
                        collected[name].append(row)
                        print(
                            f"  p50 {pct(row['latency_ms'], 50):.0f} ms, overhead p50 "
                            f"{pct(row['overhead_ms'], 50):.1f} ms, {row['turns_per_s']:.1f} turns/s, "
                            f"{row['cpu_ms_per_turn']:.2f} ms CPU/turn",
                            flush=True,
                        )
            finally:
                bench.stop_servers()
                bench.fake.stop()
                await asyncio.to_thread(bench.redis.stop)
    finally:
        sink.close()
    summary: dict[str, Any] = {}
    for name, rows in collected.items():
        latencies = [v for r in rows for v in r["latency_ms"]]
        overheads = [v for r in rows for v in r["overhead_ms"]]
        rates = sorted(r["turns_per_s"] for r in rows)
        cpus = sorted(r["cpu_ms_per_turn"] for r in rows)
        summary[name] = {
            "turns": len(latencies),
            "errors": sum(r["errors"] for r in rows),
            "latency_p50_ms": pct(latencies, 50),
            "latency_p95_ms": pct(latencies, 95),
            "overhead_p50_ms": pct(overheads, 50),
            "overhead_p95_ms": pct(overheads, 95),
            "turns_per_s_median": rates[len(rates) // 2],
            "turns_per_s_runs": rates,
            "cpu_ms_per_turn_median": cpus[len(cpus) // 2],
            "cpu_ms_per_turn_runs": cpus,
        }
    return {
        "benchmark": "benchmarks.ab",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": h.machine(),
        "base": str(args.base),
        "rounds": args.rounds,
        "conversations": args.conversations,
        "saturation_turns": args.saturation_turns,
        "latency_model": vars(latency),
        "summary": summary,
    }


def table(results: dict[str, Any]) -> str:
    summary = results["summary"]
    names = list(summary)
    rows = [
        ("turns measured (latency)", "turns", "{:.0f}"),
        ("turn latency p50 (ms)", "latency_p50_ms", "{:.0f}"),
        ("turn latency p95 (ms)", "latency_p95_ms", "{:.0f}"),
        ("server overhead p50 (ms)", "overhead_p50_ms", "{:.1f}"),
        ("server overhead p95 (ms)", "overhead_p95_ms", "{:.1f}"),
        ("saturation, median (turns/s)", "turns_per_s_median", "{:.1f}"),
        ("server CPU per turn, median (ms)", "cpu_ms_per_turn_median", "{:.2f}"),
    ]
    lines = [f"{'':34}" + "".join(f"{n:>12}" for n in names)]
    for label, key, fmt in rows:
        lines.append(f"{label:34}" + "".join(f"{fmt.format(summary[n][key]):>12}" for n in names))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--base", required=True, help="the other source tree (e.g. a git archive of main)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--saturation-turns", type=int, default=300)
    parser.add_argument(
        "--variants", nargs="*", default=["multiproc", "traced"], help="extra variants of this tree"
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.base = str(Path(args.base).resolve())
    results = asyncio.run(run(args))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "ab.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
