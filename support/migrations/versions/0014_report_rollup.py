"""report rollups: per-day sums of conversation_fact and the ledger, kept fresh through dirty-day marks

Triggers on conversation_fact, model_usage and handoff_record mark the UTC day(s) a written row belongs
to in ``rollup_dirty``; reports recompute the marked days before they read (support/reports/rollup.py).
Every day that already has rows is marked, so the first report builds the rollup.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

COUNTS = (
    "conversations", "r_bot", "r_handed_off", "r_unanswered", "r_human", "bot_confirmed",
    "assumed_candidates", "person_resolved", "reopened", "handed_off", "rated", "satisfied", "asked",
    "asked_rated", "predicted", "predicted_satisfied", "rating_sum", "predicted_sum",
)  # fmt: skip
DURATIONS = ("first_response_bot_s", "first_response_human_s", "queue_wait_s", "resolution_s")
# (table, its day column, the rollup kind its rows feed)
MARKED = (
    ("conversation_fact", "started_at", "fact"),
    ("model_usage", "created_at", "usage"),
    ("handoff_record", "queued_at", "usage"),
)


def _day(dialect: str, column: str) -> str:
    return f"({column})::date" if dialect == "postgresql" else f"date({column})"


def _pg_triggers(table: str, column: str, kind: str) -> list[str]:
    """Statement-level triggers with transition tables: one mark per day a statement touched."""
    out = []
    for event, sources in (
        ("INSERT", ("new_rows",)),
        ("UPDATE", ("new_rows", "old_rows")),
        ("DELETE", ("old_rows",)),
    ):
        name = f"rollup_mark_{table}_{event.lower()}"
        days = " UNION ".join(f"SELECT ({column})::date AS day FROM {s}" for s in sources)
        referencing = " ".join(f"{'NEW' if s == 'new_rows' else 'OLD'} TABLE AS {s}" for s in sources)
        out += [
            f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollup_dirty (kind, day, version)
    SELECT DISTINCT '{kind}', day, 1 FROM ({days}) AS touched WHERE day IS NOT NULL
    ORDER BY day
    ON CONFLICT (kind, day) DO UPDATE SET version = rollup_dirty.version + 1;
    RETURN NULL;
END $$""",
            f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {referencing} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()",
        ]
    return out


def _sqlite_triggers(table: str, column: str, kind: str) -> list[str]:
    """Row-level triggers (SQLite has no statement-level ones)."""
    out = []
    for event, rows in (("INSERT", ("NEW",)), ("UPDATE", ("NEW", "OLD")), ("DELETE", ("OLD",))):
        body = "".join(
            f"INSERT INTO rollup_dirty (kind, day, version) VALUES ('{kind}', date({row}.{column}), 1) "
            "ON CONFLICT (kind, day) DO UPDATE SET version = version + 1;\n"
            for row in rows
        )
        out.append(
            f"CREATE TRIGGER rollup_mark_{table}_{event.lower()} AFTER {event} ON {table} BEGIN\n{body}END"
        )
    return out


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "rollup_dirty",
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "day"),
    )
    op.create_table(
        "fact_rollup",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("cut", sa.String(16), nullable=False),
        sa.Column("key", sa.String(64), nullable=True),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTS),
        sa.Column("cost_usd", sa.Numeric(24, 10), nullable=False),
        # cut "none" only: the day's exact p50/p90 of each duration (time to resolution over confirmed,
        # assumed candidates and resolved by a person)
        *(sa.Column(f"{d}_{q}", sa.Float(), nullable=True) for d in DURATIONS for q in ("p50", "p90")),
    )
    op.create_table(
        "fact_reason_rollup",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("cut", sa.String(16), nullable=False),
        sa.Column("key", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "fact_hist_rollup",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("cut", sa.String(16), nullable=False),
        sa.Column("key", sa.String(64), nullable=True),
        sa.Column("duration", sa.SmallInteger(), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "fact_hist_month",
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("cut", sa.String(16), nullable=False),
        sa.Column("key", sa.String(64), nullable=True),
        sa.Column("duration", sa.SmallInteger(), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_fact_hist_month_cut_month", "fact_hist_month", ["cut", "month"])
    op.create_table(  # cut "none" only: the overview by week
        "fact_hist_week",
        sa.Column("week", sa.Date(), nullable=False),
        sa.Column("duration", sa.SmallInteger(), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_fact_hist_week_week", "fact_hist_week", ["week"])
    op.create_table(
        "usage_rollup",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in (
                "calls",
                "errors",
                "input_tokens",
                "cache_write_tokens",
                "cache_read_tokens",
                "output_tokens",
            )
        ),  # fmt: skip
        sa.Column("cost_usd", sa.Numeric(24, 10), nullable=False),
    )
    op.create_table(
        "activity_rollup",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("day", "conversation_id"),
    )
    for table in ("fact_rollup", "fact_reason_rollup", "fact_hist_rollup"):
        op.create_index(f"ix_{table}_cut_day", table, ["cut", "day"])
    op.create_index("ix_usage_rollup_day", "usage_rollup", ["day"])
    # the assumed correction reads the bot conversations whose last reply is recent
    op.create_index("ix_conversation_fact_last_bot_reply_at", "conversation_fact", ["last_bot_reply_at"])
    for table, column, kind in MARKED:
        triggers = _pg_triggers if dialect == "postgresql" else _sqlite_triggers
        for statement in triggers(table, column, kind):
            op.execute(statement)
        op.execute(
            f"INSERT INTO rollup_dirty (kind, day, version) SELECT DISTINCT '{kind}', {_day(dialect, column)}, 1 "
            f"FROM {table} WHERE true ON CONFLICT (kind, day) DO NOTHING"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table, _column, _kind in MARKED:
        for event in ("insert", "update", "delete"):
            name = f"rollup_mark_{table}_{event}"
            if dialect == "postgresql":
                op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
                op.execute(f"DROP FUNCTION IF EXISTS {name}()")
            else:
                op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_index("ix_conversation_fact_last_bot_reply_at", "conversation_fact")
    for table in ("activity_rollup", "usage_rollup", "fact_hist_week", "fact_hist_month", "fact_hist_rollup", "fact_reason_rollup", "fact_rollup",
                  "rollup_dirty"):  # fmt: skip
        op.drop_table(table)
