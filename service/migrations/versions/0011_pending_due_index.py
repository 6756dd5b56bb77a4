"""jobs_pending_due_idx: pending jobs by priority and due time, for GET /metrics

`service.gauges` reads, per priority tier, how many jobs are ready or scheduled and the age of
the oldest ready one. Without this index each read scanned the whole table (3 s at 1,000,000
rows); with it the oldest ready job of each priority is the first entry of its range (ten
probes), and the counts read only the pending rows. Partial: a job enters it when it becomes
pending (enqueue, retry) and the index holds nothing of the finished jobs.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS jobs_pending_due_idx"
        " ON jobs (priority, (coalesce(next_attempt_at, scheduled_at, created_at)))"
        " WHERE status = 'pending'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS jobs_pending_due_idx")
