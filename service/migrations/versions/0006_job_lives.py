"""jobs.life: the fence that keeps a stale message from changing a newer life of its job

A job's life starts when it is enqueued (life 1), and again each time a person retries it or
replays it from the dead-letter queue (`life + 1`, with fresh attempts). Every message
carries the life it was published for. A message of an earlier life may still be queued, be
redelivered, or wait in a `.XQ` queue when the new life starts; it must not claim, fail or
dead-letter the new life, so each write a message can cause names the life it belongs to:

- a claim (`warren_claim_jobs`, replaced here) matches only the life its message was for;
- a mark that a message was published matches only the life and attempt count it was
  published for, so a late mark cannot hide a newer life's unpublished row from the
  dispatcher;
- a drained dead letter fails its job only in the life it was published for.

Messages published before this migration carry no life; they were all published for life 1,
which is where every existing job stands after it.

Each attempt also records the life it ran in, so a job's history reads by life.

Revision ID: 0006
Revises: 0005
"""

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CLAIM = """
CREATE FUNCTION warren_claim_jobs(ids uuid[], lives integer[], claimer text,
                                  lease double precision)
RETURNS TABLE (id uuid, current_attempt_id bigint, attempts integer, max_attempts integer,
               type text, priority integer, payload jsonb, timeout_seconds integer,
               retry jsonb, life integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    i integer;
BEGIN
    FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        RETURN QUERY
        WITH claimed AS (
            UPDATE jobs SET status = 'processing', attempts = attempts + 1,
                   started_at = now(), updated_at = now(), worker = claimer,
                   next_attempt_at = NULL,
                   lease_until = now() + make_interval(secs => lease),
                   current_attempt_id = nextval(pg_get_serial_sequence('job_attempts', 'id'))
             WHERE jobs.id = ids[i] AND jobs.life = lives[i] AND status = 'pending'
               AND coalesce(next_attempt_at, scheduled_at, created_at)
                   <= now() + interval '1 second'
            RETURNING jobs.id, jobs.current_attempt_id, jobs.attempts, jobs.max_attempts,
                      jobs.type, jobs.priority, jobs.payload, jobs.timeout_seconds,
                      jobs.retry, jobs.life, jobs.started_at
        ), attempt AS (
            INSERT INTO job_attempts (id, job_id, number, life, status, worker, started_at)
            SELECT c.current_attempt_id, c.id, c.attempts, c.life, 'running', claimer,
                   c.started_at
              FROM claimed c
        )
        SELECT c.id, c.current_attempt_id, c.attempts, c.max_attempts, c.type, c.priority,
               c.payload, c.timeout_seconds, c.retry, c.life
          FROM claimed c;
    END LOOP;
END $$;
"""


def upgrade() -> None:
    op.add_column("jobs", sa.Column("life", sa.Integer, nullable=False, server_default="1"))
    op.add_column("job_attempts", sa.Column("life", sa.Integer))
    op.execute("DROP FUNCTION warren_claim_jobs(uuid[], text, double precision)")
    op.execute(CLAIM)


def downgrade() -> None:
    op.execute("DROP FUNCTION warren_claim_jobs(uuid[], integer[], text, double precision)")
    op.drop_column("job_attempts", "life")
    op.drop_column("jobs", "life")
    previous = importlib.import_module("service.migrations.versions.0005_claim_functions")
    op.execute(previous.FUNCTIONS.split("CREATE FUNCTION warren_complete_attempts")[0])
