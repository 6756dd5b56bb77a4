"""jobs.for_relay: the jobs the API stored, waiting for the scheduler's relay to publish them

The API publishes nothing itself: its insert sets `for_relay`, and the relay (a thread of
each `warren scheduler`) polls the partial index on it, which holds only the jobs waiting for
it, and clears the flag as it publishes them. A job a Python client enqueued, which that
client publishes itself, never has it set, so the relay never publishes a job twice.

Revision ID: 0017
Revises: 0016
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE jobs ADD COLUMN IF NOT EXISTS for_relay boolean NOT NULL DEFAULT false")
    op.execute("CREATE INDEX IF NOT EXISTS jobs_for_relay_idx ON jobs (id) WHERE for_relay")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS jobs_for_relay_idx")
    op.execute("ALTER TABLE jobs DROP COLUMN IF EXISTS for_relay")
