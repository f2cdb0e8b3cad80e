"""agents, examples from agent edits, CSAT ratings

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_agent_email", "agent", ["email"], unique=True)
    op.create_table(
        "example",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("conversation_id", sa.String(64), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("customer_message", sa.Text(), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("bot_draft", sa.Text(), nullable=True),
        sa.Column("agent_text", sa.Text(), nullable=False),
        sa.Column("edit_distance", sa.Integer(), nullable=True),
        sa.Column("edit_ratio", sa.Float(), nullable=True),
        sa.Column("intent", sa.String(64), nullable=True),
        sa.Column("agent_id", sa.String(32), nullable=True),
        sa.Column("policy_version", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("curated", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    for column in ("conversation_id", "intent", "agent_id", "status", "curated", "created_at"):
        op.create_index(f"ix_example_{column}", "example", [column])
    op.create_table(
        "rating",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("resolved_seq", sa.Integer(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("resolution", sa.String(16), nullable=False),
        sa.Column("intent", sa.String(64), nullable=True),
        sa.Column("agent_id", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("conversation_id", "resolved_seq", name="uq_rating_resolution"),
    )
    for column in ("conversation_id", "intent", "agent_id", "created_at"):
        op.create_index(f"ix_rating_{column}", "rating", [column])


def downgrade() -> None:
    op.drop_table("rating")
    op.drop_table("example")
    op.drop_table("agent")
