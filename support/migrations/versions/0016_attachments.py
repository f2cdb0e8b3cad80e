"""attachments: files attached to conversations and tickets (their bytes are in the attachment store)

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attachment",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("uploader", sa.String(16), nullable=False),
        sa.Column("agent_id", sa.String(32), nullable=True),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("storage_key", sa.String(200), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_attachment_conversation_id", "attachment", ["conversation_id"])
    op.create_index("ix_attachment_created_at", "attachment", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_attachment_created_at", table_name="attachment")
    op.drop_index("ix_attachment_conversation_id", table_name="attachment")
    op.drop_table("attachment")
