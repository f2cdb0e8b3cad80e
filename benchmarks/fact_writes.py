"""What the rollup's dirty-day triggers cost the fact refresher's writes, on PostgreSQL.

The refresher (``support.reports.facts.FactRefresher``) writes facts as one upsert of up to 200 rows per
transaction; the triggers of migration 0014 add one statement-level mark per statement. This times that
upsert (the refresher's own statement) in interleaved rounds with the triggers disabled and enabled (which
goes first alternates): each
round inserts ``--batches`` batches of new conversations started in the last two days, then rewrites them
(the upsert's update path), and reports rows/s per variant, then the time the report-facts job spends
recomputing the days the writes marked.

    python -m benchmarks.fact_writes URL [--rounds 5] [--batches 20]

URL: a PostgreSQL database whose name contains ``bench`` (its ``conversation_fact`` is emptied), e.g.
``createdb -h 127.0.0.1 -U postgres switchboard_bench_writes``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from support.db.engine import make_engine, session_factory
from support.db.migrate import upgrade_to_head
from support.reports import rollup
from support.reports.facts import BATCH, _upsert


def rows(prefix: str, count: int, now: datetime, version: int) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        started = now - timedelta(seconds=(i * 7919) % 172800)
        out.append(
            {
                "conversation_id": f"{prefix}{i:06d}", "channel": "chat", "started_at": started,
                "intent": ("returns_refunds", "warranty_repairs", None)[i % 3], "policy_version": "v1",
                "agent_id": None, "resolution_type": "bot", "customer_messages": 2, "bot_messages": 2,
                "agent_messages": 0, "last_customer_at": started, "first_bot_reply_at": started,
                "last_bot_reply_at": started + timedelta(seconds=30), "bot_first_response_s": 1.5,
                "handoff_count": 0, "handed_off_at": None, "handoff_reason": None, "queue_wait_s": None,
                "human_first_response_s": None, "resolved_at": None, "resolved_by": None,
                "resolution_s": 30.0 + version, "confirmed": False, "reopened": False, "rating": None,
                "rated_at": None, "cost_usd": Decimal("0.0123"), "model_calls": 2, "updated_at": started,
            }
        )  # fmt: skip
    return out


async def main(url: str, rounds: int, batches: int) -> int:
    await upgrade_to_head(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    upsert = _upsert("postgresql")
    rates: dict[str, list[float]] = {"without triggers": [], "with triggers": []}
    refresh_s: list[float] = []
    days_done = 0
    try:
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE conversation_fact, rollup_dirty"))
        for r in range(rounds):
            for variant in list(rates)[:: 1 if r % 2 == 0 else -1]:  # alternate which goes first
                switch = "DISABLE" if variant == "without triggers" else "ENABLE"
                async with engine.begin() as conn:
                    await conn.execute(text(f"ALTER TABLE conversation_fact {switch} TRIGGER USER"))
                    await conn.execute(text("TRUNCATE conversation_fact, rollup_dirty"))
                written = 0
                t0 = time.perf_counter()
                for version in (0, 1):  # insert, then the same rows again: the update path
                    for b in range(batches):
                        batch = rows(f"w{r}b{b}-", BATCH, now, version)
                        async with sessions() as session, session.begin():
                            await session.execute(upsert, batch)
                        written += len(batch)
                rates[variant].append(written / (time.perf_counter() - t0))
                if variant == "with triggers":
                    t1 = time.perf_counter()
                    days_done += await rollup.refresh(sessions, ("fact",))
                    refresh_s.append(time.perf_counter() - t1)
            print(
                f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f} rows/s" for k, v in rates.items())
                + f"; load {os.getloadavg()[0]:.1f}", flush=True
            )  # fmt: skip
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE conversation_fact ENABLE TRIGGER USER"))
    finally:
        await engine.dispose()
    for variant, values in rates.items():
        print(f"{variant:<17} median {statistics.median(values):,.0f} rows/s  (rounds: "
              + ", ".join(f"{v:,.0f}" for v in values) + ")")  # fmt: skip
    before, after = (statistics.median(v) for v in rates.values())
    print(f"triggers cost {100 * (before - after) / before:+.1f} % of the upsert rate")
    print(
        f"rollup refresh after each round: median {statistics.median(refresh_s) * 1000:.0f} ms "
        f"for {days_done / rounds:.1f} marked days ({2 * batches * BATCH:,} rows written)"
    )
    return 0


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("url")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args(argv)
    if not args.url.startswith("postgresql") or "bench" not in args.url.rsplit("/", 1)[-1]:
        parser.error("a PostgreSQL database named *bench* is required (its conversation_fact is emptied)")
    return asyncio.run(main(args.url, max(1, args.rounds), max(1, args.batches)))


if __name__ == "__main__":
    sys.exit(cli())
