"""warren_claim_jobs, warren_complete_attempts: a worker's claims and completions, by the batch

A worker's group-commit writer claims and completes many jobs per transaction. Sent as one
statement per job, each cost the driver a send and a poll of its own: about a third more
client CPU per job than one call per batch. These functions take a batch in one call and run
the same per-job statement for each job inside PostgreSQL: each job is still found by its
primary key, whatever the table's statistics say (a set-based UPDATE over an array of ids
was planned as a walk over every pending job when the statistics were stale).

Callers pass the ids sorted, so that two batches always lock rows in the same order.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FUNCTIONS = """
CREATE FUNCTION warren_claim_jobs(ids uuid[], claimer text, lease double precision)
RETURNS TABLE (id uuid, current_attempt_id bigint, attempts integer, max_attempts integer,
               type text, priority integer, payload jsonb, timeout_seconds integer,
               retry jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    claim_id uuid;
BEGIN
    FOREACH claim_id IN ARRAY ids LOOP
        RETURN QUERY
        WITH claimed AS (
            UPDATE jobs SET status = 'processing', attempts = attempts + 1,
                   started_at = now(), updated_at = now(), worker = claimer,
                   next_attempt_at = NULL,
                   lease_until = now() + make_interval(secs => lease),
                   current_attempt_id = nextval(pg_get_serial_sequence('job_attempts', 'id'))
             WHERE jobs.id = claim_id AND status = 'pending'
               AND coalesce(next_attempt_at, scheduled_at, created_at)
                   <= now() + interval '1 second'
            RETURNING jobs.id, jobs.current_attempt_id, jobs.attempts, jobs.max_attempts,
                      jobs.type, jobs.priority, jobs.payload, jobs.timeout_seconds,
                      jobs.retry, jobs.started_at
        ), attempt AS (
            INSERT INTO job_attempts (id, job_id, number, status, worker, started_at)
            SELECT c.current_attempt_id, c.id, c.attempts, 'running', claimer, c.started_at
              FROM claimed c
        )
        SELECT c.id, c.current_attempt_id, c.attempts, c.max_attempts, c.type, c.priority,
               c.payload, c.timeout_seconds, c.retry
          FROM claimed c;
    END LOOP;
END $$;

CREATE FUNCTION warren_complete_attempts(ids uuid[], attempt_ids bigint[], results text[])
RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    done bigint;
BEGIN
    FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        UPDATE jobs SET status = 'completed', result = CAST(results[i] AS jsonb),
               error = NULL, completed_at = now(), updated_at = now(), lease_until = NULL
         WHERE jobs.id = ids[i] AND status = 'processing'
           AND current_attempt_id = attempt_ids[i]
        RETURNING current_attempt_id INTO done;
        IF FOUND THEN
            UPDATE job_attempts SET status = 'completed', finished_at = now()
             WHERE job_attempts.id = done AND status = 'running';
            RETURN NEXT done;
        END IF;
    END LOOP;
END $$;
"""


def upgrade() -> None:
    op.execute(FUNCTIONS)


def downgrade() -> None:
    op.execute("DROP FUNCTION warren_complete_attempts(uuid[], bigint[], text[])")
    op.execute("DROP FUNCTION warren_claim_jobs(uuid[], text, double precision)")
