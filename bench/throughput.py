"""Throughput: how fast Warren takes in and runs no-op jobs, against plain Dramatiq.

    .venv/bin/python -m bench.throughput --jobs 20000 --processes 2 --threads 8

Warren: a `warren worker --processes P --threads T` runs first; then N `bench-noop` jobs are
enqueued with `Warren.submit` in batches of 1,000 (rows inserted, messages published with
publisher confirms, rows marked published).
- enqueue rate = N / the time `submit` took for all batches;
- drain rate = N / (enqueue start -> the moment all N rows are `completed`), from a thread that
  counts completed rows every 0.2 s from the enqueue start on, so workers drain while the
  batches are still coming.

Plain Dramatiq (the baseline, after Warren's worker has stopped): `python -m dramatiq
bench.plain:setup` with the same processes, threads and prefetch, on its own queue; N no-op
messages published one by one with `broker.enqueue` and publisher confirms, as Warren does;
drain until the actors have counted N runs (see `bench.plain`), polled every 0.2 s.

Plain Dramatiq publishing one message at a time is slower than its workers, so that drain rate
is bounded by its enqueue. A second phase, "backlog", takes enqueueing out: N jobs are queued
first, then the worker starts, and the rate is counted between 10 % and 90 % of the jobs done
(polled every 0.2 s), which leaves out the worker's start and its last stragglers.
"""

import argparse
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import harness, plain
from bench.harness import BenchEnv, BenchTimeout, say
from service.client import MAX_BATCH, Warren

POLL_SECONDS = 0.2


class DrainWatch(threading.Thread):
    """Polls `count()` every 0.2 s from its start; `finished_at` is the monotonic time of the
    first poll that counted `target` or more."""

    def __init__(self, count: Callable[[], int], target: int) -> None:
        super().__init__(name="drain-watch", daemon=True)
        self.count = count
        self.target = target
        self.seen = 0
        self.finished_at: float | None = None
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                self.seen = self.count()
                if self.seen >= self.target:
                    self.finished_at = time.monotonic()
                    return
                self._stop_event.wait(POLL_SECONDS)
        except BaseException as exc:
            self.error = exc

    def wait(self, timeout: float) -> float:
        """The finish time; raises `BenchTimeout` when not done within `timeout` seconds."""
        self.join(timeout)
        self._stop_event.set()
        if self.error is not None:
            raise self.error
        if self.finished_at is None:
            raise BenchTimeout(
                f"drained only {self.seen} of {self.target} within {timeout:g} s after enqueueing"
            )
        return self.finished_at


class RateWatch(threading.Thread):
    """Polls `count()` every 0.2 s until it reaches `target`; `rate()` is the jobs per second
    between the first polls that saw 10 % and 90 % of `target` done."""

    def __init__(self, count: Callable[[], int], target: int) -> None:
        super().__init__(name="rate-watch", daemon=True)
        self.count = count
        self.target = target
        self.samples: list[tuple[float, int]] = []

    def run(self) -> None:
        while not self.samples or self.samples[-1][1] < self.target:
            self.samples.append((time.monotonic(), self.count()))
            time.sleep(POLL_SECONDS)

    def rate(self, timeout: float) -> float:
        self.join(timeout)
        if self.is_alive():
            raise BenchTimeout(f"drained only {self.samples[-1][1]} of {self.target}")
        low = next(s for s in self.samples if s[1] >= self.target * 0.1)
        high = next(s for s in self.samples if s[1] >= self.target * 0.9)
        return round((high[1] - low[1]) / (high[0] - low[0]), 1)


def rates(jobs: int, started: float, enqueued: float, drained: float) -> dict[str, float]:
    return {
        "enqueueSeconds": round(enqueued - started, 3),
        "enqueuePerSecond": round(jobs / (enqueued - started), 1),
        "drainSeconds": round(drained - started, 3),
        "drainPerSecond": round(jobs / (drained - started), 1),
    }


# -- Warren -----------------------------------------------------------------------------------


def count_completed(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(sa.text("SELECT count(*) FROM jobs WHERE status = 'completed'"))


def status_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT status, count(*) FROM jobs GROUP BY status"))
        return dict(rows.all())


def timed_publishing(warren: Warren) -> list[float]:
    """Wrap this client's `publish_many` to add up the time spent publishing (the rest of
    `submit` is validation, the INSERT and the UPDATE that marks rows published)."""
    spent = [0.0]
    publish_many = warren.publisher.publish_many

    def timed(dispatches):
        started = time.monotonic()
        try:
            return publish_many(dispatches)
        finally:
            spent[0] += time.monotonic() - started

    warren.publisher.publish_many = timed
    return spent


def measure_warren(
    env: BenchEnv, jobs: int, processes: int, threads: int, timeout: float
) -> dict[str, float]:
    worker = env.start_worker(processes, threads)
    warren = env.client()
    publishing = timed_publishing(warren)
    bodies = [{"type": "bench-noop", "payload": {}}] * jobs
    watch = DrainWatch(lambda: count_completed(env.engine), jobs)

    started = time.monotonic()
    watch.start()
    for first in range(0, jobs, MAX_BATCH):
        warren.submit(bodies[first : first + MAX_BATCH])
    enqueued = time.monotonic()
    try:
        drained = watch.wait(timeout)
    except BenchTimeout as exc:
        raise BenchTimeout(f"{exc}; jobs by status: {status_counts(env.engine)}") from None
    worker.stop()
    result = rates(jobs, started, enqueued, drained)
    result["publishSeconds"] = round(publishing[0], 3)
    return result


def backlog_warren(env: BenchEnv, jobs: int, processes: int, threads: int, timeout: float) -> float:
    with env.engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE jobs CASCADE"))
    warren = env.client()
    for first in range(0, jobs, MAX_BATCH):
        warren.submit([{"type": "bench-noop", "payload": {}}] * min(MAX_BATCH, jobs - first))
    watch = RateWatch(lambda: count_completed(env.engine), jobs)
    watch.start()
    worker = env.start_worker(processes, threads)
    rate = watch.rate(timeout)
    worker.stop()
    return rate


# -- plain Dramatiq ---------------------------------------------------------------------------


def start_plain_worker(
    env: BenchEnv, name: str, queue: str, count_dir: Path, processes: int, threads: int
) -> harness.Process:
    """`python -m dramatiq bench.plain:setup` on `queue`, with the prefetch `warren worker`
    sets."""
    argv = [sys.executable, "-m", "dramatiq", "bench.plain:setup"]
    argv += ["--processes", str(processes), "--threads", str(threads)]
    return env.start(
        name,
        argv,
        BENCH_PLAIN_QUEUE=queue,
        BENCH_PLAIN_COUNT_DIR=str(count_dir),
        dramatiq_queue_prefetch=str(threads),
    )


def measure_plain(
    env: BenchEnv, jobs: int, processes: int, threads: int, timeout: float
) -> dict[str, float]:
    queue = f"{env.name}.plain"
    env.add_queue(queue)
    count_dir = env.workdir / "plain-counts"
    count_dir.mkdir()
    worker = start_plain_worker(env, "plain-worker", queue, count_dir, processes, threads)
    env.wait_for_consumers([queue], processes, worker)
    broker = plain.sender(harness.BROKER_URL)
    try:
        broker.declare_queue(queue, ensure=True)
        watch = DrainWatch(lambda: plain.completed(count_dir), jobs)
        started = time.monotonic()
        watch.start()
        for _ in range(jobs):
            broker.enqueue(plain.message(queue))
        enqueued = time.monotonic()
        drained = watch.wait(timeout)
    finally:
        broker.close()
    worker.stop()
    return rates(jobs, started, enqueued, drained)


def backlog_plain(env: BenchEnv, jobs: int, processes: int, threads: int, timeout: float) -> float:
    queue = f"{env.name}.plain-backlog"
    env.add_queue(queue)
    count_dir = env.workdir / "plain-backlog-counts"
    count_dir.mkdir()
    broker = plain.sender(harness.BROKER_URL)
    try:
        broker.declare_queue(queue, ensure=True)
        for _ in range(jobs):
            broker.enqueue(plain.message(queue))
    finally:
        broker.close()
    watch = RateWatch(lambda: plain.completed(count_dir), jobs)
    watch.start()
    worker = start_plain_worker(env, "plain-backlog-worker", queue, count_dir, processes, threads)
    rate = watch.rate(timeout)
    worker.stop()
    return rate


# -- the run ----------------------------------------------------------------------------------


def show(label: str, figures: dict[str, float]) -> None:
    say(
        f"{label:<8} enqueue {figures['enqueuePerSecond']:>9.1f} jobs/s "
        f"({figures['enqueueSeconds']:.2f} s)   drain {figures['drainPerSecond']:>9.1f} jobs/s "
        f"({figures['drainSeconds']:.2f} s)"
    )


def measure(env: BenchEnv, args: argparse.Namespace) -> dict[str, Any]:
    shape = (args.jobs, args.processes, args.threads, args.drain_timeout)
    say(f"{args.jobs} no-op jobs, worker {args.processes} processes x {args.threads} threads")
    warren = measure_warren(env, *shape)
    show("warren", warren)
    say(f"         of which publishing (in batches of 1,000): {warren['publishSeconds']:.2f} s")
    baseline = measure_plain(env, *shape)
    show("plain", baseline)
    ratio = {
        "enqueue": round(warren["enqueuePerSecond"] / baseline["enqueuePerSecond"], 3),
        "drain": round(warren["drainPerSecond"] / baseline["drainPerSecond"], 3),
    }
    say(f"warren/plain: enqueue {ratio['enqueue']:.2f}, drain {ratio['drain']:.2f}")
    backlog = {
        "warren": backlog_warren(env, *shape),
        "plain": backlog_plain(env, *shape),
    }
    ratio["backlog"] = round(backlog["warren"] / backlog["plain"], 3)
    say(
        f"backlog  drain warren {backlog['warren']:.1f} jobs/s, plain {backlog['plain']:.1f} "
        f"jobs/s: warren/plain {ratio['backlog']:.2f}"
    )
    return {
        "jobs": args.jobs,
        "processes": args.processes,
        "threads": args.threads,
        "warren": warren,
        "plain": baseline,
        "backlog": backlog,
        "ratio": ratio,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20000, help="jobs to run (default 20000)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per process (default 8)")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=600,
        help="seconds to wait for a drain after enqueueing (600)",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=1800, help="time limit of the whole run (1800)"
    )
    args = parser.parse_args()
    harness.run("throughput", measure, args, args.max_seconds)


if __name__ == "__main__":
    main()
