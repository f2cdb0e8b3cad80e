"""conversation_fact: one row per conversation, what reports aggregate

Created empty; the refresh job fills it from the conversations, handoff trail, ratings and ledger.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversation_fact",
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("intent", sa.String(64), nullable=True),
        sa.Column("policy_version", sa.String(64), nullable=True),
        sa.Column("agent_id", sa.String(32), nullable=True),
        sa.Column("resolution_type", sa.String(16), nullable=False),
        sa.Column("customer_messages", sa.Integer(), nullable=False),
        sa.Column("bot_messages", sa.Integer(), nullable=False),
        sa.Column("agent_messages", sa.Integer(), nullable=False),
        sa.Column("last_customer_at", sa.DateTime(), nullable=True),
        sa.Column("first_bot_reply_at", sa.DateTime(), nullable=True),
        sa.Column("last_bot_reply_at", sa.DateTime(), nullable=True),
        sa.Column("bot_first_response_s", sa.Float(), nullable=True),
        sa.Column("handoff_count", sa.Integer(), nullable=False),
        sa.Column("handed_off_at", sa.DateTime(), nullable=True),
        sa.Column("handoff_reason", sa.String(32), nullable=True),
        sa.Column("queue_wait_s", sa.Float(), nullable=True),
        sa.Column("human_first_response_s", sa.Float(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("resolved_by", sa.String(16), nullable=True),
        sa.Column("resolution_s", sa.Float(), nullable=True),
        sa.Column("confirmed", sa.Boolean(), nullable=False),
        sa.Column("reopened", sa.Boolean(), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("rated_at", sa.DateTime(), nullable=True),
        sa.Column("predicted_score", sa.Integer(), nullable=True),
        sa.Column("predicted_reason", sa.String(300), nullable=True),
        sa.Column("predicted_at", sa.DateTime(), nullable=True),
        sa.Column("cost_usd", sa.Numeric(18, 10), nullable=False),
        sa.Column("model_calls", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("conversation_id"),
    )
    with op.batch_alter_table("conversation_fact", schema=None) as batch_op:
        for column in ("channel", "started_at", "intent", "policy_version", "agent_id", "resolution_type",
                       "handoff_reason", "updated_at"):  # fmt: skip
            batch_op.create_index(batch_op.f(f"ix_conversation_fact_{column}"), [column], unique=False)


def downgrade() -> None:
    op.drop_table("conversation_fact")
