"""assignment: team members, per-team assignment policy and SLA targets, agent skills; SLA on handoff_record

An agent in no team works the default team's queue, so existing accounts need no rows.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "team_member",
        sa.Column("team_id", sa.String(32), sa.ForeignKey("team.id"), nullable=False),
        sa.Column("agent_id", sa.String(32), sa.ForeignKey("agent.id"), nullable=False),
        sa.PrimaryKeyConstraint("team_id", "agent_id"),
    )
    op.create_table(
        "team_routing",
        sa.Column("team_id", sa.String(32), sa.ForeignKey("team.id"), nullable=False),
        sa.Column("assignment", sa.String(16), nullable=True),
        sa.Column("sla_first_reply_s", sa.Integer(), nullable=True),
        sa.Column("sla_resolution_s", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("team_id"),
    )
    op.create_table(
        "agent_skills",
        sa.Column("agent_id", sa.String(32), sa.ForeignKey("agent.id"), nullable=False),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("intents", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id"),
    )
    op.add_column("handoff_record", sa.Column("team_id", sa.String(32), nullable=True))
    op.add_column("handoff_record", sa.Column("sla_first_reply_s", sa.Integer(), nullable=True))
    op.add_column("handoff_record", sa.Column("sla_resolution_s", sa.Integer(), nullable=True))
    op.create_index("ix_handoff_record_team_id", "handoff_record", ["team_id"])


def downgrade() -> None:
    op.drop_index("ix_handoff_record_team_id", table_name="handoff_record")
    with op.batch_alter_table("handoff_record") as batch:
        batch.drop_column("sla_resolution_s")
        batch.drop_column("sla_first_reply_s")
        batch.drop_column("team_id")
    op.drop_table("agent_skills")
    op.drop_table("team_routing")
    op.drop_table("team_member")
