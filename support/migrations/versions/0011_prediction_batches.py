"""prediction_batch and prediction_batch_item: predicted satisfaction through Message Batches

Also a partial index over the conversations that have neither a rating nor a prediction, the only rows
the prediction job looks at, so its scan stays small however large conversation_fact grows.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UNSCORED = sa.text("rating IS NULL AND predicted_score IS NULL")


def upgrade() -> None:
    op.create_table(
        "prediction_batch",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("anthropic_batch_id", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("request_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("applied_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("prediction_batch", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_prediction_batch_anthropic_batch_id"), ["anthropic_batch_id"], unique=True
        )
        batch_op.create_index(batch_op.f("ix_prediction_batch_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_prediction_batch_status"), ["status"], unique=False)
    op.create_table(
        "prediction_batch_item",
        sa.Column("custom_id", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("redactions", sa.JSON(), nullable=True),
        sa.Column("applied_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["batch_id"], ["prediction_batch.id"]),
        sa.PrimaryKeyConstraint("custom_id"),
        sa.UniqueConstraint("conversation_id", "attempt", name="uq_prediction_item_attempt"),
    )
    with op.batch_alter_table("prediction_batch_item", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_prediction_batch_item_batch_id"), ["batch_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_prediction_batch_item_conversation_id"), ["conversation_id"], unique=False
        )
    op.create_index(
        "ix_conversation_fact_unscored", "conversation_fact", ["started_at"], unique=False,
        postgresql_where=UNSCORED, sqlite_where=UNSCORED,
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_conversation_fact_unscored", table_name="conversation_fact")
    op.drop_table("prediction_batch_item")
    op.drop_table("prediction_batch")
