"""ledger: per-call counts of redacted personal data

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_usage") as batch:
        batch.add_column(sa.Column("redactions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_usage") as batch:
        batch.drop_column("redactions")
