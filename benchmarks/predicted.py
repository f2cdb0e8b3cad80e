"""How long the predicted-satisfaction job takes to find its conversations in a million-row
``conversation_fact`` on PostgreSQL.

Seeds a fresh database (migrated to head) with ``--rows`` fact rows started over the last 60 days, in one
``INSERT ... SELECT generate_series`` statement, in two shapes, and times the job's candidate query
(:meth:`support.reports.predicted.PredictedSatisfaction._candidates`, with limit ``max_per_run``, more
than one batch of a run asks for):

* **first run**: nothing rated, nothing predicted, everything finished (the job switched on over a full
  history: the query stops after ``max_per_run`` rows of the partial index);
* **steady state**: 30 % rated; unrated rows older than a day predicted already; 3 % never finished (no
  resolution, no bot reply), which stay in the partial index and are read on every run.

    python -m benchmarks.predicted --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test [--rows N]

Prints the median and p95 of ``--repeat`` runs and the plan of the steady-state query. Measures only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import text

from support.db.engine import make_engine
from support.db.migrate import upgrade_to_head
from support.reports.predicted import PredictedSatisfaction
from support.settings import LLMSettings, PredictedCsatSettings

SEED = """
INSERT INTO conversation_fact (conversation_id, channel, started_at, resolution_type, customer_messages,
    bot_messages, agent_messages, last_bot_reply_at, handoff_count, resolved_at, confirmed, reopened, rating,
    predicted_score, cost_usd, model_calls, updated_at)
SELECT 'c' || g, 'chat', started, 'bot', 2, 2, 0,
    CASE WHEN {never_finished} THEN NULL ELSE started + interval '2 minutes' END, 0,
    CASE WHEN {never_finished} THEN NULL ELSE started + interval '3 minutes' END, false, false,
    CASE WHEN {rated} THEN 4 END,
    CASE WHEN {predicted} THEN 3 END,
    0, 2, now()
FROM (SELECT g, now() - (g::float8 / :rows) * interval '60 days' AS started
      FROM generate_series(1, :rows) g) s
"""
SHAPES = {
    "first run": {"never_finished": "false", "rated": "false", "predicted": "false"},
    "steady state": {
        "never_finished": "g % 100 < 3",
        "rated": "g % 100 BETWEEN 3 AND 32",
        "predicted": "g % 100 >= 33 AND started < now() - interval '1 day'",
    },
}


async def measure(url: str, rows: int, repeat: int) -> None:
    admin = make_engine(url)
    name = f"sbbench_{uuid.uuid4().hex[:8]}"
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    db_url = url.rsplit("/", 1)[0] + "/" + name
    engine = make_engine(db_url)
    try:
        await upgrade_to_head(db_url)
        job = PredictedSatisfaction(
            sessions=None, redis=None, store=None, gateway=None,  # type: ignore[arg-type]  # only queries
            llm=LLMSettings(), settings=PredictedCsatSettings(),
        )  # fmt: skip
        for shape, parts in SHAPES.items():
            async with engine.begin() as conn:
                await conn.execute(text("TRUNCATE conversation_fact"))
                started = time.perf_counter()
                await conn.execute(text(SEED.format(**parts)), {"rows": rows})
                await conn.execute(text("ANALYZE conversation_fact"))
            seeded_s = time.perf_counter() - started
            query = job._candidates(datetime.now(UTC), job.settings.max_per_run)
            timings: list[float] = []
            async with engine.connect() as conn:
                for _ in range(repeat):
                    started = time.perf_counter()
                    found = (await conn.execute(query)).all()
                    timings.append((time.perf_counter() - started) * 1000)
                compiled = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
                plan = (await conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}"))).scalars().all()
            p95 = statistics.quantiles(timings, n=20, method="inclusive")[18]
            print(
                f"{shape}: {rows:,} rows (seeded in {seeded_s:.1f} s), {len(found)} candidates; "
                f"median {statistics.median(timings):.1f} ms, p95 {p95:.1f} ms over {repeat} runs"
            )
            if shape == "steady state":
                print("\n".join(plan))
    finally:
        await engine.dispose()
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", required=True, help="a PostgreSQL URL (a scratch database is made)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(measure(args.postgres, args.rows, args.repeat))


if __name__ == "__main__":
    main()
