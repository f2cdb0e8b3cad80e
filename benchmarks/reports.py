"""Reports at scale: every report query timed over a million conversations in PostgreSQL.

Seeds ``conversation_fact`` with N conversations spread evenly over the last 365 days, in the order they
started (as the fact writer adds them) (a fixed mix of channels,
intents, agents, policy versions and resolution types; ratings on about a quarter, predictions on a
third of the rest), their ``rating`` rows, about three ``model_usage`` ledger rows each and ``example``
rows for a fifth of the conversations agents answered, all with ``INSERT ... SELECT generate_series`` (a
fixed ``setseed``), then ``ANALYZE``. Then it times each report as the API runs it (the report services,
over an async engine): the overview for the full range and the last 30 days, for every cut; handoff
reasons, usage and edits for each of their cuts; the drill-down's first page (plain and filtered), a page
deep into the range (by keyset cursor) and a CSV-sized chunk; the operations report for 30 days. Each
query runs once to warm up, then ``--repeats`` times; p50 and p95 are printed per query, then EXPLAIN
(ANALYZE, BUFFERS) of the slowest query's slowest statement.

    python -m benchmarks.reports [DATABASE_URL] [--conversations N] [--repeats R] [--reuse]

The URL defaults to ``SWITCHBOARD_DATABASE_URL`` and must be PostgreSQL; since the seeding empties the
report tables, a database whose name does not contain ``bench`` is refused (``--force`` overrides).
Create one with ``createdb -h 127.0.0.1 -U postgres switchboard_bench``. ``--reuse`` keeps a database
already seeded with the same N. Target: every query under 500 ms at p95 (printed, never asserted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks.harness import percentile
from support.db.engine import make_engine, session_factory
from support.db.migrate import upgrade_to_head
from support.reports import rollup
from support.reports.conversations import (
    GROUP_BYS,
    REPORT_WORK_MEM,
    DrillDown,
    conversations_page,
    encode_cursor,
    handoff_reasons_report,
    overview_report,
)
from support.reports.operations import operations_report
from support.reports.usage import EDIT_GROUP_BYS, USAGE_GROUP_BYS, edits_report, usage_report

DEFAULT_CONVERSATIONS = 20_000  # a quick smoke; the benchmark proper is --conversations 1000000
TARGET_P95_MS = 500.0
ROLLUP_TABLES = (
    "rollup_dirty", "fact_rollup", "fact_reason_rollup", "fact_hist_rollup", "fact_hist_month",
    "fact_hist_week", "usage_rollup", "activity_rollup",
)  # fmt: skip
SEED = 0.18

SEED_FACTS = """
INSERT INTO conversation_fact (
    conversation_id, channel, started_at, intent, policy_version, agent_id, resolution_type,
    customer_messages, bot_messages, agent_messages, last_customer_at, first_bot_reply_at, last_bot_reply_at,
    bot_first_response_s, handoff_count, handed_off_at, handoff_reason, queue_wait_s, human_first_response_s,
    resolved_at, resolved_by, resolution_s, confirmed, reopened, rating, rated_at, predicted_score,
    predicted_reason, predicted_at, cost_usd, model_calls, updated_at)
SELECT
    'c' || lpad(i::text, 8, '0'),
    CASE WHEN r_channel < 0.15 THEN 'ticket' ELSE 'chat' END,
    started,
    (ARRAY['returns_refunds', 'warranty_repairs', 'account_privacy', 'payments_billing', 'product_question',
           'other', NULL])[1 + floor(r_intent * 7)::int],
    'v' || (1 + floor(r_policy * 5)::int),
    CASE WHEN kind IN ('handed_off', 'human') THEN 'ag' || (1 + i % 20) END,
    kind,
    1 + floor(r_len * 4)::int,
    CASE WHEN kind IN ('bot', 'handed_off') THEN 1 + floor(r_len * 3)::int ELSE 0 END,
    CASE WHEN kind IN ('handed_off', 'human') THEN 1 + floor(r_len * 3)::int ELSE 0 END,
    started + make_interval(secs => 30 + r_len * 600),
    CASE WHEN kind IN ('bot', 'handed_off') THEN started + make_interval(secs => 0.5 + r_fast * 6) END,
    CASE WHEN kind IN ('bot', 'handed_off')
         THEN started + make_interval(secs => 30 + r_last * 900) END,
    CASE WHEN kind IN ('bot', 'handed_off') THEN 0.5 + r_fast * 6 END,
    CASE WHEN kind = 'bot' THEN 0 WHEN r_len < 0.1 THEN 2 ELSE 1 END,
    CASE WHEN kind <> 'bot' THEN started + make_interval(secs => 60 + r_len * 300) END,
    CASE WHEN kind <> 'bot' THEN (ARRAY['wants_human', 'customer_request', 'urgent', 'not_helped',
        'negative_sentiment', 'low_confidence', 'draft_declined', 'draft_failed'])
        [1 + floor(r_reason * 8)::int]
    END,
    CASE WHEN kind IN ('handed_off', 'human') THEN 5 + r_wait * 900 END,
    CASE WHEN kind IN ('handed_off', 'human') THEN 20 + r_wait * 1200 END,
    CASE WHEN kind IN ('handed_off', 'human') AND r_resolved < 0.9
              OR kind = 'bot' AND r_resolved < 0.5
         THEN started + make_interval(secs => 120 + r_resolved * 7200) END,
    CASE WHEN kind IN ('handed_off', 'human') AND r_resolved < 0.9 THEN 'agent'
         WHEN kind = 'bot' AND r_resolved < 0.5 THEN 'customer' END,
    CASE WHEN kind IN ('handed_off', 'human') AND r_resolved < 0.9 OR kind = 'bot' AND r_resolved < 0.5
         THEN 120 + r_resolved * 7200 END,
    kind = 'bot' AND r_rating < 0.25 AND r_score >= 0.6,
    r_reopen < 0.03,
    CASE WHEN r_rating < 0.25 THEN 1 + floor(r_score * 5)::int END,
    CASE WHEN r_rating < 0.25 THEN started + interval '2 hours' END,
    CASE WHEN r_rating >= 0.25 AND r_predict < 0.33 THEN 1 + floor(r_predict * 15)::int END,
    CASE WHEN r_rating >= 0.25 AND r_predict < 0.33 THEN 'Predicted from the transcript' END,
    CASE WHEN r_rating >= 0.25 AND r_predict < 0.33 THEN started + interval '1 day' END,
    round((0.002 + r_cost * 0.05)::numeric, 6),
    3,
    started + interval '1 day'
FROM (
    SELECT i, started, r_channel, r_intent, r_policy, r_len, r_fast, r_last, r_reason, r_wait, r_resolved,
           r_rating, r_score, r_reopen, r_predict, r_cost,
           CASE WHEN r_kind < 0.60 THEN 'bot' WHEN r_kind < 0.85 THEN 'handed_off'
                WHEN r_kind < 0.90 THEN 'unanswered' ELSE 'human' END AS kind
    FROM (
        SELECT i, CAST(:now AS timestamp)
                  - make_interval(secs => (CAST(:n AS integer) - i) * 365.0 * 86400 / CAST(:n AS integer)
                                          + random() * 600) AS started,
               random() AS r_channel, random() AS r_intent, random() AS r_policy, random() AS r_len,
               random() AS r_fast, random() AS r_last, random() AS r_reason, random() AS r_wait,
               random() AS r_resolved, random() AS r_rating, random() AS r_score, random() AS r_reopen,
               random() AS r_predict, random() AS r_cost, random() AS r_kind
        FROM generate_series(1, CAST(:n AS integer)) AS i
    ) AS draws
) AS seeded
"""

SEED_RATINGS = """
INSERT INTO rating (
    id, conversation_id, resolved_seq, score, comment, resolution, intent, agent_id, created_at)
SELECT md5(conversation_id), conversation_id, 3, rating, NULL,
       CASE WHEN resolution_type = 'bot' THEN 'bot' ELSE 'agent' END, intent, agent_id, rated_at
FROM conversation_fact WHERE rating IS NOT NULL
"""

# About three ledger rows per conversation: a triage and an answer call on each, and a summary or a
# second answer on most (cache writes on the first answer, cache reads after).
SEED_LEDGER = """
INSERT INTO model_usage (
    purpose, model, conversation_id, ticket_id, policy_version, input_tokens, cache_write_5m_tokens,
    cache_write_1h_tokens, cache_read_tokens, output_tokens, cost_usd, latency_ms, ttft_ms, request_id,
    outcome, attempts, batch, redactions, created_at)
SELECT
    CASE k WHEN 0 THEN 'triage' WHEN 1 THEN 'answer' ELSE 'summary' END,
    CASE k WHEN 1 THEN 'claude-sonnet-4-6' ELSE 'claude-haiku-4-5' END,
    conversation_id, NULL, policy_version,
    300 + k * 50, CASE WHEN k = 1 AND random() < 0.1 THEN 9000 ELSE 0 END, 0,
    CASE WHEN k = 1 THEN 9000 ELSE 0 END, 40 + k * 60,
    round((cost_usd / 3)::numeric, 8), 400 + k * 300, CASE WHEN k = 1 THEN 600 + random() * 900 END, NULL,
    CASE WHEN random() < 0.01 THEN 'error:overloaded' ELSE 'ok' END, 1, false, NULL,
    started_at + make_interval(secs => 1 + k * 30)
FROM conversation_fact CROSS JOIN generate_series(0, 2) AS k
WHERE k < 2 OR random() < 0.95
"""

SEED_EXAMPLES = """
INSERT INTO example (
    id, conversation_id, seq, customer_message, context, bot_draft, agent_text, edit_distance, edit_ratio,
    intent, agent_id, policy_version, status, curated, review_flags, redaction_version, created_at,
    updated_at)
SELECT md5('e' || conversation_id), conversation_id, 3, 'Where is my order?', '',
       CASE WHEN random() < 0.8 THEN 'Your order ships today.' END, 'Your order shipped today.',
       5, CASE WHEN random() < 0.6 THEN random() ELSE 0 END, intent, agent_id, policy_version, 'approved',
       false, '', 1, started_at + interval '10 minutes', started_at + interval '10 minutes'
FROM conversation_fact WHERE agent_id IS NOT NULL AND random() < 0.2
"""


async def seed(engine: AsyncEngine, n: int, now: datetime, say: Callable[[str], None]) -> None:
    """Empty the report tables and fill them; ``ANALYZE`` after."""
    naive_now = now.replace(tzinfo=None)
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE conversation_fact, rating, model_usage, example, agent CASCADE"))
        # TRUNCATE fires no row or statement triggers with the rows: empty the rollups with their sources
        await conn.execute(text(f"TRUNCATE {', '.join(ROLLUP_TABLES)}"))
        await conn.execute(text("SELECT setseed(:s)"), {"s": SEED})
        agents = [
            {"id": f"ag{i}", "email": f"agent{i}@bench.test", "name": f"Agent {i}"} for i in range(1, 21)
        ]
        await conn.execute(
            text(
                "INSERT INTO agent (id, email, name, role, password_hash, capacity, active, "
                "token_generation, created_at) VALUES (:id, :email, :name, 'agent', 'x', 3, true, 0, now())"
            ),
            agents,
        )
        for label, sql, params in (
            ("conversation facts", SEED_FACTS, {"n": n, "now": naive_now}),
            ("ratings", SEED_RATINGS, {}),
            ("ledger rows", SEED_LEDGER, {}),
            ("examples", SEED_EXAMPLES, {}),
        ):
            started = time.perf_counter()
            result = await conn.execute(text(sql), params)
            say(f"  seeded {result.rowcount:>9,} {label} in {time.perf_counter() - started:.1f} s")
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        started = time.perf_counter()
        await conn.execute(text("VACUUM ANALYZE conversation_fact, rating, model_usage, example, agent"))
        say(f"  VACUUM ANALYZE in {time.perf_counter() - started:.1f} s")


Query = Callable[[], Awaitable[Any]]
LIVE = " (live)"  # the suffix of a query read without the rollup


def queries(engine: AsyncEngine, now: datetime, deep_cursor: str, live: bool) -> list[tuple[str, Query]]:
    """Every report query, named; with ``live``, each rollup-backed one is followed by its live variant."""
    sessions = session_factory(engine)
    month = now - timedelta(days=30)
    ranges: tuple[tuple[str, datetime | None], ...] = (("all", None), ("30d", month))
    variants = (False, True) if live else (False,)

    def named(name: str, fn: Callable[..., Awaitable[Any]], **kw: Any) -> list[tuple[str, Query]]:
        return [(name + (LIVE if v else ""), partial(fn, sessions, live=v, **kw)) for v in variants]

    out: list[tuple[str, Query]] = [
        q
        for label, start in ranges
        for cut in GROUP_BYS
        for q in named(
            f"overview {label} by {cut}", overview_report, start=start, end=None, group_by=cut, now=now
        )
    ]
    out += [
        q
        for cut in ("none", "intent", "agent", "day")
        for q in named(
            f"handoff-reasons all by {cut}", handoff_reasons_report, start=None, end=None, group_by=cut
        )
    ]
    out += [
        q
        for label, start in ranges
        for cut in USAGE_GROUP_BYS
        for q in named(f"usage {label} by {cut}", usage_report, start=start, end=None, group_by=cut)
    ]
    out += [
        (f"edits {label} by {cut}", partial(edits_report, sessions, start=start, end=None, group_by=cut))
        for label, start in ranges
        for cut in EDIT_GROUP_BYS
    ]  # fmt: skip
    everything = DrillDown()
    filtered = DrillDown(filters=(("intent", "returns_refunds"), ("channel", "chat")), only=("resolved",))
    rare = DrillDown(start=month, filters=(("agent", "ag7"),), only=("dissatisfied",))
    out += [
        ("conversations first page", partial(conversations_page, sessions, everything, now=now, limit=50)),
        ("conversations filtered page", partial(conversations_page, sessions, filtered, now=now, limit=50)),
        ("conversations rare filter 30d", partial(conversations_page, sessions, rare, now=now, limit=50)),
        ("conversations deep cursor page",
         partial(conversations_page, sessions, everything, now=now, limit=50, cursor=deep_cursor)),
        ("conversations 200-row page", partial(conversations_page, sessions, everything, now=now, limit=200)),
    ]  # fmt: skip
    out += named("operations 30d", operations_report, start=month, end=None)
    return out


async def deep_cursor(engine: AsyncEngine) -> str:
    """A cursor in the middle of the newest-first order (half the conversations lie after it)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT started_at, conversation_id FROM conversation_fact "
                    "ORDER BY started_at DESC, conversation_id DESC "
                    "OFFSET (SELECT count(*) / 2 FROM conversation_fact) LIMIT 1"
                )
            )
        ).one()
    return encode_cursor(row.started_at.replace(tzinfo=UTC), row.conversation_id)


async def time_queries(
    engine: AsyncEngine, named: list[tuple[str, Query]], repeats: int, say: Callable[[str], None]
) -> list[tuple[str, float, float, list[tuple[float, str, Any]]]]:
    """(name, p50 ms, p95 ms, [(ms, SQL, parameters) of each statement of its slowest run]) per query."""
    statements: list[tuple[float, str, Any]] = []
    started_at: list[float] = []

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        started_at.append(time.perf_counter())

    def after(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        statements.append(((time.perf_counter() - started_at.pop()) * 1000, statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)
    results = []
    try:
        for index, (name, run) in enumerate(named, 1):
            await run()  # warm-up
            samples: list[float] = []
            slowest: list[tuple[float, str, Any]] = []
            for _ in range(repeats):
                statements.clear()
                t0 = time.perf_counter()
                await run()
                elapsed = (time.perf_counter() - t0) * 1000
                if not samples or elapsed > max(samples):
                    slowest = list(statements)
                samples.append(elapsed)
            p50, p95 = percentile(samples, 50), percentile(samples, 95)
            mark = "" if p95 < TARGET_P95_MS else "  OVER TARGET"
            load = os.getloadavg()[0]
            say(
                f"[{index:>2}/{len(named)}] {name:<40} p50 {p50:8.1f} ms   p95 {p95:8.1f} ms"
                f"   load {load:4.1f}{mark}"
            )
            results.append((name, p50, p95, slowest))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)
        event.remove(engine.sync_engine, "after_cursor_execute", after)
    return results


async def explain(engine: AsyncEngine, statement: str, parameters: Any) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of one statement as it was sent, with the transaction settings the report
    services use (``support.reports.conversations.tune``; percentile queries: no plain index scans)."""
    async with engine.begin() as conn:
        await conn.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
        await conn.execute(text("SET LOCAL jit = off"))
        if "percentile_cont" in statement:
            await conn.execute(text("SET LOCAL enable_indexscan = off"))
        rows = (await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)).all()
    return "\n".join(str(r[0]) for r in rows)


async def main(url: str, n: int, repeats: int, reuse: bool, live: bool) -> int:
    def say(line: str) -> None:
        print(line, flush=True)

    now = datetime.now(UTC).replace(microsecond=0)
    say(
        f"reports benchmark: {n:,} conversations, {repeats} timed runs per query, "
        f"python {platform.python_version()}"
    )
    await upgrade_to_head(url)
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            have = (await conn.execute(text("SELECT count(*) FROM conversation_fact"))).scalar_one()
            version = (await conn.execute(text("SHOW server_version"))).scalar_one()
        say(f"PostgreSQL {version}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        if reuse and have == n:
            say(f"reusing the {have:,} seeded conversations")
        else:
            say("seeding")
            await seed(engine, n, now, say)
        async with engine.connect() as conn:
            size = (
                await conn.execute(text("SELECT pg_size_pretty(pg_total_relation_size('conversation_fact'))"))
            ).scalar_one()
            ledger = (await conn.execute(text("SELECT count(*) FROM model_usage"))).scalar_one()
        say(f"conversation_fact: {size} with indexes; model_usage: {ledger:,} rows")
        started = time.perf_counter()
        days = await rollup.refresh(session_factory(engine))
        say(f"rollup: {days} marked days recomputed in {time.perf_counter() - started:.1f} s")
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f"VACUUM ANALYZE {', '.join(ROLLUP_TABLES)}"))
            sizes = await conn.execute(
                text(
                    "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)), reltuples::bigint "
                    "FROM pg_class WHERE relname = ANY(:names) ORDER BY relname"
                ),
                {"names": list(ROLLUP_TABLES)},
            )
            say("rollup tables: " + "; ".join(f"{name} {size} ({rows:,} rows)" for name, size, rows in sizes))
        named = queries(engine, now, await deep_cursor(engine), live)
        say("timing")
        results = await time_queries(engine, named, repeats, say)
        results = [r for r in results if not r[0].endswith(LIVE)]  # the target is the rollup's
        worst = max(results, key=lambda r: r[2])
        over = [r[0] for r in results if r[2] >= TARGET_P95_MS]
        verdict = "met by every query" if not over else f"missed by {len(over)}: " + ", ".join(over)
        say(f"\nslowest: {worst[0]} (p95 {worst[2]:.1f} ms); target p95 < {TARGET_P95_MS:.0f} ms: {verdict}")
        ms, statement, parameters = max(worst[3], key=lambda s: s[0])
        say(f"\nEXPLAIN (ANALYZE, BUFFERS) of its slowest statement ({ms:.1f} ms when timed):\n{statement}\n")
        say(await explain(engine, statement, parameters))
    finally:
        await engine.dispose()
    return 0


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("url", nargs="?", default=os.environ.get("SWITCHBOARD_DATABASE_URL"))
    parser.add_argument("--conversations", type=int, default=DEFAULT_CONVERSATIONS)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--reuse", action="store_true", help="keep a database seeded with the same N")
    parser.add_argument("--force", action="store_true", help="seed a database whose name lacks 'bench'")
    parser.add_argument("--live", action="store_true", help="also time each rollup-backed report read live")
    args = parser.parse_args(argv)
    url: str | None = args.url
    if not url or not url.startswith("postgresql"):
        parser.error("a PostgreSQL URL (argument or SWITCHBOARD_DATABASE_URL) is required")
    if "bench" not in url.rsplit("/", 1)[-1] and not args.force:
        parser.error("seeding empties the report tables: use a database named *bench* (or --force)")
    return asyncio.run(main(url, args.conversations, max(1, args.repeats), args.reuse, args.live))


if __name__ == "__main__":
    sys.exit(cli())
