"""warren_work finds each row by its key: the status guard is a filter, not an index condition

The planner took `jobs_status_created_idx` for `id = $1 AND status = 'processing'` whenever
its statistics saw no job in that status, and walked every entry the status ever had, dead
ones included, for each completion. `store.sql.status_in` writes the guard so that it cannot
be an index condition; this creates the store's functions again from `store.sql.FUNCTIONS`.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

from service.store import sql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql.FUNCTIONS)


def downgrade() -> None:
    """The earlier text of the functions differs only in how the guard is written."""
