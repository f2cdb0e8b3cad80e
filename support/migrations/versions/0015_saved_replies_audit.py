"""saved replies (team and personal) and the append-only audit log of admin and agent actions

The audit table refuses UPDATE and DELETE by trigger, on PostgreSQL and SQLite alike: no code path, and no
API, can rewrite what was recorded.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

APPEND_ONLY_MESSAGE = "audit_entry is append-only"


def upgrade() -> None:
    op.create_table(
        "saved_reply",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.String(32), nullable=True),
        sa.Column("owner_key", sa.String(32), nullable=False),
        sa.Column("title", sa.String(120), nullable=False),
        sa.Column("shortcut", sa.String(33), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("example_id", sa.String(32), nullable=True),
        sa.Column("created_by", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner_key", "shortcut", name="uq_saved_reply_owner_shortcut"),
    )
    op.create_index("ix_saved_reply_owner_id", "saved_reply", ["owner_id"])
    op.create_index("ix_saved_reply_owner_key", "saved_reply", ["owner_key"])
    op.create_table(
        "audit_entry",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor_id", sa.String(32), nullable=True),
        sa.Column("action", sa.String(48), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=False),
        sa.Column("target_id", sa.String(128), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
    )
    for column in ("at", "actor_id", "action"):
        op.create_index(f"ix_audit_entry_{column}", "audit_entry", [column])
    if _pg():
        op.execute(
            "CREATE FUNCTION audit_entry_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE ON audit_entry "
            "FOR EACH ROW EXECUTE FUNCTION audit_entry_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_entry_no_truncate BEFORE TRUNCATE ON audit_entry "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_entry_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_entry_no_{event.lower()} BEFORE {event} ON audit_entry "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )


def _pg() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def downgrade() -> None:
    if _pg():
        op.execute("DROP TRIGGER IF EXISTS audit_entry_no_truncate ON audit_entry")
        op.execute("DROP TRIGGER IF EXISTS audit_entry_append_only ON audit_entry")
        op.execute("DROP FUNCTION IF EXISTS audit_entry_append_only()")
    op.drop_table("audit_entry")
    op.drop_table("saved_reply")
