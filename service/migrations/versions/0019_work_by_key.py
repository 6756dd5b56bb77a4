"""`warren_work` finds each of its rows by key, whatever the table's statistics say

Each of the function's three UPDATEs joined `jobs` to the batch's ids. With statistics that
say the table is empty (a vacuum after retention emptied it), the generic plan a writer keeps
put `jobs` on the outer side, as a walk over every entry of its key index, and kept that plan
for the connection's life. Each UPDATE now also says `jobs.id = ANY(ids)`, an index condition
that bounds every plan to the batch's own rows.

Revision ID: 0019
Revises: 0018
"""

from alembic import op

from service.store import sql

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql.FUNCTIONS)


def downgrade() -> None:
    """The function's result is the same either way; the earlier text is not restored."""
