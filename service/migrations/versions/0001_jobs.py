"""jobs and job_attempts

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("result", JSONB),
        sa.Column("error", JSONB),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("timeout_seconds", sa.Integer, nullable=False),
        sa.Column("retry", JSONB),
        sa.Column("idempotency_key", sa.Text, unique=True),
        sa.Column("worker", sa.Text),
        sa.Column("current_attempt_id", sa.BigInteger),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("scheduled_at", TZ),
        sa.Column("published_at", TZ),
        sa.Column("started_at", TZ),
        sa.Column("completed_at", TZ),
        sa.Column("next_attempt_at", TZ),
        sa.Column("lease_until", TZ),
        sa.Column("cancel_requested_at", TZ),
        sa.CheckConstraint(
            "status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')",
            name="jobs_status_check",
        ),
        sa.CheckConstraint("priority BETWEEN 1 AND 10", name="jobs_priority_check"),
    )
    op.create_index("jobs_created_idx", "jobs", [sa.text("created_at DESC"), sa.text("id DESC")])
    for column in ("status", "type"):
        op.create_index(
            f"jobs_{column}_created_idx",
            "jobs",
            [column, sa.text("created_at DESC"), sa.text("id DESC")],
        )
    op.create_index(
        "jobs_unpublished_idx",
        "jobs",
        [sa.text("coalesce(next_attempt_at, scheduled_at, created_at)")],
        postgresql_where=sa.text("status = 'pending' AND published_at IS NULL"),
    )
    op.create_index(
        "jobs_lease_idx",
        "jobs",
        ["lease_until"],
        postgresql_where=sa.text("status = 'processing'"),
    )
    op.create_table(
        "job_attempts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("job_id", UUID(as_uuid=True), sa.ForeignKey("jobs.id", ondelete="CASCADE")),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("worker", sa.Text),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("finished_at", TZ),
        sa.Column("error", JSONB),
        sa.Column("traceback", sa.Text),
    )
    op.create_index("job_attempts_job_idx", "job_attempts", ["job_id", "id"])


def downgrade() -> None:
    op.drop_table("job_attempts")
    op.drop_table("jobs")
