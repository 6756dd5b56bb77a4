"""Worker memory: does a backlog of far-future jobs cost an idle worker anything?

    .venv/bin/python -m bench.memory --jobs 100000

A `warren worker --processes 1 --threads 8` starts with no jobs; once it consumes its queues
and has settled (`--settle` seconds), its memory is the sum of VmRSS (from /proc/<pid>/status)
over Dramatiq's main process and all its descendants (the worker process, multiprocessing's
helpers). Then `--jobs` `bench-noop` jobs with `delaySeconds` 86,400 (a day ahead, far beyond
the 10-minute delay horizon, so they stay rows and no message is published) are enqueued with
`Warren.submit` in batches of 1,000; after `--wait` seconds the memory is measured again.
The RabbitMQ queue depths and the count of published rows are reported to confirm that no
message reached the worker. `--delay-seconds` below the horizon (600) shows the other case:
messages on the `.DQ` delay queue, which Dramatiq workers prefetch and hold until due.
"""

import argparse
import time
from typing import Any

import sqlalchemy as sa

from bench import harness
from bench.harness import BenchEnv, Process, say
from service.client import MAX_BATCH


def tree_rss(worker: Process) -> dict[str, Any]:
    """Total VmRSS of the worker's process tree in MiB, with the per-process breakdown."""
    processes = worker.rss()
    return {
        "totalMiB": round(sum(kib for _, kib in processes.values()) / 1024, 1),
        "processes": [
            {"pid": pid, "rssMiB": round(kib / 1024, 1), "command": command[:120]}
            for pid, (command, kib) in sorted(processes.items())
        ],
    }


def enqueue_delayed(env: BenchEnv, jobs: int, delay_seconds: float) -> float:
    """Submit `jobs` no-op jobs due in `delay_seconds`; returns the seconds it took."""
    warren = env.client()
    body = {"type": "bench-noop", "payload": {}, "delaySeconds": delay_seconds}
    started = time.monotonic()
    for first in range(0, jobs, MAX_BATCH):
        warren.submit([body] * min(MAX_BATCH, jobs - first))
    return time.monotonic() - started


def published_rows(env: BenchEnv) -> int:
    with env.engine.connect() as conn:
        return conn.scalar(sa.text("SELECT count(*) FROM jobs WHERE published_at IS NOT NULL"))


def queued_messages(env: BenchEnv) -> dict[str, int]:
    """Messages ready per queue of this run that holds any (unacked prefetched ones are not
    counted by RabbitMQ as ready)."""
    info = harness.queue_info(env.queues)
    return {name: entry[0] for name, entry in info.items() if entry and entry[0]}


def measure(env: BenchEnv, args: argparse.Namespace) -> dict[str, Any]:
    worker = env.start_worker(processes=1, threads=8)
    time.sleep(args.settle)
    before = tree_rss(worker)
    say(f"idle worker (1 process x 8 threads): {before['totalMiB']:.1f} MiB RSS")
    for entry in before["processes"]:
        say(f"  pid {entry['pid']:>7} {entry['rssMiB']:7.1f} MiB  {entry['command'][:70]}")

    seconds = enqueue_delayed(env, args.jobs, args.delay_seconds)
    say(
        f"enqueued {args.jobs} jobs due in {args.delay_seconds:g} s in {seconds:.1f} s "
        f"({args.jobs / seconds:.0f} jobs/s); waiting {args.wait:g} s"
    )
    time.sleep(args.wait)
    after = tree_rss(worker)
    published = published_rows(env)
    queued = queued_messages(env)
    growth = round(after["totalMiB"] - before["totalMiB"], 1)
    say(
        f"after: {after['totalMiB']:.1f} MiB RSS, difference {growth:+.1f} MiB; "
        f"rows published {published}, messages queued {queued or 0}"
    )
    return {
        "jobs": args.jobs,
        "delaySeconds": args.delay_seconds,
        "enqueueSeconds": round(seconds, 2),
        "before": before,
        "after": after,
        "differenceMiB": growth,
        "publishedRows": published,
        "queuedMessages": queued,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="delayed jobs (100000)")
    parser.add_argument(
        "--delay-seconds", type=float, default=86400, help="how far ahead they are due (86400)"
    )
    parser.add_argument("--settle", type=float, default=5, help="seconds before measuring (5)")
    parser.add_argument("--wait", type=float, default=10, help="seconds after enqueueing (10)")
    parser.add_argument(
        "--max-seconds", type=float, default=900, help="time limit of the whole run (900)"
    )
    args = parser.parse_args()
    harness.run("memory", measure, args, args.max_seconds)


if __name__ == "__main__":
    main()
