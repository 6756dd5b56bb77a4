"""processes and job_minutes: who is alive, and what finished minute by minute

- `processes`: one row per worker process and scheduler, written by its heartbeat (`seen_at`)
  and deleted when it stops cleanly; one that died stops being seen. The dashboard lists the
  ones seen lately, idle or busy.
- `job_minutes`: jobs that completed or failed for good, per minute and type. The scheduler's
  fold of the kept counts writes it from the deltas it moves, so a worker's hot path writes
  nothing more, and the dashboard's chart reads sixty rows, not the jobs table.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_NOW = sa.func.now()


def upgrade() -> None:
    op.create_table(
        "processes",
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.CheckConstraint("kind IN ('worker', 'scheduler')", name="processes_kind"),
    )
    op.create_table(
        "job_minutes",
        sa.Column("minute", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("type", sa.Text, primary_key=True),
        sa.Column("status", sa.Text, primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_minutes")
    op.drop_table("processes")
