"""schedules, and the jobs they create

A schedule enqueues a job of its type at every slot of its cron expression, in its time zone.
`next_run_at` is the next slot to fire, in UTC; the scheduler that fires it moves it on in the
same transaction that inserts the job, with the schedule's row locked, so each slot fires once
however many schedulers run. A job a schedule created names it (`schedule_name`) and its slot
(`scheduled_for`); the pair is unique, a second guard against firing a slot twice.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("cron", sa.Text, nullable=False),
        sa.Column("timezone", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("options", JSONB, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("catch_up", sa.Text, nullable=False),
        sa.Column("declared_in_code", sa.Boolean, nullable=False),
        sa.Column("next_run_at", TZ, nullable=False),
        sa.Column("last_run_at", TZ),
        sa.Column("last_job_id", UUID(as_uuid=True)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.CheckConstraint("catch_up IN ('none', 'latest', 'all')", name="schedules_catch_up"),
    )
    op.create_index(
        "schedules_due_idx", "schedules", ["next_run_at"], postgresql_where=sa.text("enabled")
    )
    op.add_column("jobs", sa.Column("schedule_name", sa.Text))
    op.add_column("jobs", sa.Column("scheduled_for", TZ))
    op.create_index(
        "jobs_schedule_slot_idx",
        "jobs",
        ["schedule_name", "scheduled_for"],
        unique=True,
        postgresql_where=sa.text("schedule_name IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("jobs_schedule_slot_idx", table_name="jobs")
    op.drop_column("jobs", "scheduled_for")
    op.drop_column("jobs", "schedule_name")
    op.drop_table("schedules")
