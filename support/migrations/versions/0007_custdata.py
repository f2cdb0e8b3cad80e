"""customer data: the archived conversation's visitor id and e-mail as indexed columns

Export and erasure find a customer's archived conversations by these (before, the visitor was only a
JSON text). Existing rows are filled from their ``visitor`` JSON.

Revision ID: 0007
Revises: 0006
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BACKFILL_BATCH = 1000  # rows per UPDATE round trip: bounded memory on a large archive


def _ids(visitor_json: str) -> tuple[str | None, str | None]:
    try:
        visitor = json.loads(visitor_json or "{}")
    except ValueError:
        return None, None
    if not isinstance(visitor, dict):
        return None, None
    vid, email = visitor.get("id"), visitor.get("email")
    return (
        vid if isinstance(vid, str) and vid else None,
        email.strip().lower() if isinstance(email, str) and email.strip() else None,
    )


def upgrade() -> None:
    op.add_column("conversation", sa.Column("visitor_id", sa.String(256), nullable=True))
    op.add_column("conversation", sa.Column("visitor_email", sa.String(320), nullable=True))
    op.create_index("ix_conversation_visitor_id", "conversation", ["visitor_id"])
    op.create_index("ix_conversation_visitor_email", "conversation", ["visitor_email"])
    conn = op.get_bind()
    table = sa.table(
        "conversation", sa.column("id", sa.String), sa.column("visitor", sa.Text),
        sa.column("visitor_id", sa.String), sa.column("visitor_email", sa.String),
    )  # fmt: skip
    rows = conn.execute(sa.select(table.c.id, table.c.visitor)).all()
    updates = []
    for row in rows:
        vid, email = _ids(row.visitor)
        if vid or email:
            updates.append({"cid": row.id, "vid": vid, "email": email})
    stmt = (
        sa.update(table)
        .where(table.c.id == sa.bindparam("cid"))
        .values(visitor_id=sa.bindparam("vid"), visitor_email=sa.bindparam("email"))
    )
    for start in range(0, len(updates), BACKFILL_BATCH):
        conn.execute(stmt, updates[start : start + BACKFILL_BATCH])


def downgrade() -> None:
    op.drop_index("ix_conversation_visitor_email", "conversation")
    op.drop_index("ix_conversation_visitor_id", "conversation")
    with op.batch_alter_table("conversation") as batch:  # SQLite drops columns by copying the table
        batch.drop_column("visitor_email")
        batch.drop_column("visitor_id")
