"""archived conversations and their events

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversation",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("widget_key", sa.String(128), nullable=False),
        sa.Column("visitor", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_activity", sa.DateTime(), nullable=False),
        sa.Column("archived_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_conversation_state", "conversation", ["state"])
    op.create_index("ix_conversation_last_activity", "conversation", ["last_activity"])
    op.create_table(
        "conversation_event",
        sa.Column("conversation_id", sa.String(64), sa.ForeignKey("conversation.id"), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=True),
        sa.Column("reply_id", sa.String(64), nullable=True),
        sa.Column("author", sa.Text(), nullable=True),
        sa.Column("extra", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("conversation_event")
    op.drop_table("conversation")
