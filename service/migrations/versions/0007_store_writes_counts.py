"""The store writes the counts; an attempt's row is written when it ends; warren_work

A job's run cost more in index and trigger upkeep than in the work itself. This migration
takes out what a first-time success did not need:

- the row trigger that appended two count deltas for every change of status is gone: the
  store's statements record their changes themselves, one delta per type and status per
  statement (`warren_count_moves`);
- `warren_work` claims and completes a worker's batch in one call and one transaction, and
  returns no payload (the message carries it);
- an attempt's row is written when the job moves on from it (a failure, a cancel, a lost
  lease), instead of inserted at the claim and updated at the end. The job's row holds its
  current attempt, running or completed: a success writes no attempt row at all;
- the idempotency key's unique index leaves out jobs without a key, so an update of such a
  job adds no entry to it.

Revision ID: 0007
Revises: 0006
"""

import importlib

from alembic import op

from service.store import sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP TRIGGER jobs_count_status_change ON jobs")
    op.execute("DROP FUNCTION warren_count_status_change()")
    op.execute("DROP FUNCTION warren_claim_jobs(uuid[], integer[], text, double precision)")
    op.execute("DROP FUNCTION warren_complete_attempts(uuid[], bigint[], text[])")
    op.execute(sql.FUNCTIONS)
    # A running attempt is read from its job's row from now on.
    op.execute(
        "DELETE FROM job_attempts a USING jobs j WHERE a.id = j.current_attempt_id"
        " AND j.status = 'processing' AND a.status = 'running'"
    )
    op.execute(
        "CREATE UNIQUE INDEX jobs_idempotency_key_idx ON jobs (idempotency_key)"
        " WHERE idempotency_key IS NOT NULL"
    )
    op.execute("ALTER TABLE jobs DROP CONSTRAINT jobs_idempotency_key_key")


def downgrade() -> None:
    op.execute(
        "INSERT INTO job_attempts (id, job_id, number, life, status, worker, started_at,"
        " finished_at)"
        " SELECT current_attempt_id, id, attempts, life,"
        " CASE status WHEN 'processing' THEN 'running' ELSE 'completed' END, worker, started_at,"
        " CASE status WHEN 'completed' THEN completed_at END"
        " FROM jobs WHERE status IN ('processing', 'completed') AND current_attempt_id IS NOT NULL"
        " ON CONFLICT DO NOTHING"
    )
    op.execute("ALTER TABLE jobs ADD CONSTRAINT jobs_idempotency_key_key UNIQUE (idempotency_key)")
    op.execute("DROP INDEX jobs_idempotency_key_idx")
    op.execute(
        "DROP FUNCTION warren_work(uuid[], integer[], text, double precision, uuid[], bigint[],"
        " text[])"
    )
    op.execute("DROP FUNCTION warren_count_moves(text[], text[], text[])")
    counts = importlib.import_module("service.migrations.versions.0003_job_counts")
    op.execute(_between(counts.FUNCTIONS, "CREATE FUNCTION warren_count_status_change", "CREATE"))
    op.execute(_between(counts.TRIGGERS, "CREATE TRIGGER jobs_count_status_change", "CREATE"))
    op.execute(importlib.import_module("service.migrations.versions.0006_job_lives").CLAIM)
    claims = importlib.import_module("service.migrations.versions.0005_claim_functions")
    complete = "CREATE FUNCTION warren_complete_attempts"
    op.execute(complete + claims.FUNCTIONS.split(complete)[1])


def _between(text: str, start: str, end: str) -> str:
    """The statement of `text` that begins with `start`, up to the next `end`."""
    return start + text.split(start)[1].split(end)[0]
