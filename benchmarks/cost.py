"""Cost per conversation: Switchboard's real configuration against a naive baseline, from the ledger.

Replays the fixed conversations in ``benchmarks/data/conversations.jsonl`` for each policy (the shipped
sample policy and ``benchmarks/data/long_policy.md``, about 20,000 tokens):

* **Switchboard**: a real ``switchboard serve`` subprocess (embedded Redis, SQLite) whose model API is
  the in-process fake (:mod:`support.testing.fake_anthropic`, zero latency, prompt-cache accounting),
  driven over the real widget WebSocket, one socket per conversation. The fake answers triage with the
  dataset's verdict for the customer's words and streams an answer of the dataset's length. Cost is read
  afterwards from the ledger (SQL table ``model_usage``), per conversation: triage, answer and summary
  calls, handed-off turns included (their triage and the draft the agent receives).
* **Naive baseline**, in the same run and against the same fake: one call per customer turn to the
  answer model with the same instructions and policy as a plain system prompt (no ``cache_control``),
  the full history verbatim, no triage, no summaries; made with the real ``anthropic`` SDK and costed
  with :func:`support.llm.pricing.cost` from the returned usage.

    python -m benchmarks.cost [--smoke] [--conversations N] [--concurrency 6] [--out-dir DIR]

``run_cost(smoke, out_dir, progress)`` is the entry point ``switchboard bench`` calls. Measures and
reports only; the target (>= 75% below naive with the long policy) is printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import random
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import websockets

from benchmarks.harness import roomy_limits
from support.llm.answer import INSTRUCTIONS, build_answer_request
from support.llm.policy import Policy, load_policy
from support.llm.pricing import TokenCounts, cost, prices_for
from support.llm.tokens import estimate_tokens
from support.settings import DEFAULT_POLICY_PATH, PUBLIC_ENV_NAMES
from support.testing.fake_anthropic import FakeAnthropic, Reply
from support.testing.fake_anthropic import cached_prefix_tokens as fake_cached_prefix_tokens

DATA_DIR = Path(__file__).resolve().parent / "data"
CONVERSATIONS_PATH = DATA_DIR / "conversations.jsonl"
LONG_POLICY_PATH = DATA_DIR / "long_policy.md"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
TRIAGE_MODEL = "claude-haiku-4-5"
ANSWER_MODEL = "claude-sonnet-4-6"
ANSWER_MAX_TOKENS = 800  # the service default (SWITCHBOARD_LLM_ANSWER_MAX_TOKENS), used by the baseline too
ORIGIN = "http://bench.test"
WIDGET_KEY = "pk_bench"
RECV_TIMEOUT_S = 30.0
THINK_TIME_S = 0.05  # between a reply and the next message: lets a background summary start first
# The widget's per-socket message limit (support/channels/widget.py: a bucket of 10, refilled at 1/s).
# The replay stays under it like a human would, with a margin for clock differences.
CUSTOMER_BURST = 10
CUSTOMER_RATE_PER_S = 0.9
SMOKE_CONVERSATIONS = 8
DEFAULT_CONCURRENCY = 6
# Routing as shipped, except max_bot_turns: the default (8) hands a conversation's 9th turn to a person,
# after which its turns cost no model calls at all, while the baseline still pays for them. Raising it
# to the dataset's maximum (12) keeps the two runs like for like: the same turns, all answered by a model.
MAX_BOT_TURNS = 12
TARGET_REDUCTION_PCT = 75.0
NEW_MESSAGE = re.compile(r"<new_message>\n(.*)\n</new_message>\s*\Z", re.S)
SUMMARY_MARK = "You maintain the running summary"
SUMMARY_TEXT = (
    "The customer asked about their order and the return and refund rules for it; the assistant explained "
    "the 30-day return window, free returns with the prepaid label or at a partner store, and refund "
    "timing by payment method. No order or account has been changed. The customer has not asked for a "
    "person. Open points: none beyond the latest question."
)
ANSWER_SENTENCES = (
    "You can return unused items within 30 days of delivery for a full refund.",
    "Start the return from the order page in your account and you will get a prepaid label or QR code.",
    "Refunds go back to the payment method you used, usually within 3 to 5 business days.",
    "Standard shipping is free for Trail Club members and above the free-shipping threshold.",
    "Exchanges for a different size or colour are free once per order line within your return window.",
    "If an item is faulty, we cover the return shipping and you can choose a replacement or a refund.",
    "Warranty claims need two photos: one of the whole item and a close-up of the fault.",
    "Rental deposits are an authorisation on your card, released within 3 business days after the check.",
    "Trail Club points become available 30 days after delivery and 500 points make a EUR 10 voucher.",
    "Our partner stores in Berlin, Munich, Amsterdam, Manchester, London, Denver and Seattle take returns.",
    "Express, next-day and overnight surcharges are refunded automatically if the parcel arrives late.",
    "Let me know if there is anything else I can help you with.",
)


# -- dataset -----------------------------------------------------------------------------------------


def load_conversations(path: Path = CONVERSATIONS_PATH, limit: int | None = None) -> list[dict[str, Any]]:
    """The dataset, in file order; ``limit`` keeps the first N."""
    conversations = [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    return conversations[:limit] if limit else conversations


def answer_text(customer_text: str, tokens: int) -> str:
    """A deterministic answer of exactly ``tokens`` tokens by the fake's count (4 characters a token)."""
    rng = random.Random(hashlib.sha256(customer_text.encode()).digest())
    parts: list[str] = []
    length = 0
    while length < tokens * 4:
        sentence = rng.choice(ANSWER_SENTENCES)
        parts.append(sentence)
        length += len(sentence) + 1
    return " ".join(parts)[: tokens * 4].rstrip() or "OK."


@dataclass
class Script:
    """What the fake says, keyed by the customer's words (the dataset gives equal words equal verdicts)."""

    turns: dict[str, dict[str, Any]]
    misses: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, conversations: list[dict[str, Any]]) -> Script:
        return cls({turn["text"]: turn for conv in conversations for turn in conv["turns"]})

    def reply(self, body: dict[str, Any]) -> Reply | None:
        tools = {t.get("name") for t in body.get("tools") or []}
        if "record_triage" in tools:
            content = body["messages"][-1]["content"]
            text = content if isinstance(content, str) else content[-1]["text"]
            match = NEW_MESSAGE.search(text)
            turn = self.turns.get(match.group(1)) if match else None
            if turn is None:
                self.misses.append(f"triage: {text[-80:]!r}")
                return None
            return Reply(tool_use={"name": "record_triage", "input": dict(turn["triage"])})
        system = body.get("system")
        system_text = system if isinstance(system, str) else " ".join(b.get("text", "") for b in system or [])
        if system_text.startswith(SUMMARY_MARK):
            return Reply(text=SUMMARY_TEXT)
        content = body["messages"][-1]["content"]
        text = content if isinstance(content, str) else content[-1]["text"]
        turn = self.turns.get(text)
        if turn is None:
            self.misses.append(f"answer: {text[-80:]!r}")
            return None
        return Reply(text=answer_text(text, int(turn["answer_tokens"])))


def cached_prefix_tokens(policy: Policy) -> int:
    """Tokens of the answer prompt's shared prefix (tools + instructions + policy documents + examples),
    as billed: a first turn's prompt up to its last breakpoint (the examples')."""
    request = build_answer_request(
        policy=policy, curated_examples=[], summary="", history=[], retrieved_examples=[], message="?",
        model=ANSWER_MODEL, max_tokens=ANSWER_MAX_TOKENS,
    )  # fmt: skip
    return fake_cached_prefix_tokens(request)


# -- statistics --------------------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Linear-interpolated percentile (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values) if values else 0.0,
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "total": sum(values),
        "n": len(values),
    }


@dataclass
class Tally:
    """Calls, tokens and cost of one system on one policy."""

    per_conversation: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    calls: Counter[str] = field(default_factory=Counter)
    tokens: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    cost_by_purpose: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    outcomes: Counter[str] = field(default_factory=Counter)

    def add(
        self, conversation: str, purpose: str, counts: TokenCounts, usd: Decimal, outcome: str = "ok"
    ) -> None:
        self.per_conversation[conversation] += usd
        self.calls[purpose] += 1
        self.cost_by_purpose[purpose] += usd
        self.outcomes[outcome] += 1
        t = self.tokens[purpose]
        t["input"] += counts.input
        t["cache_write_5m"] += counts.cache_write_5m
        t["cache_write_1h"] += counts.cache_write_1h
        t["cache_read"] += counts.cache_read
        t["output"] += counts.output

    def answer_cache_hit_ratio(self) -> float:
        t = self.tokens.get("answer", Counter())
        total = t["input"] + t["cache_write_5m"] + t["cache_write_1h"] + t["cache_read"]
        return t["cache_read"] / total if total else 0.0

    def report(self, ids: list[str]) -> dict[str, Any]:
        costs = [float(self.per_conversation.get(i, Decimal(0))) for i in ids]
        return {
            "cost_per_conversation_usd": distribution(costs),
            "calls_by_purpose": dict(self.calls),
            "cost_by_purpose_usd": {k: float(v) for k, v in self.cost_by_purpose.items()},
            "tokens_by_purpose": {k: dict(v) for k, v in self.tokens.items()},
            "answer_cache_hit_ratio": self.answer_cache_hit_ratio(),
            "outcomes": dict(self.outcomes),
            "per_conversation_usd": dict(zip(ids, costs, strict=True)),
        }


# -- Switchboard under test --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """``switchboard serve`` in its own process group (its embedded Redis goes down with it)."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        # Only the configuration given here: nothing inherited from the caller's SWITCHBOARD_* or API vars.
        inherited = os.environ.items()
        self.env = {
            k: v for k, v in inherited if k not in PUBLIC_ENV_NAMES and not k.startswith("SWITCHBOARD_")
        }
        self.env.update({"SWITCHBOARD_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **env})
        self.log_path = data_dir / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "support.cli", "serve", "--port", str(self.port)], env=self.env,
                stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"switchboard serve exited early:\n{self.log()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"switchboard serve not ready in {timeout_s}s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM (drains turns, stops the embedded Redis), then SIGKILL whatever is left in the group."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


async def drive_conversation(
    http: httpx.AsyncClient, server: Server, conv: dict[str, Any]
) -> tuple[str, list[str]]:
    """Replay one conversation over the widget WebSocket; its conversation id and each turn's route."""
    resp = await http.post(
        f"{server.url}/api/v1/widget/sessions",
        json={"widget_key": WIDGET_KEY, "visitor": {"name": f"bench {conv['id']}"}},
        headers={"Origin": ORIGIN},
    )
    if resp.status_code != 201:
        raise RuntimeError(f"session refused: {resp.status_code} {resp.text}")
    session = resp.json()
    routes: list[str] = []
    url = f"ws://127.0.0.1:{server.port}/api/v1/widget/ws?token={session['token']}"
    tokens, last = float(CUSTOMER_BURST - 1), time.monotonic()  # one spare token: a margin
    async with websockets.connect(url, max_size=None) as ws:
        for index, turn in enumerate(conv["turns"]):
            if index:
                await asyncio.sleep(THINK_TIME_S)
            now = time.monotonic()
            tokens = min(CUSTOMER_BURST - 1, tokens + (now - last) * CUSTOMER_RATE_PER_S)
            last = now
            if tokens < 1:
                await asyncio.sleep((1 - tokens) / CUSTOMER_RATE_PER_S)
                tokens, last = 1.0, time.monotonic()
            tokens -= 1
            client_id = f"{conv['id']}-{index}"
            await ws.send(json.dumps({"type": "message", "client_id": client_id, "text": turn["text"]}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S))
                if frame["type"] == "message" and frame.get("role") == "assistant":
                    routes.append("answer")
                    break
                if frame["type"] == "status" and frame.get("state") == "queued":
                    routes.append("handoff")
                    break
                if frame["type"] == "error":
                    raise RuntimeError(f"{conv['id']} turn {index}: error frame {frame}")
            if routes[-1] == "handoff":
                break
    return str(session["conversation_id"]), routes


def read_ledger(db_path: Path) -> list[dict[str, Any]]:
    """Every ``model_usage`` row of the server's SQLite database."""
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(
            "SELECT conversation_id, purpose, model, input_tokens, cache_write_5m_tokens,"
            " cache_write_1h_tokens,"
            " cache_read_tokens, output_tokens, cost_usd, outcome FROM model_usage ORDER BY id"
        ).fetchall()
    return [dict(r) for r in rows]


async def run_switchboard(
    fake: FakeAnthropic,
    policy_path: Path,
    conversations: list[dict[str, Any]],
    work_dir: Path,
    concurrency: int,
    progress: Callable[[str], None],
    system_cache_ttl: str = "5m",
) -> tuple[Tally, dict[str, Any]]:
    db_path = work_dir / "switchboard.sqlite3"
    env = {
        "ANTHROPIC_API_KEY": "bench",
        "ANTHROPIC_BASE_URL": fake.url,
        "SWITCHBOARD_POLICY_PATH": str(policy_path),
        "SWITCHBOARD_DATABASE_URL": f"sqlite+aiosqlite:///{db_path}",
        "SWITCHBOARD_WIDGET_KEYS": json.dumps({WIDGET_KEY: [ORIGIN]}),
        "SWITCHBOARD_TRIAGE_MODEL": TRIAGE_MODEL,
        "SWITCHBOARD_ANSWER_MODEL": ANSWER_MODEL,
        # The account limits are the operator's; the benchmark must never wait on them.
        "SWITCHBOARD_LLM_REQUESTS_PER_MINUTE": "1000000",
        "SWITCHBOARD_LLM_INPUT_TOKENS_PER_MINUTE": "1000000000",
        "SWITCHBOARD_LLM_OUTPUT_TOKENS_PER_MINUTE": "1000000000",
        **roomy_limits(),  # every simulated customer shares this machine's address
        "SWITCHBOARD_HANDOFF_MAX_BOT_TURNS": str(MAX_BOT_TURNS),
        "SWITCHBOARD_LOG_LEVEL": "WARNING",
        "SWITCHBOARD_LLM_SYSTEM_CACHE_TTL": system_cache_ttl,
    }
    server = Server(work_dir / "data", env)
    server.start()
    ids: dict[str, str] = {}
    mismatches: list[str] = []
    done = 0
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for conv in conversations:
        queue.put_nowait(conv)

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal done
        while True:
            try:
                conv = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            cid, routes = await drive_conversation(http, server, conv)
            ids[cid] = conv["id"]
            expected = ["answer" if t["expected"] == "answer" else "handoff" for t in conv["turns"]]
            if routes != expected:
                mismatches.append(f"{conv['id']}: expected {expected}, got {routes}")
            done += 1
            if done % 10 == 0 or done == len(conversations):
                progress(f"  switchboard: {done}/{len(conversations)} conversations")

    try:
        async with httpx.AsyncClient(timeout=15) as http:
            await asyncio.gather(*(worker(http) for _ in range(max(1, concurrency))))
        await asyncio.sleep(0.5)  # a summary started after the last reply lands in the ledger too
    finally:
        server.stop()
    tally = Tally()
    stray = 0
    for row in read_ledger(db_path):
        conv_id = ids.get(row["conversation_id"] or "")
        if conv_id is None:
            stray += 1
            continue
        counts = TokenCounts(
            input=row["input_tokens"], cache_write_5m=row["cache_write_5m_tokens"],
            cache_write_1h=row["cache_write_1h_tokens"], cache_read=row["cache_read_tokens"],
            output=row["output_tokens"],
        )  # fmt: skip
        ledger_usd = Decimal(str(row["cost_usd"]))
        if abs(ledger_usd - cost(row["model"], counts)) > Decimal("0.000001"):
            mismatches.append(f"ledger cost {ledger_usd} != priced {cost(row['model'], counts)} ({row})")
        tally.add(conv_id, row["purpose"], counts, ledger_usd, row["outcome"])
    checks = {"route_mismatches": mismatches, "ledger_rows_without_conversation": stray}
    return tally, checks


# -- the naive baseline ------------------------------------------------------------------------------


async def run_naive(
    fake: FakeAnthropic,
    policy_text: str,
    conversations: list[dict[str, Any]],
    concurrency: int,
    progress: Callable[[str], None],
) -> Tally:
    """Every turn to the answer model: policy as a plain system prompt, full history, no cache, no triage."""
    tally = Tally()
    system = f"{INSTRUCTIONS}\n\n<policy>\n{policy_text.strip()}\n</policy>"
    client = anthropic.AsyncAnthropic(base_url=fake.url, api_key="bench", max_retries=2)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for conv in conversations:
        queue.put_nowait(conv)
    done = 0

    async def worker() -> None:
        nonlocal done
        while True:
            try:
                conv = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            messages: list[dict[str, Any]] = []
            for turn in conv["turns"]:
                messages.append({"role": "user", "content": turn["text"]})
                reply = await client.messages.create(
                    model=ANSWER_MODEL, max_tokens=ANSWER_MAX_TOKENS, system=system,
                    messages=messages,  # type: ignore[arg-type]
                )  # fmt: skip
                text = "".join(b.text for b in reply.content if b.type == "text")
                messages.append({"role": "assistant", "content": text})
                tally.add(
                    conv["id"], "answer", TokenCounts.from_usage(reply.usage), cost(ANSWER_MODEL, reply.usage)
                )
            done += 1
            if done % 20 == 0 or done == len(conversations):
                progress(f"  naive: {done}/{len(conversations)} conversations")

    try:
        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    finally:
        await client.close()
    return tally


# -- one policy, all policies ------------------------------------------------------------------------


async def run_policy(
    name: str,
    policy_path: Path,
    conversations: list[dict[str, Any]],
    concurrency: int,
    progress: Callable[[str], None],
    system_cache_ttl: str = "5m",
) -> dict[str, Any]:
    policy = load_policy(policy_path)
    ids = [c["id"] for c in conversations]
    script = Script.of(conversations)
    fake = FakeAnthropic().start()  # a fresh fake per policy: an empty prompt cache, zero latency
    fake.add_rule(script.reply)
    tmp = tempfile.TemporaryDirectory(prefix="switchboard-cost-")
    started = time.perf_counter()
    try:
        progress(f"policy {name}: {estimate_tokens(policy.text)} tokens (local estimate), "
                 f"{len(conversations)} conversations")  # fmt: skip
        switchboard, checks = await run_switchboard(
            fake, policy_path, conversations, Path(tmp.name), concurrency, progress, system_cache_ttl
        )
        sb_time = time.perf_counter() - started
        naive = await run_naive(fake, policy.text, conversations, concurrency, progress)
    finally:
        fake.stop()
        tmp.cleanup()
    sb, nv = switchboard.report(ids), naive.report(ids)
    sb_mean = sb["cost_per_conversation_usd"]["mean"]
    nv_mean = nv["cost_per_conversation_usd"]["mean"]
    # Every conversation here reads the shared prefix that the first one wrote. Where the prefix's TTL
    # lapses between conversations (5m: a quiet site; 1h: a very quiet one), each writes it instead.
    prefix = cached_prefix_tokens(policy)
    prices = prices_for(ANSWER_MODEL)
    write_price = prices.cache_write_1h if system_cache_ttl == "1h" else prices.cache_write_5m
    cold_extra = float(prefix * (write_price - prices.cache_read) / Decimal(1_000_000))
    sb["cold_cache_cost_per_conversation_usd"] = {
        "mean": sb_mean + cold_extra, "prefix_tokens": prefix, "extra_per_conversation": cold_extra,
    }  # fmt: skip
    checks["fake_script_misses"] = script.misses[:20]
    checks["fake_internal_errors"] = [repr(e) for e in fake.internal_errors[:5]]
    return {
        "policy": name,
        "policy_path": _display_path(policy_path),
        "policy_tokens_estimate": estimate_tokens(policy.text),
        "policy_version": policy.version,
        "conversations": len(conversations),
        "customer_turns": sum(len(c["turns"]) for c in conversations),
        "switchboard": sb,
        "naive": nv,
        "reduction_pct": {
            stat: 100 * (1 - sb["cost_per_conversation_usd"][stat] / nv["cost_per_conversation_usd"][stat])
            if nv["cost_per_conversation_usd"][stat]
            else 0.0
            for stat in ("mean", "p50", "p95")
        },
        "reduction_mean_pct": 100 * (1 - sb_mean / nv_mean) if nv_mean else 0.0,
        "reduction_cold_cache_mean_pct": 100 * (1 - (sb_mean + cold_extra) / nv_mean) if nv_mean else 0.0,
        "checks": checks,
        "run_time_s": {"switchboard": sb_time, "total": time.perf_counter() - started},
    }


def _display_path(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (results do not name a home directory)."""
    root = Path(__file__).parent.parent
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _policies(smoke: bool) -> list[tuple[str, Path]]:
    policies = [("sample", DEFAULT_POLICY_PATH)]
    if not smoke:
        policies.append(("long", LONG_POLICY_PATH))
    return policies


def format_table(results: dict[str, Any]) -> str:
    lines = []
    for r in results["policies"]:
        sb, nv = r["switchboard"], r["naive"]
        lines.append(
            f"\npolicy {r['policy']} (~{r['policy_tokens_estimate']:,} tokens), "
            f"{r['conversations']} conversations, "
            f"{r['customer_turns']} customer turns"
        )
        lines.append(f"{'cost per conversation (USD)':34}{'mean':>10}{'p50':>10}{'p95':>10}")
        for label, rep in (("naive baseline", nv), ("switchboard", sb)):
            d = rep["cost_per_conversation_usd"]
            lines.append(f"{label:34}{d['mean']:>10.4f}{d['p50']:>10.4f}{d['p95']:>10.4f}")
        red = r["reduction_pct"]
        lines.append(f"{'reduction (%)':34}{red['mean']:>10.1f}{red['p50']:>10.1f}{red['p95']:>10.1f}")
        cold = sb["cold_cache_cost_per_conversation_usd"]
        cold_red = 100 * (1 - cold["mean"] / nv["cost_per_conversation_usd"]["mean"])
        lines.append(
            f"{'switchboard, prefix cache cold':34}{cold['mean']:>10.4f}   (reduction {cold_red:.1f}%)"
        )
        lines.append(
            f"answer cache hit ratio: switchboard {sb['answer_cache_hit_ratio']:.3f}, "
            f"naive {nv['answer_cache_hit_ratio']:.3f}"
        )
        calls = ", ".join(f"{k} {v}" for k, v in sorted(sb["calls_by_purpose"].items()))
        lines.append(
            f"switchboard calls: {calls}; naive calls: answer {nv['calls_by_purpose'].get('answer', 0)}"
        )
        for purpose, t in sorted(sb["tokens_by_purpose"].items()):
            lines.append(
                f"  {purpose:8} tokens: input {t['input']:,}, "
                f"cache write {t['cache_write_5m'] + t['cache_write_1h']:,}, "
                f"cache read {t['cache_read']:,}, output {t['output']:,}"
            )
        t = nv["tokens_by_purpose"].get("answer", {})
        lines.append(f"  naive    tokens: input {t.get('input', 0):,}, output {t.get('output', 0):,}")
        problems = [k for k, v in r["checks"].items() if v]
        if problems:
            lines.append(f"  CHECKS FAILED: {', '.join(problems)} (see the JSON)")
        if r["policy"] == "long":
            ok = red["mean"] >= TARGET_REDUCTION_PCT
            lines.append(
                f"target: >= {TARGET_REDUCTION_PCT:.0f}% below naive with the long policy -> "
                f"{red['mean']:.1f}% ({'met' if ok else 'NOT met'})"
            )
    return "\n".join(lines)


def write_chart(results: dict[str, Any], path: Path) -> str | None:
    """A bar chart of mean cost per conversation, naive vs Switchboard, per policy (None: no matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    policies = results["policies"]
    labels = [f"{p['policy']} policy\n(~{p['policy_tokens_estimate'] / 1000:.0f}k tokens)" for p in policies]
    naive = [p["naive"]["cost_per_conversation_usd"]["mean"] for p in policies]
    sb = [p["switchboard"]["cost_per_conversation_usd"]["mean"] for p in policies]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    x = range(len(policies))
    width = 0.38
    bars_n = ax.bar([i - width / 2 for i in x], naive, width, label="naive baseline", color="#b0b7c3")
    bars_s = ax.bar([i + width / 2 for i in x], sb, width, label="Switchboard", color="#2f6fde")
    for bars in (bars_n, bars_s):
        ax.bar_label(bars, labels=[f"${b.get_height():.3f}" for b in bars], padding=2, fontsize=9)
    for i, p in enumerate(policies):
        ax.text(i + width / 2, sb[i] / 2, f"-{p['reduction_pct']['mean']:.0f}%", ha="center", color="white",
                fontsize=9, fontweight="bold")  # fmt: skip
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("mean cost per conversation (USD)")
    ax.set_title(f"Cost per conversation, {policies[0]['conversations']} replayed conversations")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def run_cost(
    smoke: bool, out_dir: Path, progress: Callable[[str], None], *, conversations: int | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    system_cache_ttl: str = "5m",
) -> dict[str, Any]:  # fmt: skip
    """Run the cost benchmark; write ``cost.json`` (and ``cost.png``) to ``out_dir``; return the results."""
    limit = conversations or (SMOKE_CONVERSATIONS if smoke else None)
    dataset = load_conversations(limit=limit)
    started = time.perf_counter()

    async def main() -> list[dict[str, Any]]:
        return [
            await run_policy(name, path, dataset, concurrency, progress, system_cache_ttl)
            for name, path in _policies(smoke)
        ]

    policies = asyncio.run(main())
    results: dict[str, Any] = {
        "benchmark": "cost",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "smoke": smoke,
        "config": {
            "triage_model": TRIAGE_MODEL,
            "answer_model": ANSWER_MODEL,
            "concurrency": concurrency,
            "think_time_s": THINK_TIME_S,
            "max_bot_turns": MAX_BOT_TURNS,
            "system_cache_ttl": system_cache_ttl,
            "fake_latency": "zero",
            "dataset": str(CONVERSATIONS_PATH.name),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "policies": policies,
        "run_time_s": time.perf_counter() - started,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cost.json").write_text(json.dumps(results, indent=2) + "\n")
    table = format_table(results)
    for line in table.splitlines():
        progress(line)
    chart = write_chart(results, out_dir / "cost.png")
    progress(f"chart: {chart}" if chart else "chart skipped: matplotlib is not installed")
    progress(f"results written to {out_dir / 'cost.json'} ({results['run_time_s']:.1f} s)")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help=f"{SMOKE_CONVERSATIONS} conversations, sample policy only"
    )
    parser.add_argument(
        "--conversations", type=int, default=None, help="replay only the first N conversations"
    )
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="conversations at once")
    parser.add_argument(
        "--system-cache-ttl", choices=("5m", "1h"), default="5m",
        help="SWITCHBOARD_LLM_SYSTEM_CACHE_TTL for the server (the shared prefix's cache lifetime)",
    )  # fmt: skip
    parser.add_argument(
        "--out-dir", type=Path, default=None,
        help=f"default: {RESULTS_DIR} (committed results); with --smoke or --conversations a temp directory",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.out_dir is None:
        partial = args.smoke or args.conversations is not None
        args.out_dir = Path(tempfile.gettempdir()) / "switchboard-cost" if partial else RESULTS_DIR

    def on_sigterm(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks: the server is stopped

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        run_cost(
            args.smoke,
            args.out_dir,
            lambda line: print(line, flush=True),
            conversations=args.conversations,
            concurrency=args.concurrency,
            system_cache_ttl=args.system_cache_ttl,
        )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
