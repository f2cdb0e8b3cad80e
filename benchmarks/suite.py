"""``switchboard bench``: overhead (next to the same model calls alone), capacity, model-calls-only ceiling,
scale-out (and cost, if present).

Everything runs on loopback: one embedded Redis shared by every server of the run, the fake model API (in
a process of its own, ``harness.FakeProcess``) and ``switchboard serve`` subprocesses. See
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import pstats
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from benchmarks import harness as h
from benchmarks import model_calls
from support.embedded_redis import EmbeddedRedis

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROFILE_ENV = "SWITCHBOARD_PROFILE_OUT"
STDLIB_PACKAGES = ("asyncio", "json", "logging", "email", "http", "concurrent")
CEILING_RUNS = 3  # the model-calls-only loop is run this often; the median run is the ceiling
WARM_UP_CONVERSATIONS = 4  # x 2 turns on a fresh server before the overhead levels are measured


@dataclass
class Sizes:
    overhead_levels: tuple[int, ...] = (10, 100, 1000)
    overhead_turns: int = 2  # turns per conversation
    think_s: float = 10.0  # pause between a reply and the next message (a customer reading and typing)
    idle_sockets: int = 5000
    saturation_concurrency: int = 32
    saturation_turns: int = 900
    turns_per_conversation: int = 3
    profile_turns: int = 300
    scale_out: tuple[int, ...] = (1, 2, 4)
    scale_out_turns: int = 600

    @classmethod
    def smoke(cls) -> Sizes:
        return cls((5,), 1, 0.0, 100, 8, 30, 3, 0, (1, 2), 30)


class Bench:
    def __init__(self, sizes: Sizes, latency: h.LatencyModel, progress: h.Progress, tmp: Path) -> None:
        self.sizes, self.latency, self.progress, self.tmp = sizes, latency, progress, tmp
        self.redis = EmbeddedRedis(tmp / "redis", persistent=False)
        self.fake: h.FakeProcess | None = None
        self.servers: list[h.Server] = []
        self.count = 0

    async def fresh_redis(self) -> None:
        """Each phase starts from an empty Redis: an overloaded phase must not leave work for the next."""
        client = aioredis.Redis.from_url(self.redis.url)
        try:
            await client.flushall()
        finally:
            await client.aclose()

    def start_servers(self, n: int, extra: dict[str, str] | None = None) -> list[h.Server]:
        assert self.fake is not None
        started = []
        for _ in range(n):
            self.count += 1
            env = h.server_env(self.fake.url, self.redis.url, extra)
            server = h.Server(self.tmp / f"server-{self.count}", env)
            self.servers.append(server)
            started.append(server.start())
        return started

    def stop_servers(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()

    # -- 1. overhead -----------------------------------------------------------------------------

    async def overhead(self) -> list[dict[str, Any]]:
        assert self.fake is not None
        h.set_latency(self.fake, self.latency)
        await self.fresh_redis()
        (server,) = self.start_servers(1)
        rows = []
        try:
            # A fresh process's first turns pay for imports, pool connections and script loads: not per turn.
            warm = await h.open_sessions([server.url], WARM_UP_CONVERSATIONS)
            await asyncio.gather(*(h.run_conversation(u, t, f"warm-{i}", 2, 0.0, [])
                                   for i, (u, t) in enumerate(warm)))  # fmt: skip
            for level in self.sizes.overhead_levels:
                self.progress(
                    f"overhead: {level} concurrent conversations x {self.sizes.overhead_turns} turns"
                )
                sessions = await h.open_sessions([server.url], level)
                self.fake.take_requests()
                results: list[h.TurnResult] = []
                started = time.monotonic()

                async def conv(
                    i: int, url: str, token: str, lvl: int = level, out: list[h.TurnResult] = results
                ) -> None:
                    await asyncio.sleep(self.sizes.think_s * (i / max(1, lvl)))  # spread the starts
                    await h.run_conversation(
                        url, token, f"o{lvl}-{i}", self.sizes.overhead_turns, self.sizes.think_s, out
                    )

                await asyncio.gather(*(conv(i, u, t) for i, (u, t) in enumerate(sessions)))
                waits = h.model_wait_by_tag(self.fake.take_requests())
                rows.append(self._overhead_row(level, results, waits, time.monotonic() - started))
                r = rows[-1]
                self.progress(
                    f"  overhead p50 {r['overhead_ms']['p50']:.1f} ms p99 {r['overhead_ms']['p99']:.1f} ms; "
                    f"TTFT ratio {r['ttft_ratio_p50']:.3f}"
                )
                self.progress(f"  the same model calls alone, same pattern, {level} conversations")
                started = time.monotonic()
                alone = await model_calls.overhead_in_process(
                    self.fake.url, level, self.sizes.overhead_turns, self.sizes.think_s
                )
                alone_waits = h.model_wait_by_tag(self.fake.take_requests())
                r["model_calls_only"] = self._overhead_row(
                    level, alone, alone_waits, time.monotonic() - started
                )
                m = r["model_calls_only"]["overhead_ms"]
                r["added_by_switchboard_ms"] = {
                    k: r["overhead_ms"][k] - m[k] for k in ("p50", "p99") if k in m and k in r["overhead_ms"]
                }
                self.progress(
                    f"  model calls alone: p50 {m.get('p50', float('nan')):.1f} ms"
                    f" p99 {m.get('p99', float('nan')):.1f} ms"
                )
        finally:
            self.stop_servers()
        return rows

    @staticmethod
    def _overhead_row(
        level: int, results: list[h.TurnResult], waits: dict[str, dict[str, Any]], wall_s: float
    ) -> dict[str, Any]:
        overhead, customer_ttft, model_ttft, diff = [], [], [], []
        before, after = [], []
        for r in results:
            w = waits.get(r.tag)
            if r.done is None or r.error or r.handed_off or w is None:
                continue
            overhead.append((r.done - r.sent - w["model_wait_s"]) * 1000)
            before.append((w["first_request_at"] - r.sent) * 1000)
            after.append((r.done - w["last_byte_at"]) * 1000)
            if r.first_delta is not None and w["answer_ttft_s"] is not None:
                customer_ttft.append((r.first_delta - r.sent) * 1000)
                model_ttft.append(w["answer_ttft_s"] * 1000)
                diff.append(customer_ttft[-1] - model_ttft[-1])
        c, m = h.summary(customer_ttft), h.summary(model_ttft)
        return {
            "concurrency": level,
            "turns": len(results),
            "measured_turns": len(overhead),
            "errors": sum(1 for r in results if r.error),
            "handed_off": sum(1 for r in results if r.handed_off),
            "wall_s": wall_s,
            "overhead_ms": h.summary(overhead),
            # where it is: message sent -> first model request at the fake; last model byte -> reply received
            "before_model_ms": h.summary(before),
            "after_model_ms": h.summary(after),
            "customer_ttft_ms": c,
            "answer_model_ttft_ms": m,
            "ttft_difference_ms": h.summary(diff),
            "ttft_ratio_p50": c["p50"] / m["p50"] if m.get("n") else float("nan"),
        }

    # -- 2. capacity -----------------------------------------------------------------------------

    async def idle_sockets(self) -> dict[str, Any]:
        n = self.sizes.idle_sockets
        await self.fresh_redis()
        (server,) = self.start_servers(1)
        sockets = []
        try:
            warm = await h.open_sessions(
                [server.url], 20
            )  # warm-up: first-use allocations are not per socket
            for url, token in warm:
                ws = await h.connect(url, token)
                await ws.close()
            await asyncio.sleep(0.5)
            self.progress(f"capacity: opening {n} idle customer WebSockets on one process")
            sessions = await h.open_sessions([server.url], n)
            base = h.rss_bytes(server.pid)
            sem = asyncio.Semaphore(64)

            async def one(url: str, token: str) -> None:
                async with sem:
                    sockets.append(await h.connect(url, token))
                    if len(sockets) % 1000 == 0:
                        self.progress(f"  {len(sockets)} sockets open")

            await asyncio.gather(*(one(u, t) for u, t in sessions))
            await asyncio.sleep(2.0)
            after = h.rss_bytes(server.pid)
            alive = sum(1 for ws in sockets if ws.close_code is None)
            per = (after - base) / max(1, alive)
            self.progress(
                f"  {alive} idle sockets held; RSS +{(after - base) / 2**20:.1f} MiB"
                f" = {per / 1024:.1f} KB each"
            )
            return {
                "sockets": alive,
                "rss_before_bytes": base,
                "rss_after_bytes": after,
                "bytes_per_socket": per,
            }
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
            self.stop_servers()

    async def _saturate(
        self, servers: list[h.Server], turns: int, concurrency: int, name: str
    ) -> dict[str, Any]:
        per_conv = self.sizes.turns_per_conversation
        n_conv = -(-turns // per_conv)
        sessions = await h.open_sessions([s.url for s in servers], n_conv)
        queue: asyncio.Queue[tuple[int, str, str]] = asyncio.Queue()
        for i, (u, t) in enumerate(sessions):
            queue.put_nowait((i, u, t))
        results: list[h.TurnResult] = []

        async def worker() -> None:
            while not queue.empty():
                i, url, token = queue.get_nowait()
                await h.run_conversation(url, token, f"{name}-{i}", per_conv, 0.0, results)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
        ok = sum(1 for r in results if r.done is not None and not r.error)
        return {"turns": len(results), "ok_turns": ok, "errors": len(results) - ok, "elapsed_s": elapsed,
                "turns_per_s": ok / elapsed}  # fmt: skip

    async def saturation(self) -> dict[str, Any]:
        assert self.fake is not None
        h.set_latency(self.fake, h.LatencyModel.zero())
        await self.fresh_redis()
        s = self.sizes
        (server,) = self.start_servers(1)
        try:
            self.progress(
                f"saturation: {s.saturation_turns} turns, {s.saturation_concurrency} at once,"
                " zero-latency fake"
            )
            await self._saturate([server], min(60, s.saturation_turns), s.saturation_concurrency, "warm")
            ours = await self._saturate([server], s.saturation_turns, s.saturation_concurrency, "sat")
            self.fake.take_requests()
        finally:
            self.stop_servers()
        self.progress(f"  switchboard: {ours['turns_per_s']:.1f} turns/s")
        self.progress(
            "ceiling: the same SDK calls alone (triage + streamed answer),"
            f" {s.saturation_concurrency} at once"
        )
        # The ceiling moves a lot between runs (two processes on two cores: where the scheduler puts them
        # matters), so it is measured CEILING_RUNS times and the median run is the one compared.
        runs = []
        for _ in range(CEILING_RUNS):
            run = await model_calls.ceiling(self.fake.url, s.saturation_turns, s.saturation_concurrency)
            runs.append(run)
            self.fake.take_requests()
        runs.sort(key=lambda run: float(run["turns_per_s"]))
        ceiling = {**runs[len(runs) // 2], "runs_turns_per_s": [run["turns_per_s"] for run in runs]}
        ratio = ours["turns_per_s"] / ceiling["turns_per_s"]
        spread = ", ".join(f"{run['turns_per_s']:.0f}" for run in runs)
        self.progress(f"  ceiling: {ceiling['turns_per_s']:.1f} turns/s (runs: {spread}); ratio {ratio:.2f}")
        return {"switchboard": ours, "model_calls_only": ceiling, "ratio": ratio}

    async def profile(self) -> dict[str, Any]:
        s = self.sizes
        if not s.profile_turns:
            self.progress("profile: skipped at this size")
            return {"skipped": True}
        out = self.tmp / "serve.pstats"
        await self.fresh_redis()
        (server,) = self.start_servers(1, {PROFILE_ENV: str(out)})
        try:
            self.progress(f"profile: cProfile of the server over {s.profile_turns} saturated turns")
            run = await self._saturate([server], s.profile_turns, s.saturation_concurrency, "prof")
        finally:
            self.stop_servers()
        if not out.exists():
            return {"error": "no profile written", "run": run}
        stats = pstats.Stats(str(out))
        total = stats.total_tt  # type: ignore[attr-defined]
        rows = []
        for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            rows.append(
                {
                    "function": f"{Path(file).name}:{line}({func})",
                    "calls": nc,
                    "tottime_s": tt,
                    "cumtime_s": ct,
                }
            )
        rows.sort(key=lambda r: r["tottime_s"], reverse=True)
        return {"run": run, "total_s": total, "top_tottime": rows[:15],
                "by_area": profile_areas(stats)}  # fmt: skip

    # -- 3. scale-out ----------------------------------------------------------------------------

    async def scale_out(self) -> list[dict[str, Any]]:
        assert self.fake is not None
        h.set_latency(self.fake, h.LatencyModel.zero())
        rows = []
        for n in self.sizes.scale_out:
            self.progress(
                f"scale-out: {n} server process(es) sharing one Redis, {self.sizes.scale_out_turns} turns"
            )
            await self.fresh_redis()
            servers = self.start_servers(n)
            try:
                await self._saturate(
                    servers,
                    min(30 * n, self.sizes.scale_out_turns),
                    self.sizes.saturation_concurrency,
                    f"w{n}",
                )
                r = await self._saturate(
                    servers, self.sizes.scale_out_turns, self.sizes.saturation_concurrency * n, f"s{n}"
                )
            finally:
                self.stop_servers()
                self.fake.take_requests()
            rows.append({"servers": n, **r})
            self.progress(f"  {n} process(es): {r['turns_per_s']:.1f} turns/s")
        return rows


def profile_areas(stats: pstats.Stats) -> dict[str, float]:
    """Self time grouped by package (a rough map of where a turn's CPU goes)."""
    areas: dict[str, float] = {}
    for (file, _line, _func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if "/support/" in file or "/handoff/" in file:
            area = "switchboard (support/, handoff/)"
        elif "site-packages/" in file:
            area = file.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
        elif file.startswith("~"):
            area = "C functions (socket I/O, epoll, json, ...)"
        else:
            parent = Path(file).parent.name
            area = f"stdlib {parent if parent in STDLIB_PACKAGES else Path(file).stem}"
        areas[area] = areas.get(area, 0.0) + tt
    return dict(sorted(areas.items(), key=lambda kv: kv[1], reverse=True))


# -- cost (the other half of issue 6) ------------------------------------------------------------


def run_cost_if_available(smoke: bool, out_dir: Path, progress: h.Progress) -> dict[str, Any] | None:
    if importlib.util.find_spec("benchmarks.cost") is None:
        progress("cost benchmark not available")
        return None
    module = importlib.import_module("benchmarks.cost")
    run_cost: Callable[..., dict[str, Any]] = module.run_cost
    return run_cost(smoke=smoke, out_dir=out_dir, progress=progress)


def run_tickets_if_available(smoke: bool, out_dir: Path, progress: h.Progress) -> dict[str, Any] | None:
    if importlib.util.find_spec("benchmarks.tickets") is None:
        progress("tickets benchmark not available")
        return None
    module = importlib.import_module("benchmarks.tickets")
    run_tickets: Callable[..., dict[str, Any]] = module.run_tickets
    return run_tickets(smoke=smoke, out_dir=out_dir, progress=progress)


# -- report --------------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    lines = [f"{'metric':58}{'value':>22}", "-" * 80]

    def row(name: str, value: str) -> None:
        lines.append(f"{name:58}{value:>22}")

    trip = results.get("machine", {}).get("redis_round_trip_ms")
    if trip:
        row(
            "Redis round trip, busy / after 20 ms idle (ms)",
            f"{trip['busy']:.3f} / {trip['after_20ms_idle']:.3f}",
        )
    for r in results.get("overhead", []):
        o, d = r["overhead_ms"], r["ttft_difference_ms"]
        c = r["concurrency"]
        if o.get("n"):
            row(f"overhead per turn @{c} conv, p50 / p99 (ms)", f"{o['p50']:.1f} / {o['p99']:.1f}")
            b, a = r.get("before_model_ms", {}), r.get("after_model_ms", {})
            if b.get("n") and a.get("n"):
                split = f"{b['p50']:.1f} / {a['p50']:.1f}"
                row(f"  of which before / after the model calls @{c}, p50 (ms)", split)
        alone = r.get("model_calls_only", {}).get("overhead_ms", {})
        if alone.get("n"):
            row(f"  the model calls alone @{c}, p50 / p99 (ms)", f"{alone['p50']:.1f} / {alone['p99']:.1f}")
        if d.get("n"):
            row(f"customer TTFT - model TTFT @{c}, p50 / p99 (ms)", f"{d['p50']:.0f} / {d['p99']:.0f}")
            row(f"customer TTFT / model TTFT @{c}, p50 (target <= 1.05)", f"{r['ttft_ratio_p50']:.3f}")
        row(
            f"turns measured / errors / handed off @{c}",
            f"{r['measured_turns']} / {r['errors']} / {r['handed_off']}",
        )
    idle = results.get("idle_sockets")
    if idle:
        row("idle WebSockets held by one process (target >= 5000)", f"{idle['sockets']}")
        row(
            "memory per idle WebSocket, RSS delta (KB, target < 40)", f"{idle['bytes_per_socket'] / 1024:.1f}"
        )
    sat = results.get("saturation")
    if sat:
        row("saturation, zero-latency fake (turns/s)", f"{sat['switchboard']['turns_per_s']:.1f}")
        row("model-calls-only ceiling, same fake (turns/s)", f"{sat['model_calls_only']['turns_per_s']:.1f}")
        row("ratio to ceiling (target >= 0.50)", f"{sat['ratio']:.2f}")
    for r in results.get("scale_out", []):
        row(f"scale-out: {r['servers']} process(es) sharing one Redis (turns/s)", f"{r['turns_per_s']:.1f}")
    cost = results.get("cost")
    if cost and cost.get("table"):
        lines.append("")
        lines.append("cost:")
        lines.extend("  " + ", ".join(f"{k}={v}" for k, v in item.items()) for item in cost["table"])
    tickets = results.get("tickets")
    if tickets and tickets.get("comparison"):
        c = tickets["comparison"]
        lines.append("")
        lines.append(f"tickets ({tickets['config']['tickets']}), batches vs real time:")
        lines.append(
            f"  saving {c['saving_pct']:.1f}% overall, {c['batched_tickets_saving_pct']:.1f}% on batched ones"
        )
    prof = results.get("profile") or {}
    if prof.get("top_tottime"):
        lines.append("")
        lines.append(f"server profile (cProfile, {prof['run']['turns']} saturated turns), self time by area:")
        total = sum(prof["by_area"].values()) or 1.0
        for area, t in list(prof["by_area"].items())[:10]:
            lines.append(f"  {area:40}{t:8.2f} s {100 * t / total:5.1f}%")
        lines.append("top functions by self time:")
        lines.extend(
            f"  {f['function'][:60]:60}{f['calls']:>9}{f['tottime_s']:8.2f} s"
            for f in prof["top_tottime"][:12]
        )
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path, progress: h.Progress) -> Path | None:
    try:
        import matplotlib
    except ImportError:
        progress("chart skipped: matplotlib is not installed (pip install -e '.[bench]')")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    over = results.get("overhead", [])
    if over:
        xs = range(len(over))
        p50 = [max(r["overhead_ms"].get("p50", 0), 0.1) for r in over]
        p99 = [max(r["overhead_ms"].get("p99", 0), 0.1) for r in over]
        axes[0].bar([x - 0.2 for x in xs], p50, width=0.4, color="#4c78a8", label="p50")
        axes[0].bar([x + 0.2 for x in xs], p99, width=0.4, color="#f58518", label="p99")
        alone = [r.get("model_calls_only", {}).get("overhead_ms", {}) for r in over]
        if all(a.get("n") for a in alone):
            for offset, key, colour in ((-0.2, "p50", "#1f3b5c"), (0.2, "p99", "#8a4a0b")):
                axes[0].scatter([x + offset for x in xs], [max(a[key], 0.1) for a in alone], marker="_",
                                s=600, color=colour, zorder=3, label=f"{key}, model calls alone")  # fmt: skip
        axes[0].set_xticks(list(xs), [str(r["concurrency"]) for r in over])
        axes[0].set_yscale("log")
        axes[0].axhline(10, color="grey", linestyle="--", label="10 ms (p99 target @100)")
        axes[0].set_xlabel("concurrent conversations")
        axes[0].set_title("server overhead per turn (ms, log scale)")
        axes[0].legend()
    sat = results.get("saturation")
    if sat:
        axes[1].bar(["switchboard", "model calls only"],
                    [sat["switchboard"]["turns_per_s"], sat["model_calls_only"]["turns_per_s"]],
                    color=["#4c78a8", "#bab0ac"])  # fmt: skip
        axes[1].set_title(f"turns/s at saturation (ratio {sat['ratio']:.2f})")
    scale = results.get("scale_out", [])
    if scale:
        axes[2].plot([r["servers"] for r in scale], [r["turns_per_s"] for r in scale], marker="o")
        axes[2].set_xticks([r["servers"] for r in scale])
        axes[2].set_title("scale-out: turns/s vs server processes (one Redis)")
        axes[2].set_xlabel("processes")
        axes[2].set_ylim(bottom=0)
    fig.suptitle(f"switchboard bench — {results['machine']['cpus']} CPUs, {results['timestamp']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


async def run_suite(args: argparse.Namespace, progress: h.Progress) -> dict[str, Any]:
    sizes = Sizes.smoke() if args.smoke else Sizes()
    if args.levels:
        sizes.overhead_levels = tuple(args.levels)
    if args.idle is not None:
        sizes.idle_sockets = args.idle
    if args.saturation_turns is not None:
        sizes.saturation_turns = args.saturation_turns
    if args.scale_out:
        sizes.scale_out = tuple(args.scale_out)
    latency = h.LatencyModel(args.triage_ttft, args.triage_tps, args.answer_ttft, args.answer_tps)
    wall = time.monotonic()
    results: dict[str, Any] = {
        "benchmark": "switchboard bench",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "smoke": args.smoke,
        "machine": h.machine(),
        "sizes": vars(sizes),
        "latency_model": vars(latency),
    }
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
        bench = Bench(sizes, latency, progress, Path(tmp))
        await asyncio.to_thread(bench.redis.start)
        bench.fake = await asyncio.to_thread(h.FakeProcess, latency)
        try:
            results["machine"]["redis_round_trip_ms"] = {
                "busy": await h.round_trip_ms(bench.redis.url, idle_s=0.0),
                "after_20ms_idle": await h.round_trip_ms(bench.redis.url, idle_s=0.02, n=50),
            }
            results["overhead"] = await bench.overhead()
            results["idle_sockets"] = await bench.idle_sockets()
            results["saturation"] = await bench.saturation()
            results["profile"] = await bench.profile()
            results["scale_out"] = await bench.scale_out()
        finally:
            bench.stop_servers()
            bench.fake.stop()
            await asyncio.to_thread(bench.redis.stop)
    # run_cost runs its own event loop (it is also a standalone script): give it a thread of its own.
    results["cost"] = await asyncio.to_thread(run_cost_if_available, args.smoke, args.out_dir, progress)
    results["tickets"] = await asyncio.to_thread(run_tickets_if_available, args.smoke, args.out_dir, progress)
    results["run_time_s"] = time.monotonic() - wall
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, whole run under a minute (CI)")
    parser.add_argument(
        "--levels", type=int, nargs="+", help="concurrent conversations for the overhead runs"
    )
    parser.add_argument("--idle", type=int, help="idle WebSockets to open on one process")
    parser.add_argument("--saturation-turns", type=int)
    parser.add_argument("--scale-out", type=int, nargs="+", help="server process counts, e.g. 1 2 4")
    parser.add_argument("--triage-ttft", type=float, default=0.35, help=f"{h.TRIAGE_MODEL} TTFT, seconds")
    parser.add_argument("--triage-tps", type=float, default=150.0, help=f"{h.TRIAGE_MODEL} output tokens/s")
    parser.add_argument("--answer-ttft", type=float, default=0.8, help=f"{h.ANSWER_MODEL} TTFT, seconds")
    parser.add_argument("--answer-tps", type=float, default=60.0, help=f"{h.ANSWER_MODEL} output tokens/s")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where bench.json and bench.png go")


def main(args: argparse.Namespace) -> int:
    def progress(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    def on_sigterm(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks: subprocesses are stopped

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        results = asyncio.run(run_suite(args, progress))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print()
    print(table(results))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    name = "bench-smoke" if args.smoke else "bench"
    (args.out_dir / f"{name}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nresults written to {args.out_dir / (name + '.json')}")
    png = chart(results, args.out_dir / f"{name}.png", progress)
    if png is not None:
        print(f"chart written to {png}")
    print(f"total run time {results['run_time_s']:.1f} s")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
