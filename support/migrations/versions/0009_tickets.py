"""tickets, integration keys, ticket batches and webhooks

Every new table is created empty; nothing existing changes.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "integration_key",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(128), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("integration_key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_integration_key_key_hash"), ["key_hash"], unique=True)
        batch_op.create_index(batch_op.f("ix_integration_key_revoked_at"), ["revoked_at"], unique=False)

    op.create_table(
        "ticket",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("integration_key_id", sa.String(32), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=True),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("customer_email", sa.String(320), nullable=False),
        sa.Column("customer_name", sa.String(200), nullable=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("triage", sa.JSON(), nullable=True),
        sa.Column("route", sa.String(16), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("settled_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("integration_key_id", "idempotency_key", name="uq_ticket_idempotency"),
    )
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_conversation_id"), ["conversation_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_ticket_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_ticket_customer_email"), ["customer_email"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_ticket_integration_key_id"), ["integration_key_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_ticket_settled_at"), ["settled_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_ticket_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_ticket_urgent"), ["urgent"], unique=False)

    op.create_table(
        "ticket_batch",
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
    with op.batch_alter_table("ticket_batch", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ticket_batch_anthropic_batch_id"), ["anthropic_batch_id"], unique=True
        )
        batch_op.create_index(batch_op.f("ix_ticket_batch_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_ticket_batch_status"), ["status"], unique=False)

    op.create_table(
        "webhook_endpoint",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "ticket_batch_item",
        sa.Column("custom_id", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("ticket_id", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("applied_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["ticket_batch.id"],
        ),
        sa.PrimaryKeyConstraint("custom_id"),
    )
    with op.batch_alter_table("ticket_batch_item", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_batch_item_batch_id"), ["batch_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ticket_batch_item_ticket_id"), ["ticket_id"], unique=False)

    op.create_table(
        "ticket_reply",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("ticket_id", sa.String(32), nullable=False),
        sa.Column("author", sa.String(16), nullable=False),
        sa.Column("agent_id", sa.String(32), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["ticket.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ticket_reply", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_reply_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_ticket_reply_ticket_id"), ["ticket_id"], unique=False)

    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("endpoint_id", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoint.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("endpoint_id", "message_id", name="uq_webhook_delivery_message"),
    )
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_delivery_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_delivery_endpoint_id"), ["endpoint_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_delivery_event_type"), ["event_type"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_delivery_message_id"), ["message_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_delivery_status"), ["status"], unique=False)

    op.create_table(
        "webhook_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_delivery.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_attempt", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_attempt_delivery_id"), ["delivery_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_attempt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_attempt_delivery_id"))

    op.drop_table("webhook_attempt")
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_delivery_status"))
        batch_op.drop_index(batch_op.f("ix_webhook_delivery_message_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_delivery_event_type"))
        batch_op.drop_index(batch_op.f("ix_webhook_delivery_endpoint_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_delivery_created_at"))

    op.drop_table("webhook_delivery")
    with op.batch_alter_table("ticket_reply", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_reply_ticket_id"))
        batch_op.drop_index(batch_op.f("ix_ticket_reply_created_at"))

    op.drop_table("ticket_reply")
    with op.batch_alter_table("ticket_batch_item", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_batch_item_ticket_id"))
        batch_op.drop_index(batch_op.f("ix_ticket_batch_item_batch_id"))

    op.drop_table("ticket_batch_item")
    op.drop_table("webhook_endpoint")
    with op.batch_alter_table("ticket_batch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_batch_status"))
        batch_op.drop_index(batch_op.f("ix_ticket_batch_created_at"))
        batch_op.drop_index(batch_op.f("ix_ticket_batch_anthropic_batch_id"))

    op.drop_table("ticket_batch")
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_urgent"))
        batch_op.drop_index(batch_op.f("ix_ticket_status"))
        batch_op.drop_index(batch_op.f("ix_ticket_settled_at"))
        batch_op.drop_index(batch_op.f("ix_ticket_integration_key_id"))
        batch_op.drop_index(batch_op.f("ix_ticket_customer_email"))
        batch_op.drop_index(batch_op.f("ix_ticket_created_at"))
        batch_op.drop_index(batch_op.f("ix_ticket_conversation_id"))

    op.drop_table("ticket")
    with op.batch_alter_table("integration_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_integration_key_revoked_at"))
        batch_op.drop_index(batch_op.f("ix_integration_key_key_hash"))

    op.drop_table("integration_key")
