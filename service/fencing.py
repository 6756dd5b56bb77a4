"""Fencing a handler's own writes by the attempt that makes them.

A worker that lost its lease (stalled past it, or cut off from PostgreSQL) may still be
running a handler while another worker runs the job again, or a person has started a new life
of it. What it writes to Warren's tables is fenced by the store; what a job type writes to
tables of its own (imported items, crawled pages) is fenced by `fence()`. Called in the
transaction that writes, it checks that the running attempt still holds its job, and keeps the
job with it until that transaction ends (a row lock that takeovers wait for and the lease's
renewals do not): nothing can take the job over between the check and the write, so a stale
attempt never overwrites a newer one's work.
"""

import uuid

from sqlalchemy.engine import Connection

from service.errors import LeaseLost
from service.registry import running_job
from service.store import attempts


def fence(conn: Connection) -> None:
    """Raise `LeaseLost` unless the running attempt still holds its job, which it then holds
    until `conn`'s transaction ends. Outside a worker (a handler called directly, as a script
    or a test may) there is nothing to fence."""
    job = running_job()
    if job is None or job.attempt_id is None:
        return
    if not attempts.hold(conn, uuid.UUID(job.id), job.attempt_id):
        raise LeaseLost(f"job {job.id}: attempt {job.attempt} no longer holds it; write dropped")
