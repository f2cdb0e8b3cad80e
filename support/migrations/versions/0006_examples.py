"""examples: review flags and the redaction version they were stored under

Revision ID: 0006
Revises: 0005

Rows that exist before this revision were stored raw; they get ``redaction_version`` 0, and the
application re-scrubs them once at start-up (``ExampleService.rescrub_legacy``), because scrubbing needs
the redactor's detectors, which a migration should not import.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("example") as batch:
        batch.add_column(sa.Column("review_flags", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("redaction_version", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("example") as batch:
        batch.drop_column("redaction_version")
        batch.drop_column("review_flags")
