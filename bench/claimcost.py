"""What claiming and completing a job costs PostgreSQL alone, and what the table's shape adds.

    .venv/bin/python -m bench.claimcost --jobs 20000 --batch 8 --connections 4

No worker, no RabbitMQ: `--connections` threads each take their share of N pending no-op jobs
and, `--batch` at a time, complete the batch claimed before and claim the next in one
transaction, as a worker's group commit does, keeping generic plans as its writer connection
does (planned once per connection: a plan made at every call was most of what this measured,
and grew with every statement `warren_work` holds). The figure is the CPU time of those
connections' PostgreSQL backends per job (from /proc, so the load of anything else on the
machine is left out), for three shapes of the same work, one after another:

- "store": `warren_work` on `jobs` as migrated (what `warren worker` runs);
- "no status indexes": the same, after dropping the indexes that name `status`
  (`jobs_status_created_idx`, `jobs_lease_idx`, `jobs_unpublished_idx`,
  `jobs_pending_due_idx`): what the listing and the scheduler's indexes cost the claim;
- "narrow table": the same changes as set-based UPDATEs of a table holding only a job's
  volatile state (id, status, life, attempt, lease, worker, result) with no index but its
  key, where PostgreSQL can update a row in place (HOT): a floor for the database's part.

The last two change the run's own database only; it is dropped at the end, as always.
"""

import argparse
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import sqlalchemy as sa

from bench.costs import CLOCK_TICKS
from bench.harness import BenchEnv, run, say

_PENDING = """
    INSERT INTO jobs (id, type, status, priority, payload, max_attempts, timeout_seconds,
                      created_at, updated_at, published_at)
    SELECT gen_random_uuid(), 'bench-noop', 'pending', 5, '{}', 3, 60,
           clock_timestamp() - interval '1 minute', now(), NULL
      FROM generate_series(1, %(n)s)
"""
_STATUS_INDEXES = (
    "jobs_status_created_idx",
    "jobs_lease_idx",
    "jobs_unpublished_idx",
    "jobs_pending_due_idx",
)
_WORK = """
    SELECT done, id, attempt_id FROM warren_work(
        %(ids)s::uuid[], %(lives)s::integer[], %(starts)s::boolean[], 'bench', 60,
        '{}'::uuid[], '{}'::bigint[], %(done)s::uuid[], %(attempts)s::bigint[],
        %(results)s::jsonb)
"""
_NARROW = """
    CREATE TABLE narrow (id uuid PRIMARY KEY, status smallint NOT NULL, life integer NOT NULL,
                         attempt integer NOT NULL DEFAULT 0, lease_until timestamptz,
                         worker text, result jsonb) WITH (fillfactor = 70);
    INSERT INTO narrow (id, status, life) SELECT id, 0, life FROM jobs;
"""
_NARROW_CLAIM = """
    UPDATE narrow SET status = 1, attempt = attempt + 1, worker = 'bench',
                      lease_until = now() + interval '60 seconds'
      FROM unnest(%(ids)s::uuid[]) AS wanted(id)
     WHERE narrow.id = wanted.id AND narrow.status = 0 RETURNING narrow.id
"""
_NARROW_DONE = """
    UPDATE narrow SET status = 2, lease_until = NULL, result = NULL
      FROM unnest(%(done)s::uuid[]) AS finished(id)
     WHERE narrow.id = finished.id AND narrow.status = 1
"""

Step = Callable[[psycopg.Connection, list, list], list]


def work_step(conn: psycopg.Connection, claim: list, done: list) -> list:
    params: dict[str, Any] = {
        "ids": claim,
        "lives": [1] * len(claim),
        "starts": [True] * len(claim),  # a thread's claims, started at once
        "done": [job for job, _ in done],
        "attempts": [attempt for _, attempt in done],
        "results": "[" + ",".join(["null"] * len(done)) + "]",
    }
    rows = conn.execute(_WORK, params, prepare=True).fetchall()
    return [(job, attempt) for finished, job, attempt in rows if finished is None]


def narrow_step(conn: psycopg.Connection, claim: list, done: list) -> list:
    if done:
        conn.execute(_NARROW_DONE, {"done": [job for job, _ in done]}, prepare=True)
    return [(job, 0) for (job,) in conn.execute(_NARROW_CLAIM, {"ids": claim}, prepare=True)]


def backend_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def drive(url: str, ids: list, batch: int, step: Step, ticks: list[int], errors: list) -> None:
    """Claim and complete `ids`, `batch` at a time; add this backend's CPU ticks to `ticks`,
    or what went wrong to `errors`."""
    try:
        _drive(url, ids, batch, step, ticks)
    except BaseException as exc:
        errors.append(exc)


def _drive(url: str, ids: list, batch: int, step: Step, ticks: list[int]) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")  # as the worker's writer
        pid = conn.info.backend_pid
        start = backend_ticks(pid)
        done: list = []
        for first in range(0, len(ids) + batch, batch):
            with conn.transaction():
                done = step(conn, ids[first : first + batch], done)
        ticks.append(backend_ticks(pid) - start)


def shape(env: BenchEnv, args: argparse.Namespace, name: str, step: Step) -> dict[str, float]:
    url = env.settings.database_url.replace("+psycopg", "")
    with psycopg.connect(url, autocommit=True) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM jobs ORDER BY created_at")]
        conn.execute("VACUUM ANALYZE jobs")
    ticks: list[int] = []
    errors: list[BaseException] = []
    shares = [ids[n :: args.connections] for n in range(args.connections)]
    threads = [
        threading.Thread(target=drive, args=(url, share, args.batch, step, ticks, errors))
        for share in shares
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    if errors:
        raise errors[0]
    ms = 1000 * sum(ticks) / CLOCK_TICKS / len(ids)
    say(f"{name:20} PostgreSQL {ms:.3f} ms/job  ({len(ids) / seconds:,.0f} jobs/s)")
    return {"pgMsPerJob": round(ms, 3), "jobsPerSecond": round(len(ids) / seconds)}


def fresh_jobs(env: BenchEnv, n: int) -> None:
    with env.engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE jobs CASCADE"))
        conn.exec_driver_sql(_PENDING, {"n": n})


def measure(env: BenchEnv, args: argparse.Namespace) -> dict[str, Any]:
    say(f"{args.jobs} jobs, {args.connections} connections, batches of {args.batch}")
    results = {}
    fresh_jobs(env, args.jobs)
    results["store"] = shape(env, args, "store", work_step)
    with env.engine.begin() as conn:
        for index in _STATUS_INDEXES:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index}")
    fresh_jobs(env, args.jobs)
    results["noStatusIndexes"] = shape(env, args, "no status indexes", work_step)
    fresh_jobs(env, args.jobs)
    with env.engine.begin() as conn:
        conn.exec_driver_sql(_NARROW)
    results["narrowTable"] = shape(env, args, "narrow table", narrow_step)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000, help="jobs per shape (20000)")
    parser.add_argument("--batch", type=int, default=8, help="claims per transaction (8)")
    parser.add_argument("--connections", type=int, default=4, help="connections (4)")
    args = parser.parse_args()
    run("claimcost", measure, args, max_seconds=600)


if __name__ == "__main__":
    main()
