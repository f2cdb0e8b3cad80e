"""team: the default team and its business hours (admin-editable, overriding SWITCHBOARD_BUSINESS_HOURS)

Revision ID: 0013
Revises: 0012
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    team = op.create_table(
        "team",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("business_hours", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(team, [{"id": "default", "name": "Support", "business_hours": None,
                           "updated_at": datetime.now(UTC).replace(tzinfo=None), "updated_by": None}])


def downgrade() -> None:
    op.drop_table("team")
