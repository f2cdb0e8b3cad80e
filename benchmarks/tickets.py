"""Tickets: what drafting through Message Batches saves, from the ledger, and what it costs in time.

The same 1,000 tickets (a fixed mix of urgencies, ``URGENCY_MIX``) are filed twice, each time into a fresh
in-process runtime (its job worker included) on an embedded Redis and SQLite, against the in-process fake
model API (:mod:`support.testing.fake_anthropic`, with model-like latencies and prompt-cache accounting):

* **real time**: every urgency is treated as urgent (``SWITCHBOARD_TICKETS_URGENT_URGENCIES`` lists them
  all), so each ticket is triaged and drafted at once;
* **batches**: the shipped routing (``high`` and ``urgent`` at once, the rest through Message Batches),
  with a shorter window than the shipped 300 s so the run takes minutes, not hours.

Cost is summed from the ledger (``model_usage``) of each run: triage, real-time answers and batch results,
per ticket conversation. Reported: the total of each path and the saving, overall and for the tickets
the batch path drafted through batches (target: >= 45 % less), and the time from submission to reply (or
to the agents' queue, for tickets routed to people) at each urgency, p50 and p95. The fake's batches end
``batch_delay_s`` after submission; real ones take minutes to hours, which the times here leave out.

    python -m benchmarks.tickets [--smoke] [--tickets N] [--out-dir DIR]

``run_tickets(smoke, out_dir, progress)`` is what ``switchboard bench`` calls. Measures and reports; the
target is printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlmodel import select

from benchmarks.harness import percentile
from support.db.models import ModelUsage, Ticket
from support.embedded_redis import EmbeddedRedis
from support.runtime import open_runtime
from support.settings import (
    AppSettings,
    DatabaseSettings,
    JobSettings,
    LLMSettings,
    RedisSettings,
    Settings,
    TicketSettings,
)
from support.testing.fake_anthropic import FakeAnthropic, Reply, last_user_text
from support.tickets.service import TicketIn

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TICKETS = 1000
SMOKE_TICKETS = 40
# Urgency mix of the filed tickets (fixed seed): most support mail is not urgent.
URGENCY_MIX = (("urgent", 0.03), ("high", 0.09), ("normal", 0.58), ("low", 0.30))
ALL_URGENCIES = [u for u, _ in URGENCY_MIX]
SEED = 18
TARGET_SAVING_PCT = 45.0
WORKER_CONCURRENCY = 64  # jobs at once in the runtime's worker (triage and real-time drafts wait on the API)
WAIT_LIMIT_S = 900.0  # a run that has not settled by then is reported as it stands
STALL_S = 45.0  # nor does one wait longer than this for no further ticket to settle (both: reported)
MARK = re.compile(r"\[u:(\w+)\]")
QUESTIONS = (
    "Where is my refund? I returned the boots two weeks ago.",
    "Can I exchange the jacket for a larger size?",
    "My order arrived with a broken zip. What now?",
    "How long does standard shipping to Austria take?",
    "Do Trail Club points expire?",
    "The tent rental deposit is still on my card.",
    "Can I return an item bought in a partner store online?",
    "Is express shipping refunded when the parcel is late?",
)
ANSWER = (
    "Thanks for getting in touch. Refunds go back to the payment method you used within 3 to 5 business "
    "days of the return being checked in. Exchanges for another size are free once per order line, and "
    "you can start one from the order page in your account."
)  # about 60 output tokens by the fake's count


@dataclass(frozen=True)
class Plan:
    """One way of running the same tickets."""

    name: str
    urgent_urgencies: list[str]


@dataclass(frozen=True)
class Sizes:
    tickets: int
    batch_window_s: float
    batch_poll_interval_s: float
    batch_delay_s: float
    latency: bool  # model-like latencies on the fake (off in the smoke run)


FULL = Sizes(TICKETS, batch_window_s=30.0, batch_poll_interval_s=2.0, batch_delay_s=10.0, latency=True)
SMOKE = Sizes(SMOKE_TICKETS, batch_window_s=2.0, batch_poll_interval_s=1.0, batch_delay_s=0.5, latency=False)


def dataset(n: int) -> list[tuple[str, str, str]]:
    """``n`` tickets as (urgency, subject, body); the same for every run."""
    rng = random.Random(SEED)
    urgencies = rng.choices(ALL_URGENCIES, weights=[w for _, w in URGENCY_MIX], k=n)
    return [(u, f"Question {i} [u:{u}]", QUESTIONS[i % len(QUESTIONS)]) for i, u in enumerate(urgencies)]


def fake_rule(body: dict[str, Any]) -> Reply | None:
    tools = {t.get("name") for t in body.get("tools") or []}
    if "record_triage" in tools:
        match = MARK.search(last_user_text(body))
        return Reply(
            tool_use={
                "name": "record_triage",
                "input": {
                    "intent": "returns_refunds", "urgency": match.group(1) if match else "normal",
                    "sentiment": "neutral", "language": "en", "wants_human": False, "confidence": 0.92,
                    "reason": "benchmark",
                },
            }
        )  # fmt: skip
    return Reply(text=ANSWER)


def _settings(tmp: Path, fake: FakeAnthropic, redis_url: str, path: Plan, sizes: Sizes) -> Settings:
    tmp.mkdir(parents=True, exist_ok=True)
    llm = LLMSettings().model_copy(
        update={
            "api_key": SecretStr("bench"), "base_url": fake.url, "requests_per_minute": 10_000_000,
            "input_tokens_per_minute": 100_000_000_000, "output_tokens_per_minute": 100_000_000_000,
        }
    )  # fmt: skip
    return Settings(
        app=AppSettings(data_dir=tmp),
        redis=RedisSettings(url=redis_url),
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp / 'db.sqlite3'}"),
        llm=llm,
        tickets=TicketSettings(
            urgent_urgencies=path.urgent_urgencies,
            batch_window_s=sizes.batch_window_s,
            batch_poll_interval_s=sizes.batch_poll_interval_s,
        ),
        jobs=JobSettings(concurrency=WORKER_CONCURRENCY),
    )


async def run_path(
    path: Plan, tickets: list[tuple[str, str, str]], fake: FakeAnthropic, redis: EmbeddedRedis, tmp: Path,
    sizes: Sizes, progress: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    """File every ticket into a fresh runtime; wait until each is answered or queued; read the ledger."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis.url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    fake.reset()
    fake.batch_delay_s = sizes.batch_delay_s
    if sizes.latency:
        fake.set_latency(ttft_s=0.3, tps=150.0, model="claude-haiku-4-5")
        fake.set_latency(ttft_s=0.8, tps=60.0, model="claude-sonnet-4-6")
    fake.add_rule(fake_rule)
    settings = _settings(tmp / path.name, fake, redis.url, path, sizes)
    started = time.monotonic()
    async with open_runtime(settings, run_jobs=True) as rt:
        for index, (_urgency, subject, body) in enumerate(tickets):
            await rt.tickets.create(
                TicketIn(subject=subject, body=body, customer_email=f"customer{index}@example.com",
                         metadata={"bench_index": index}),
                key_id=None, idempotency_key=None,
            )  # fmt: skip
        progress(f"{path.name}: {len(tickets)} tickets filed in {time.monotonic() - started:.1f} s")
        last_report = last_change = time.monotonic()
        done = -1
        while True:
            async with rt.sessions() as session:
                rows = list((await session.execute(select(Ticket))).scalars().all())
            before, done = done, sum(1 for t in rows if t.status in ("answered", "queued", "resolved"))
            if done != before:
                last_change = time.monotonic()
            if done == len(tickets) or time.monotonic() - started > WAIT_LIMIT_S:
                break
            if time.monotonic() - last_change > STALL_S:
                left = [t for t in rows if t.status not in ("answered", "queued")]
                stuck = Counter(f"{t.status}/{t.route}" for t in left)
                progress(f"{path.name}: nothing settled for {STALL_S:.0f} s; unsettled: {dict(stuck)}")
                break
            if time.monotonic() - last_report >= 5.0:
                last_report = time.monotonic()
                progress(f"{path.name}: {done}/{len(tickets)} answered or queued")
            await asyncio.sleep(0.25)
        async with rt.sessions() as session:
            ledger = list((await session.execute(select(ModelUsage))).scalars().all())
    wall_s = time.monotonic() - started
    progress(f"{path.name}: {done}/{len(tickets)} done in {wall_s:.1f} s")
    return _summarise(path, tickets, rows, ledger, wall_s)


def _summarise(
    path: Plan, tickets: list[tuple[str, str, str]], rows: list[Ticket], ledger: list[ModelUsage],
    wall_s: float,
) -> dict[str, Any]:  # fmt: skip
    cost_by_conversation: dict[str, Decimal] = defaultdict(Decimal)
    answers_by_conversation: dict[str, Decimal] = defaultdict(Decimal)
    by_kind: dict[str, Decimal] = defaultdict(Decimal)
    for row in ledger:
        cost_by_conversation[row.conversation_id or ""] += row.cost_usd
        if row.purpose == "answer":
            answers_by_conversation[row.conversation_id or ""] += row.cost_usd
        by_kind[f"{row.purpose}{' (batch)' if row.batch else ''}"] += row.cost_usd
    per_ticket: dict[int, dict[str, Any]] = {}
    waits: dict[str, list[float]] = defaultdict(list)
    for ticket in rows:
        index = int(ticket.meta["bench_index"])
        urgency = tickets[index][0]
        end = ticket.answered_at if ticket.status == "answered" else ticket.updated_at
        wait_s = (end - ticket.created_at).total_seconds() if end is not None else None
        if ticket.status in ("answered", "queued") and wait_s is not None:
            waits[urgency].append(wait_s)
        per_ticket[index] = {
            "route": ticket.route, "status": ticket.status,
            "cost_usd": str(cost_by_conversation.get(ticket.conversation_id, Decimal(0))),
            "answer_cost_usd": str(answers_by_conversation.get(ticket.conversation_id, Decimal(0))),
        }  # fmt: skip
    return {
        "path": path.name,
        "urgent_urgencies": path.urgent_urgencies,
        "tickets": len(rows),
        "settled": sum(1 for t in rows if t.status in ("answered", "queued")),
        "unsettled": dict(
            Counter(f"{t.status}/{t.route}" for t in rows if t.status not in ("answered", "queued"))
        ),
        "routes": {r: sum(1 for t in rows if t.route == r) for r in ("realtime", "batch")},
        "model_calls": len(ledger),
        "batch_calls": sum(1 for u in ledger if u.batch),
        "total_cost_usd": str(sum((u.cost_usd for u in ledger), Decimal(0))),
        "cost_by_kind_usd": {k: str(v) for k, v in sorted(by_kind.items())},
        "wait_s_by_urgency": {
            u: {"n": len(waits[u]), "p50": percentile(waits[u], 50), "p95": percentile(waits[u], 95)}
            for u in ALL_URGENCIES
            if waits[u]
        },
        "wall_s": wall_s,
        "per_ticket": per_ticket,
    }


def compare(realtime: dict[str, Any], batches: dict[str, Any]) -> dict[str, Any]:
    """The saving overall, and on the tickets the batch run drafted through batches."""
    rt_total, b_total = Decimal(realtime["total_cost_usd"]), Decimal(batches["total_cost_usd"])
    batched = [i for i, t in batches["per_ticket"].items() if t["route"] == "batch"]
    rt_batched = sum((Decimal(realtime["per_ticket"][i]["cost_usd"]) for i in batched), Decimal(0))
    b_batched = sum((Decimal(batches["per_ticket"][i]["cost_usd"]) for i in batched), Decimal(0))

    rt_answers = sum((Decimal(realtime["per_ticket"][i]["answer_cost_usd"]) for i in batched), Decimal(0))
    b_answers = sum((Decimal(batches["per_ticket"][i]["answer_cost_usd"]) for i in batched), Decimal(0))

    def saving(before: Decimal, after: Decimal) -> float:
        return float((before - after) / before * 100) if before else 0.0

    return {
        "realtime_total_usd": str(rt_total),
        "batches_total_usd": str(b_total),
        "saving_pct": saving(rt_total, b_total),
        "batched_tickets": len(batched),
        "batched_tickets_realtime_usd": str(rt_batched),
        "batched_tickets_batches_usd": str(b_batched),
        "batched_tickets_saving_pct": saving(rt_batched, b_batched),
        "batched_tickets_answer_calls_saving_pct": saving(rt_answers, b_answers),
    }


def format_table(results: dict[str, Any]) -> str:
    c = results["comparison"]
    n = results["config"]["tickets"]
    lines = [
        f"{n} tickets, urgencies {dict(URGENCY_MIX)}",
        f"{'path':12}{'model calls':>13}{'batch calls':>13}{'cost (USD)':>14}{'per ticket':>12}",
    ]
    lines.extend(
        f"  {run['path']}: NOT SETTLED (status/route: count): {run['unsettled']}"
        for run in results["runs"]
        if run["unsettled"]
    )
    for run in results["runs"]:
        total = Decimal(run["total_cost_usd"])
        lines.append(
            f"{run['path']:12}{run['model_calls']:>13}{run['batch_calls']:>13}{total:>14.4f}"
            f"{total / max(1, run['tickets']):>12.5f}"
        )
    ok = c["batched_tickets_saving_pct"] >= TARGET_SAVING_PCT
    lines += [
        f"saving, all {n} tickets (urgent and high still in real time): {c['saving_pct']:.1f}%",
        f"saving, the {c['batched_tickets']} tickets drafted through batches: "
        f"{c['batched_tickets_saving_pct']:.1f}% (target >= {TARGET_SAVING_PCT:.0f}%: "
        f"{'met' if ok else 'NOT met'})",
        f"saving on those tickets' answer calls alone (their triage is real time on both paths): "
        f"{c['batched_tickets_answer_calls_saving_pct']:.1f}%",
        "",
        f"time from submission to reply (or to the agents' queue), seconds "
        f"(window {results['config']['batch_window_s']:.0f} s, fake batch time "
        f"{results['config']['batch_delay_s']:.0f} s):",
        f"{'urgency':10}{'path':12}{'n':>6}{'p50':>9}{'p95':>9}",
    ]
    for urgency in ALL_URGENCIES:
        for run in results["runs"]:
            w = run["wait_s_by_urgency"].get(urgency)
            if w:
                lines.append(f"{urgency:10}{run['path']:12}{w['n']:>6}{w['p50']:>9.2f}{w['p95']:>9.2f}")
    return "\n".join(lines)


def write_chart(results: dict[str, Any], path: Path) -> str | None:
    """Cost per path, and p50/p95 wait per urgency of the batch run (None: no matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    runs = results["runs"]
    fig, (ax_cost, ax_wait) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    costs = [float(r["total_cost_usd"]) for r in runs]
    bars = ax_cost.bar([r["path"] for r in runs], costs, color=["#b0b7c3", "#2f6fde"])
    ax_cost.bar_label(bars, labels=[f"${c:.2f}" for c in costs], padding=2, fontsize=9)
    ax_cost.set_ylabel("model cost, from the ledger (USD)")
    ax_cost.set_title(
        f"{results['config']['tickets']} tickets: -{results['comparison']['saving_pct']:.0f}% overall, "
        f"-{results['comparison']['batched_tickets_saving_pct']:.0f}% on batched ones"
    )
    ax_cost.spines[["top", "right"]].set_visible(False)
    waits = next(r for r in runs if r["path"] == "batches")["wait_s_by_urgency"]
    names = [u for u in ALL_URGENCIES if u in waits]
    x = range(len(names))
    ax_wait.bar([i - 0.2 for i in x], [waits[u]["p50"] for u in names], 0.4, label="p50", color="#4c78a8")
    ax_wait.bar([i + 0.2 for i in x], [waits[u]["p95"] for u in names], 0.4, label="p95", color="#f58518")
    ax_wait.set_xticks(list(x), names)
    ax_wait.set_ylabel("seconds")
    ax_wait.set_title("batch path: submission to reply, by urgency")
    ax_wait.legend(frameon=False)
    ax_wait.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def run_tickets(
    smoke: bool, out_dir: Path, progress: Callable[[str], None], *, tickets: int | None = None
) -> dict[str, Any]:
    """Run the benchmark; write ``tickets.json`` (``tickets-smoke.json`` for a smoke run) and a chart."""
    sizes = SMOKE if smoke else FULL
    if tickets is not None:
        sizes = Sizes(tickets, sizes.batch_window_s, sizes.batch_poll_interval_s, sizes.batch_delay_s,
                      sizes.latency)  # fmt: skip
    data = dataset(sizes.tickets)
    paths = [Plan("realtime", ALL_URGENCIES), Plan("batches", TicketSettings().urgent_urgencies)]
    started = time.monotonic()

    async def main(tmp: Path) -> list[dict[str, Any]]:
        redis = EmbeddedRedis(tmp / "redis", persistent=False)
        await asyncio.to_thread(redis.start)
        try:
            with FakeAnthropic() as fake:
                return [await run_path(p, data, fake, redis, tmp, sizes, progress) for p in paths]
        finally:
            await asyncio.to_thread(redis.stop)

    with tempfile.TemporaryDirectory(prefix="switchboard-tickets-") as tmp:
        runs = asyncio.run(main(Path(tmp)))
    comparison = compare(runs[0], runs[1])
    for run in runs:
        del run["per_ticket"]  # compared above; a thousand rows per path would only bloat the JSON
    results: dict[str, Any] = {
        "benchmark": "tickets",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "smoke": smoke,
        "config": {
            "tickets": sizes.tickets,
            "urgency_mix": dict(URGENCY_MIX),
            "batch_window_s": sizes.batch_window_s,
            "batch_poll_interval_s": sizes.batch_poll_interval_s,
            "batch_delay_s": sizes.batch_delay_s,
            "batch_max_requests": TicketSettings().batch_max_requests,
            "fake_latency": "haiku 0.3 s + 150 tok/s, sonnet 0.8 s + 60 tok/s" if sizes.latency else "zero",
            "worker_concurrency": WORKER_CONCURRENCY,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "comparison": comparison,
        "runs": runs,
        "run_time_s": time.monotonic() - started,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "tickets-smoke" if smoke else "tickets"
    (out_dir / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    for line in format_table(results).splitlines():
        progress(line)
    chart = write_chart(results, out_dir / f"{name}.png")
    progress(f"chart: {chart}" if chart else "chart skipped: matplotlib is not installed")
    progress(f"results written to {out_dir / (name + '.json')} ({results['run_time_s']:.1f} s)")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tickets", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_TICKETS} tickets, no model latency")
    parser.add_argument("--tickets", type=int, default=None, help=f"tickets per path (default {TICKETS})")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where tickets.json goes")
    args = parser.parse_args(argv)

    def on_sigterm(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)

    def progress(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    try:
        run_tickets(args.smoke, args.out_dir, progress, tickets=args.tickets)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
