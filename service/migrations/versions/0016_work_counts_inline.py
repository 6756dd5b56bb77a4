"""warren_work is set-based, writes its batch's count deltas itself, and takes the results as
one JSON array

`warren_work` ran one primary-key UPDATE per job in a PL/pgSQL loop, and the count deltas of
a batch went through `warren_count_moves`, a SQL function that PostgreSQL plans again at every
call (it cost about as much as the two updates of a job). It is now one statement whose plan
PL/pgSQL keeps: a set-based UPDATE for the completions, one for the claims, and their moves
netted per type, run with sequential scans off (see `store.sql`). Its results come as one
`jsonb` array instead of `text[]`, so the client sends text, not adapted lists.

Revision ID: 0016
Revises: 0015
"""

from alembic import op

from service.store import sql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_OLD = "warren_work(uuid[], integer[], text, double precision, uuid[], bigint[], text[])"


def upgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {_OLD}")
    op.execute(sql.FUNCTIONS)


def downgrade() -> None:
    """The earlier function took `text[]` results; the client of this revision cannot call
    it, so a downgrade goes with the code of revision 0015."""
    op.execute(
        "DROP FUNCTION IF EXISTS warren_work(uuid[], integer[], text, double precision,"
        " uuid[], bigint[], jsonb)"
    )
