"""pauses: the tiers and job types an operator paused

One row per paused tier (`high`, `normal`, `low`) or job type; resuming deletes the row. Workers
read the table (cached for about a second) and park the jobs of what is paused instead of
starting them; the scheduler leaves parked rows unpublished until the pause ends. A row in
PostgreSQL, so a pause outlives every process.

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
        "pauses",
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column(
            "paused_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("kind IN ('tier', 'type')", name="pauses_kind"),
    )


def downgrade() -> None:
    op.drop_table("pauses")
