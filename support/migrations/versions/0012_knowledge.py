"""knowledge: documents and immutable versions of the whole knowledge (policy + articles)

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "knowledge_text",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_table(
        "knowledge_version",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("parent_id", sa.String(64), nullable=True),
        sa.Column("change", sa.String(300), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("documents", sa.Integer(), nullable=False),
        sa.Column("chars", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("saved_at", sa.DateTime(), nullable=False),
        sa.Column("activated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("knowledge_version", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_knowledge_version_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_knowledge_version_saved_at"), ["saved_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_knowledge_version_activated_at"), ["activated_at"], unique=False)
    op.create_table(
        "knowledge_document",
        sa.Column("version_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text_sha256", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["knowledge_version.id"]),
        sa.ForeignKeyConstraint(["text_sha256"], ["knowledge_text.sha256"]),
        sa.PrimaryKeyConstraint("version_id", "position"),
    )


def downgrade() -> None:
    op.drop_table("knowledge_document")
    with op.batch_alter_table("knowledge_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_knowledge_version_activated_at"))
        batch_op.drop_index(batch_op.f("ix_knowledge_version_saved_at"))
        batch_op.drop_index(batch_op.f("ix_knowledge_version_created_at"))
    op.drop_table("knowledge_version")
    op.drop_table("knowledge_text")
