"""jobs.progress: what a running handler last reported (`report_progress`)

`{done, total, message, updatedAt}` or null. Written by the worker's heartbeat, at most once
per beat, fenced by the attempt; a new life starts without it.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("progress", JSONB))


def downgrade() -> None:
    op.drop_column("jobs", "progress")
