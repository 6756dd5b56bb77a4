"""Start marks: a claim made at delivery spends its attempt only once a thread starts it

A worker claims the jobs of a burst of deliveries at once, before they wait for a thread. A
worker killed meanwhile lost those claims, and taking them back spent an attempt of each,
though none had run. `warren_work` now takes the claims' start flags (a thread's claim starts
at once) and the start marks of the claims threads took; a claim with no mark leaves
`started_at` unset, and `attempts.release_expired` gives it back unspent, counting it in the
new `jobs.unstarted_losses`.

Revision ID: 0018
Revises: 0017
"""

from alembic import op

from service.store import sql

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_OLD = "warren_work(uuid[], integer[], text, double precision, uuid[], bigint[], jsonb)"
_NEW = (
    "warren_work(uuid[], integer[], boolean[], text, double precision, uuid[], bigint[],"
    " uuid[], bigint[], jsonb)"
)


def upgrade() -> None:
    op.execute(
        "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS unstarted_losses integer NOT NULL DEFAULT 0"
    )
    op.execute(f"DROP FUNCTION IF EXISTS {_OLD}")
    op.execute(f"DROP FUNCTION IF EXISTS {_NEW}")  # 0016 created it from today's text
    op.execute(sql.FUNCTIONS)


def downgrade() -> None:
    """The earlier function took no start marks; the client of this revision cannot call it,
    so a downgrade goes with the code of revision 0017."""
    op.execute(f"DROP FUNCTION IF EXISTS {_NEW}")
    op.execute("ALTER TABLE jobs DROP COLUMN IF EXISTS unstarted_losses")
