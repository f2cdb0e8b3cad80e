"""Customer-visible time to first token vs the answer model's own TTFT.

Starts the fake model API (per-model latency) and a real ``switchboard serve`` subprocess, drives customer
turns over real widget WebSockets, and compares the time from sending a ``message`` frame to the first
``delta`` frame with the time a direct SDK streaming call to the answer model takes to its first text delta.
Measures and prints only; it never asserts. See docs/benchmarks.md.

    python -m benchmarks.ttft [--turns 30] [--triage-ttft 0.35] [--answer-ttft 0.8] [--tps 60]
                              [--concurrency 1] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import websockets
from anthropic.types import ToolParam

from benchmarks.harness import (
    ANSWER_MODEL,
    ANSWER_TEXT,
    ORIGIN,
    QUESTIONS,
    RECV_TIMEOUT_S,
    TRIAGE_MODEL,
    TRIAGE_VERDICT,
    WIDGET_KEY,
    Server,
    is_answer,
    is_triage,
    machine,
    open_session,
    question,
    roomy_limits,
    summary,
)
from support.testing.fake_anthropic import FakeAnthropic, Reply

THINK_TIME_S = 0.2  # pause between a reply and the customer's next message in the same conversation
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "ttft.json"


# -- customer side -----------------------------------------------------------------------------------


async def recv(ws: websockets.ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S))
    return frame


async def one_turn(ws: websockets.ClientConnection, client_id: str, text: str) -> dict[str, Any]:
    """Send one message; return the customer TTFT (send -> first delta) and the full turn time."""
    sent = time.perf_counter()
    await ws.send(json.dumps({"type": "message", "client_id": client_id, "text": text}))
    first_delta: float | None = None
    while True:
        frame = await recv(ws)
        now = time.perf_counter()
        if frame["type"] == "delta" and first_delta is None:
            first_delta = now
        if frame["type"] == "message" and frame.get("role") == "assistant":
            return {
                "ttft_s": (first_delta if first_delta is not None else now) - sent,
                "turn_s": now - sent,
                "streamed": first_delta is not None,
            }
        if frame["type"] == "status" and frame.get("state") == "queued":
            return {"ttft_s": None, "turn_s": now - sent, "streamed": False, "handed_off": True}
        if frame["type"] == "error":
            raise RuntimeError(f"server error frame: {frame}")


async def drive_customers(
    server: Server, turns: int, per_conversation: int, concurrency: int
) -> list[dict[str, Any]]:
    plan = [min(per_conversation, turns - start) for start in range(0, turns, per_conversation)]
    queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    for index, count in enumerate(plan):
        queue.put_nowait((index, count))
    results: list[dict[str, Any]] = []

    async def worker(http: httpx.AsyncClient) -> None:
        while True:
            try:
                conv_index, count = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            session = await open_session(http, server.url)
            url = f"ws://127.0.0.1:{server.port}/api/v1/widget/ws?token={session['token']}"
            async with websockets.connect(url) as ws:
                for i in range(count):
                    if i:
                        await asyncio.sleep(THINK_TIME_S)
                    result = await one_turn(ws, f"b-{conv_index}-{i}", question(i))
                    result.update(conversation=conv_index, turn_in_conversation=i + 1)
                    results.append(result)
                    ttft = (
                        f"{result['ttft_s'] * 1000:.0f} ms" if result["ttft_s"] is not None else "handed off"
                    )
                    print(f"  turn {len(results)}/{turns}: customer TTFT {ttft}", flush=True)

    async with httpx.AsyncClient(timeout=10) as http:
        await asyncio.gather(*(worker(http) for _ in range(max(1, concurrency))))
    return results


# -- direct model calls ------------------------------------------------------------------------------


async def direct_answer_ttfts(base_url: str, n: int, concurrency: int) -> list[float]:
    """Direct SDK streaming calls to the answer model: time to the first text delta."""
    client = anthropic.AsyncAnthropic(base_url=base_url, api_key="bench", max_retries=0)
    sem = asyncio.Semaphore(max(1, concurrency))
    out: list[float] = []
    done = 0

    async def call(i: int) -> None:
        nonlocal done
        async with sem:
            started = time.perf_counter()
            async with client.messages.stream(
                model=ANSWER_MODEL, max_tokens=256,
                messages=[{"role": "user", "content": question(i)}],
            ) as stream:  # fmt: skip
                async for event in stream:
                    if event.type == "text":
                        out.append(time.perf_counter() - started)
                        break
            done += 1
            print(f"  direct answer call {done}/{n}", flush=True)

    try:
        await asyncio.gather(*(call(i) for i in range(n)))
    finally:
        await client.close()
    return out


async def direct_triage_durations(base_url: str, n: int) -> list[float]:
    """Direct non-streaming triage calls (how the service calls triage): time to the complete response."""
    client = anthropic.AsyncAnthropic(base_url=base_url, api_key="bench", max_retries=0)
    tool: ToolParam = {
        "name": "record_triage",
        "description": "Record the triage verdict.",
        "input_schema": {"type": "object", "properties": {k: {} for k in TRIAGE_VERDICT}},
    }
    out: list[float] = []

    async def call() -> None:
        started = time.perf_counter()
        await client.messages.create(
            model=TRIAGE_MODEL, max_tokens=400, tools=[tool],
            tool_choice={"type": "tool", "name": "record_triage"},
            messages=[{"role": "user", "content": QUESTIONS[0]}],
        )  # fmt: skip
        out.append(time.perf_counter() - started)

    try:
        await asyncio.gather(*(call() for _ in range(n)))
    finally:
        await client.close()
    return out


# -- main --------------------------------------------------------------------------------------------


def print_table(customer: dict[str, float], direct: dict[str, float], triage: dict[str, float]) -> None:
    print()
    print(f"{'':28}{'p50':>10}{'p90':>10}{'p99':>10}")
    rows = [
        ("customer TTFT (ms)", [customer[p] * 1000 for p in ("p50", "p90", "p99")], "{:>10.0f}"),
        ("answer-model TTFT (ms)", [direct[p] * 1000 for p in ("p50", "p90", "p99")], "{:>10.0f}"),
        ("difference (ms)", [(customer[p] - direct[p]) * 1000 for p in ("p50", "p90", "p99")], "{:>+10.0f}"),
        ("ratio customer/model", [customer[p] / direct[p] for p in ("p50", "p90", "p99")], "{:>10.3f}"),
        ("triage call, total (ms)", [triage[p] * 1000 for p in ("p50", "p90", "p99")], "{:>10.0f}"),
    ]
    for name, values, fmt in rows:
        print(f"{name:28}" + "".join(fmt.format(v) for v in values))
    ratio = customer["p50"] / direct["p50"]
    verdict = "within" if ratio <= 1.05 else "NOT within"
    print(f"\ntarget: customer TTFT within 5% of the answer model's own -> p50 ratio {ratio:.3f} ({verdict})")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    wall = time.perf_counter()
    fake = FakeAnthropic().start()
    server: Server | None = None
    tmp = tempfile.TemporaryDirectory(prefix="switchboard-bench-")
    try:
        fake.set_latency(ttft_s=args.triage_ttft, tps=args.tps, model=TRIAGE_MODEL)
        fake.set_latency(ttft_s=args.answer_ttft, tps=args.tps, model=ANSWER_MODEL)
        fake.add_rule(lambda body: Reply(tool_use={"name": "record_triage", "input": dict(TRIAGE_VERDICT)})
                      if is_triage(body) else None)  # fmt: skip
        fake.add_rule(lambda body: Reply(text=ANSWER_TEXT) if is_answer(body) else None)
        env = {
            "ANTHROPIC_API_KEY": "bench",
            "ANTHROPIC_BASE_URL": fake.url,
            "SWITCHBOARD_WIDGET_KEYS": json.dumps({WIDGET_KEY: [ORIGIN]}),
            "SWITCHBOARD_LLM_REQUESTS_PER_MINUTE": "100000",
            **roomy_limits(),
            "SWITCHBOARD_TRIAGE_MODEL": TRIAGE_MODEL,
            "SWITCHBOARD_ANSWER_MODEL": ANSWER_MODEL,
        }
        if args.redis_url:
            env["SWITCHBOARD_REDIS_URL"] = args.redis_url
        server = Server(Path(tmp.name) / "data", env)
        print(f"starting switchboard serve on :{server.port} (fake model API at {fake.url}) ...", flush=True)
        server.start()
        print(f"customer turns: {args.turns} (x{args.turns_per_conversation} per conversation, "
              f"concurrency {args.concurrency})", flush=True)  # fmt: skip
        turns = await drive_customers(server, args.turns, args.turns_per_conversation, args.concurrency)
        print(f"direct answer-model streaming calls: {args.turns} (concurrency {args.direct_concurrency})",
              flush=True)  # fmt: skip
        direct = await direct_answer_ttfts(fake.url, args.turns, args.direct_concurrency)
        triage = await direct_triage_durations(fake.url, 5)
    finally:
        if server is not None:
            server.stop()
        fake.stop()
        tmp.cleanup()
    streamed = [t["ttft_s"] for t in turns if t["ttft_s"] is not None]
    if not streamed:
        raise RuntimeError("no turn streamed an answer; see the per-turn results")
    customer_s, direct_s, triage_s = summary(streamed), summary(direct), summary(triage)
    print_table(customer_s, direct_s, triage_s)
    elapsed = time.perf_counter() - wall
    print(f"total run time {elapsed:.1f} s")
    return {
        "benchmark": "ttft",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {
            "turns": args.turns,
            "turns_per_conversation": args.turns_per_conversation,
            "concurrency": args.concurrency,
            "direct_concurrency": args.direct_concurrency,
            "triage_model": TRIAGE_MODEL,
            "answer_model": ANSWER_MODEL,
            "triage_ttft_s": args.triage_ttft,
            "answer_ttft_s": args.answer_ttft,
            "tps": args.tps,
            "redis": args.redis_url or "embedded",
            "think_time_s": THINK_TIME_S,
        },
        "machine": machine(),
        "customer_ttft_s": customer_s,
        "answer_model_ttft_s": direct_s,
        "triage_call_total_s": triage_s,
        "difference_s": {p: customer_s[p] - direct_s[p] for p in ("p50", "p90", "p99")},
        "ratio": {p: customer_s[p] / direct_s[p] for p in ("p50", "p90", "p99")},
        "handed_off_turns": sum(1 for t in turns if t.get("handed_off")),
        "turns": turns,
        "direct_answer_ttfts_s": direct,
        "run_time_s": elapsed,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ttft", description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=30, help="customer turns (and direct calls)")
    parser.add_argument("--triage-ttft", type=float, default=0.35, help=f"{TRIAGE_MODEL} TTFT, seconds")
    parser.add_argument("--answer-ttft", type=float, default=0.8, help=f"{ANSWER_MODEL} TTFT, seconds")
    parser.add_argument("--tps", type=float, default=60.0, help="output tokens per second, both models")
    parser.add_argument("--concurrency", type=int, default=1, help="conversations driven at once")
    parser.add_argument("--turns-per-conversation", type=int, default=3)
    parser.add_argument(
        "--direct-concurrency", type=int, default=3,
        help="direct answer-model calls at once (the fake's latency is per request, so this only saves time)",
    )  # fmt: skip
    parser.add_argument("--redis-url", default=None, help="default: the embedded Redis in a temp data dir")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def on_sigterm(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through run()'s finally: subprocesses are stopped

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        results = asyncio.run(run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
