"""Reads and enqueues on a large jobs table: `GET /jobs` with each filter, cursor paging,
`GET /stats`, and `POST /jobs`.

    .venv/bin/python -m bench.scale --rows 1000000

The table is filled by one `INSERT ... SELECT FROM generate_series` (seeded random, so every run
has the same mix), then VACUUMed and ANALYZEd, as autovacuum would have
(so that it does not run during the measurements):
- type: a third each of `send-email`, `webhook-delivery`, `bench-noop`;
- status: 80 % completed, 8 % pending, 6 % failed, 4 % cancelled, 2 % processing;
- priority: 1-10 uniformly; created_at: spread evenly over the last 30 days;
- payload: `send-email` rows `{"to": "user<0-999>@example.com", "body": "Thank you ...", ...}`
  (so one address matches about 1 row in 3,000, the body 1 in 3), `webhook-delivery` rows
  `{"url": ".../hooks/<0-499>", "body": {...}}` (1 in 1,500 each), `bench-noop` `{}`.
  "payload.to (sampled)" filters by an address found in the payloads ANALYZE kept, which
  PostgreSQL estimates to match a hundred times as often as the others. `--note-bytes 8000`
  adds 8 kB of text to each `send-email` payload, as a long email body would: PostgreSQL
  keeps no statistics of values over a kilobyte, and each payload tested is read from TOAST.

Then a `warren api` (2 processes x 8 threads) answers `--requests` sequential requests per case
(after 3 uncounted ones); the table shows p50/p95/max and how many jobs a page returned.
"Cursor paging" walks 20 pages following `nextCursor`, as many times as it takes to make
`--requests` requests, and measures every page. Last, `--enqueues` sequential `POST /jobs`
from a checkpoint on (after as many uncounted), with PostgreSQL's CPU and WAL per enqueue.
The ids are time-ordered (UUIDv7, from `created_at`), as Warren makes them.
"""

import argparse
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from bench import costs, harness
from bench.harness import BenchEnv, latency_summary, say

WARMUP = 3
CURSOR_PAGES = 20

FILL = """
INSERT INTO jobs (id, type, status, priority, payload, attempts, max_attempts, timeout_seconds,
                  created_at, updated_at, published_at, started_at, completed_at)
SELECT encode(set_byte(stamped, 6, (get_byte(stamped, 6) & 15) | 112), 'hex')::uuid,
       kind, status, priority, payload,
       CASE WHEN status = 'pending' THEN 0 ELSE 1 END, 3, 300,
       created, created, created,
       CASE WHEN status = 'pending' THEN NULL ELSE created END,
       CASE WHEN status IN ('completed', 'failed', 'cancelled') THEN created END
FROM (
    SELECT (ARRAY['send-email', 'webhook-delivery', 'bench-noop'])[1 + (i % 3)] AS kind,
           CASE WHEN r < 0.80 THEN 'completed' WHEN r < 0.88 THEN 'pending'
                WHEN r < 0.94 THEN 'failed' WHEN r < 0.98 THEN 'cancelled'
                ELSE 'processing' END AS status,
           1 + floor(random() * 10)::int AS priority,
           CASE i % 3
               WHEN 0 THEN jsonb_build_object(
                   'to', 'user' || floor(random() * 1000)::int || '@example.com',
                   'subject', 'Order ' || i, 'body', 'Thank you for your order.')
                   || CASE WHEN :note_bytes > 0 THEN jsonb_build_object('note', (
                          SELECT string_agg(md5(i || '.' || n), '')
                          FROM generate_series(1, :note_bytes / 32) AS n)) ELSE '{}' END
               WHEN 1 THEN jsonb_build_object(
                   'url', 'https://example.com/hooks/' || (i % 500),
                   'body', jsonb_build_object('event', 'paid', 'n', i))
               ELSE '{}'::jsonb
           END AS payload,
           created,
           overlay(uuid_send(gen_random_uuid())
                   placing substring(int8send((extract(epoch FROM created) * 1000)::bigint) FROM 3)
                   FROM 1 FOR 6) AS stamped
    FROM (SELECT i, random() AS r,
                 now() - make_interval(secs => (:rows - i) * 30 * 86400.0 / :rows) AS created
            FROM generate_series(1, :rows) AS i) AS numbers
) AS generated
"""


def fill(env: BenchEnv, rows: int, note_bytes: int) -> float:
    """Insert `rows` generated jobs, VACUUM and ANALYZE; returns the seconds it took."""
    started = time.monotonic()
    with env.engine.begin() as conn:
        conn.execute(sa.text("SELECT setseed(0.42)"))
        conn.execute(sa.text(FILL), {"rows": rows, "note_bytes": note_bytes})
    outside_a_transaction(env, "VACUUM ANALYZE jobs")
    return time.monotonic() - started


def outside_a_transaction(env: BenchEnv, statement: str) -> None:
    """Run `statement` (a VACUUM, a CHECKPOINT) on a connection in autocommit."""
    with env.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(statement))


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


#: An address of the payloads PostgreSQL's ANALYZE kept: it estimates that address's filter
#: from them, so it reads as 1 job in 100 instead of 1 in 10,000.
SAMPLED = """
SELECT value ->> 'to' FROM pg_stats, unnest(histogram_bounds::text::jsonb[]) AS value
WHERE tablename = 'jobs' AND attname = 'payload' AND value ? 'to'
ORDER BY value ->> 'to' LIMIT 1
"""


def sampled_address(env: BenchEnv) -> str:
    """An address in PostgreSQL's sample of the payloads (`SAMPLED`); another if none is."""
    with env.engine.connect() as conn:
        return conn.scalar(sa.text(SAMPLED)) or "user7@example.com"


def cases(sampled: str) -> list[tuple[str, str, dict[str, str]]]:
    """(name, path, query parameters) of each measured request."""
    now = datetime.now(UTC)
    return [
        ("no filter", "/jobs", {}),
        ("status=failed", "/jobs", {"status": "failed"}),
        ("status=completed", "/jobs", {"status": "completed"}),
        ("type=webhook-delivery", "/jobs", {"type": "webhook-delivery"}),
        ("priority=high", "/jobs", {"priority": "high"}),
        ("createdAfter=-1h", "/jobs", {"createdAfter": iso(now - timedelta(hours=1))}),
        ("createdBefore=-29d", "/jobs", {"createdBefore": iso(now - timedelta(days=29))}),
        ("status+type", "/jobs", {"status": "failed", "type": "send-email"}),
        ("payload.to (1 in 3000)", "/jobs", {"payload.to": "user42@example.com"}),
        ("payload.to (sampled)", "/jobs", {"payload.to": sampled}),
        ("payload.to (no match)", "/jobs", {"payload.to": "nobody@example.com"}),
        ("payload.url (1 in 1500)", "/jobs", {"payload.url": "https://example.com/hooks/7"}),
        ("payload.body (1 in 3)", "/jobs", {"payload.body": "Thank you for your order."}),
        ("limit=500", "/jobs", {"limit": "500"}),
        ("offset=10000", "/jobs", {"offset": "10000"}),
        ("GET /stats", "/stats", {}),
    ]


def timed_get(client: httpx.Client, path: str, params: dict[str, str]) -> tuple[float, dict]:
    started = time.monotonic()
    response = client.get(path, params=params)
    elapsed = time.monotonic() - started
    response.raise_for_status()
    return elapsed, response.json()


def measure_case(
    client: httpx.Client, path: str, params: dict[str, str], requests: int
) -> dict[str, Any]:
    """`requests` sequential GETs of the same URL, after `WARMUP` uncounted ones."""
    for _ in range(WARMUP):
        timed_get(client, path, params)
    durations, body = [], {}
    for _ in range(requests):
        elapsed, body = timed_get(client, path, params)
        durations.append(elapsed)
    return {**latency_summary(durations), "returned": body.get("count", "-")}


def measure_paging(client: httpx.Client, requests: int) -> dict[str, Any]:
    """Walk `CURSOR_PAGES` pages by `nextCursor`, enough times for `requests` pages."""
    timed_get(client, "/jobs", {})
    durations, returned = [], 0
    for _ in range(math.ceil(requests / CURSOR_PAGES)):
        params: dict[str, str] = {}
        for _ in range(CURSOR_PAGES):
            elapsed, body = timed_get(client, "/jobs", params)
            durations.append(elapsed)
            returned = body["count"]
            if not body["nextCursor"]:
                break
            params = {"cursor": body["nextCursor"]}
    return {**latency_summary(durations), "returned": returned}


def measure_enqueues(env: BenchEnv, client: httpx.Client, requests: int) -> dict[str, Any]:
    """`requests` sequential `POST /jobs` of a `bench-noop` job, from a checkpoint on, with
    what each costs PostgreSQL (CPU and WAL): every page an insert touches first after a
    checkpoint is written to the WAL whole, so the ids' order shows here. As many uncounted
    ones go first: after the VACUUM, new rows fill the room left in the table's pages, a
    page each, which a table sees once."""
    body = {"type": "bench-noop", "payload": {}}
    for _ in range(requests):
        client.post("/jobs", json=body).raise_for_status()
    outside_a_transaction(env, "CHECKPOINT")
    before = costs.snapshot(env.engine, [])
    durations = []
    for _ in range(requests):
        started = time.monotonic()
        client.post("/jobs", json=body).raise_for_status()
        durations.append(time.monotonic() - started)
    spent = costs.per_job(before, costs.snapshot(env.engine, []), requests)
    return {
        **latency_summary(durations),
        "returned": "-",
        "pgMsPerEnqueue": spent["pgMsPerJob"],
        "walBytesPerEnqueue": spent["walBytesPerJob"],
    }


def show(results: dict[str, dict[str, Any]]) -> None:
    say(f"{'case':<26} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9} {'jobs':>6}")
    for name, r in results.items():
        say(
            f"{name:<26} {r['p50Ms']:9.1f} {r['p95Ms']:9.1f} {r['maxMs']:9.1f} {r['returned']!s:>6}"
        )


def measure(env: BenchEnv, args: argparse.Namespace) -> dict[str, Any]:
    seconds = fill(env, args.rows, args.note_bytes)
    say(f"{args.rows} rows inserted, vacuumed and analyzed in {seconds:.1f} s")
    api = env.start_api(workers=2, threads=8)
    sampled = sampled_address(env)
    say(f"warren api on {api.url}; {args.requests} requests per case; sampled: {sampled}")
    results: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=api.url, timeout=120) as client:
        for name, path, params in cases(sampled):
            results[name] = measure_case(client, path, params, args.requests)
        results[f"cursor paging x{CURSOR_PAGES}"] = measure_paging(client, args.requests)
        enqueues = measure_enqueues(env, client, args.enqueues)
    show(results | {"POST /jobs": enqueues})
    say(
        f"POST /jobs x{args.enqueues} after a checkpoint: PostgreSQL "
        f"{enqueues['pgMsPerEnqueue']:.3f} ms and {enqueues['walBytesPerEnqueue']:,.0f} B of WAL "
        "per enqueue"
    )
    return {
        "rows": args.rows,
        "noteBytes": args.note_bytes,
        "fillSeconds": round(seconds, 1),
        "requests": args.requests,
        "cases": results,
        "enqueues": enqueues,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="jobs in the table (1e6)")
    parser.add_argument("--requests", type=int, default=50, help="requests per case (50)")
    parser.add_argument(
        "--note-bytes",
        type=int,
        default=0,
        help="text added to each send-email payload, incompressible, stored out of line (0)",
    )
    parser.add_argument(
        "--enqueues", type=int, default=5000, help="POST /jobs after the reads (5000)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=1800, help="time limit of the whole run (1800)"
    )
    args = parser.parse_args()
    harness.run("scale", measure, args, args.max_seconds)


if __name__ == "__main__":
    main()
