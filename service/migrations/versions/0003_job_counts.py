"""job_counts: kept counts of jobs by type and status, for GET /stats

Counting a table of millions of jobs on every request is too slow, and a single counter row
per (type, status) updated by every job would make all workers queue on its lock. So every
change of a job's status appends a delta row (no contention: inserts only), and the
dispatcher folds the deltas into `job_counts` every tick. A count is `job_counts` plus the
deltas not folded yet, always exact.

Triggers keep the deltas, so no write path can forget them: inserts and deletes per statement
(a batch of 1,000 jobs is one delta row per type and status), updates per row, only when the
status changed (the WHEN clause is checked without calling the function, so lease renewals
and publishing cost nothing). TRUNCATE empties the counts.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

FUNCTIONS = """
CREATE FUNCTION warren_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_count_deltas (type, status, delta)
    SELECT type, status, count(*) FROM inserted GROUP BY type, status;
    RETURN NULL;
END $$;

CREATE FUNCTION warren_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_count_deltas (type, status, delta)
    SELECT type, status, -count(*) FROM deleted GROUP BY type, status;
    RETURN NULL;
END $$;

CREATE FUNCTION warren_count_status_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_count_deltas (type, status, delta)
    VALUES (OLD.type, OLD.status, -1), (NEW.type, NEW.status, 1);
    RETURN NULL;
END $$;

CREATE FUNCTION warren_count_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_count_deltas;
    DELETE FROM job_counts;
    RETURN NULL;
END $$;
"""

TRIGGERS = """
CREATE TRIGGER jobs_count_inserted AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT
    EXECUTE FUNCTION warren_count_inserted();
CREATE TRIGGER jobs_count_deleted AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT
    EXECUTE FUNCTION warren_count_deleted();
CREATE TRIGGER jobs_count_status_change AFTER UPDATE OF status ON jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION warren_count_status_change();
CREATE TRIGGER jobs_count_truncated AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION warren_count_truncated();
"""


def upgrade() -> None:
    op.create_table(
        "job_counts",
        sa.Column("type", sa.Text, primary_key=True),
        sa.Column("status", sa.Text, primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "job_count_deltas",
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("delta", sa.BigInteger, nullable=False),
    )
    op.execute(FUNCTIONS)
    # No job may change between the first count and the first trigger.
    op.execute("LOCK TABLE jobs IN SHARE MODE")
    op.execute(
        "INSERT INTO job_counts (type, status, n)"
        " SELECT type, status, count(*) FROM jobs GROUP BY type, status"
    )
    op.execute(TRIGGERS)


def downgrade() -> None:
    for trigger in ("inserted", "deleted", "status_change", "truncated"):
        op.execute(f"DROP TRIGGER jobs_count_{trigger} ON jobs")
        op.execute(f"DROP FUNCTION warren_count_{trigger}()")
    op.drop_table("job_count_deltas")
    op.drop_table("job_counts")
