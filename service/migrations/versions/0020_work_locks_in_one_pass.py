"""`warren_work` locks its batch's rows in one pass, in id order

Its three UPDATEs (completions, start marks, claims) locked their rows one after another
(and, planned as bitmap scans, in heap order): a batch could hold a completed job's row while
it waited for a claimed one of lower id, which a person's bulk cancel, locking in id order,
might hold while it waited for the completed one. The function is now one UPDATE over the
batch sorted by id, planned as a merge join or a nested loop on the key, so it locks its rows
in id order.

Revision ID: 0020
Revises: 0019
"""

from alembic import op

from service.store import sql

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql.FUNCTIONS)


def downgrade() -> None:
    """The function's result is the same either way; the earlier text is not restored."""
