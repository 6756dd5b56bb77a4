"""Throughput: how fast Warren takes in and runs no-op jobs, against plain Dramatiq and Celery.

    .venv/bin/python -m bench.throughput --jobs 20000 --processes 2 --threads 8
    .venv/bin/python -m bench.throughput --jobs 5000 --phases backlog   # just the backlog
    .venv/bin/python -m bench.throughput --phases backlog --systems warren,celery
    .venv/bin/python -m bench.throughput --phases backlog --rounds 5   # medians of 5 turns each

Two phases (`--phases`, default both) and three systems (`--systems`, default all), each
worker of P processes x T threads:

"live": enqueue while the workers run.
- Warren: a `warren worker --processes P --threads T` runs first; then N `bench-noop` jobs are
  enqueued with `Warren.submit` in batches of 1,000 (rows inserted, messages published with
  publisher confirms, rows marked published). Enqueue rate = N / the time `submit` took for
  all batches; drain rate = N / (enqueue start -> the moment all N rows are `completed`), from
  a thread that counts completed rows every 0.2 s from the enqueue start on, so workers drain
  while the batches are still coming.
- Plain Dramatiq (after Warren's worker has stopped): `python -m dramatiq bench.plain:setup`
  with the same processes, threads and prefetch, on its own queue; N no-op messages published
  one by one with `broker.enqueue` and publisher confirms, as Warren does; drain until the
  actors have counted N runs (see `bench.plain`), polled every 0.2 s. Publishing one message
  at a time is slower than its workers, so that drain rate is bounded by its enqueue.

"backlog": enqueueing taken out. N jobs are queued first (not timed), then the workers start,
and the rate is counted between the first polls (every 0.2 s) that saw 10 % and 90 % of the
jobs done, which leaves out the worker's start and its last stragglers. The systems take turns:
- Warren: `Warren.submit` in batches, then `warren worker`; done = rows `completed`;
- plain Dramatiq: `broker.enqueue` one by one, then `dramatiq bench.plain:setup`; done = runs
  counted by its actor;
- Celery 5 (`bench.celeryapp`): `apply_async` on one connection, then P separate `celery
  worker -P threads -c T` processes, late acks, each prefetching 4T (Celery's default;
  `warren worker` and plain Dramatiq hold 8T); done = runs counted by its task, as plain Dramatiq's.
Each also prints its costs per job over the same window, 10 % to 90 % (`bench.costs`): CPU of
all PostgreSQL processes (and of the run's database's backends alone), of the worker's process
tree and of RabbitMQ, and WAL bytes. PostgreSQL, RabbitMQ and WAL are the whole server's: what
others run on them meanwhile is counted too, which plain Dramatiq's and Celery's figures (they
use no database) show. Warren's PostgreSQL figures include the watch's own reads of the kept
counts (those `GET /stats` reads), five a second. Then the ratios warren/celery and
warren/plain of the rates.
With `--rounds N`, the systems take N turns each, in an order that alternates (warren, plain,
celery, then celery, plain, warren): a turn takes seconds, and the load of a shared machine
changes over minutes, so a single turn of each can read 0.8 or 1.3 for the same code. Each
round's ratios are printed, then their medians.
"""

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import costs, harness, plain
from bench.counting import counted
from bench.harness import BenchEnv, BenchError, BenchTimeout, say
from service.client import MAX_BATCH, Warren
from service.models import JobStatus
from service.settings import Settings
from service.store import counts
from service.worker import prefetch_env

#: `warren worker`'s messages per thread; the bench's children never inherit `WARREN_*`.
PREFETCH: int = Settings.model_fields["worker_prefetch"].default

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
    between the first polls that saw 10 % and 90 % of `target` done. With a `probe`, calls it
    right after each of those two polls and keeps what it returns (`costs.Snapshot`s)."""

    def __init__(
        self,
        count: Callable[[], int],
        target: int,
        probe: Callable[[], costs.Snapshot] | None = None,
    ) -> None:
        super().__init__(name="rate-watch", daemon=True)
        self.count = count
        self.target = target
        self.probe = probe
        self.samples: list[tuple[float, int]] = []
        self.low: tuple[tuple[float, int], costs.Snapshot | None] | None = None
        self.high: tuple[tuple[float, int], costs.Snapshot | None] | None = None
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                sample = (time.monotonic(), self.count())
                self.samples.append(sample)
                if self.low is None and sample[1] >= self.target * 0.1:
                    self.low = (sample, self.probe() if self.probe else None)
                if self.high is None and sample[1] >= self.target * 0.9:
                    self.high = (sample, self.probe() if self.probe else None)
                if sample[1] >= self.target:
                    return
                self._stop_event.wait(POLL_SECONDS)
        except BaseException as exc:
            self.error = exc

    def rate(self, timeout: float) -> float:
        self.join(timeout)
        self._stop_event.set()
        if self.error is not None:
            raise self.error
        if self.is_alive() or self.low is None or self.high is None:
            seen = self.samples[-1][1] if self.samples else 0
            raise BenchTimeout(f"drained only {seen} of {self.target} within {timeout:g} s")
        (low_at, low_done), (high_at, high_done) = self.low[0], self.high[0]
        if high_at <= low_at:
            raise BenchError(
                f"the drain went from under 10 % to 90 % of {self.target} jobs within one poll "
                f"({POLL_SECONDS} s): too fast to measure, run more --jobs"
            )
        return round((high_done - low_done) / (high_at - low_at), 1)

    def cost(self) -> dict[str, Any]:
        """Costs per job between the two probes (after `rate()`)."""
        assert self.low is not None and self.high is not None
        (_, low_done), start = self.low
        (_, high_done), end = self.high
        assert start is not None and end is not None
        return costs.per_job(start, end, high_done - low_done)


def rates(jobs: int, started: float, enqueued: float, drained: float) -> dict[str, float]:
    return {
        "enqueueSeconds": round(enqueued - started, 3),
        "enqueuePerSecond": round(jobs / (enqueued - started), 1),
        "drainSeconds": round(drained - started, 3),
        "drainPerSecond": round(jobs / (drained - started), 1),
    }


# -- Warren -----------------------------------------------------------------------------------


def empty(engine: sa.Engine) -> None:
    """No jobs and no counts, so that the watch counts only this turn's jobs."""
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE jobs, job_counts, job_count_deltas CASCADE"))


def count_completed(engine: sa.Engine) -> int:
    """Completed jobs, from the kept counts that `GET /stats` reads (`store.counts`): five
    reads a second of their few delta rows cost PostgreSQL far less than five counts of the
    table's rows, a cost that neither baseline pays."""
    with engine.connect() as conn:
        kept = counts.read(conn)
    return sum(by_status.get(JobStatus.COMPLETED, 0) for by_status in kept.values())


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
    empty(env.engine)
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


def drain_backlog(
    env: BenchEnv,
    jobs: int,
    timeout: float,
    count: Callable[[], int],
    start_workers: Callable[[list[int]], list[harness.Process]],
) -> dict[str, Any]:
    """Start the workers on a queued backlog of `jobs` and watch them drain it: the rate
    between 10 % and 90 % done, and the costs per job over the same window.
    `start_workers(pids)` starts the worker processes, adds each one's pid to `pids` as soon as
    it has started (the probes measure those process trees), and returns them once they
    consume."""
    worker_pids: list[int] = []
    watch = RateWatch(count, jobs, probe=lambda: costs.snapshot(env.engine, worker_pids))
    watch.start()
    workers = start_workers(worker_pids)
    rate = watch.rate(timeout)
    for worker in workers:
        worker.stop()
    return {"drainPerSecond": rate, "cost": watch.cost()}


def backlog_warren(
    env: BenchEnv, jobs: int, processes: int, threads: int, timeout: float
) -> dict[str, Any]:
    empty(env.engine)
    warren = env.client()
    started = time.monotonic()
    for first in range(0, jobs, MAX_BATCH):
        warren.submit([{"type": "bench-noop", "payload": {}}] * min(MAX_BATCH, jobs - first))
    queued = time.monotonic() - started

    def start_workers(pids: list[int]) -> list[harness.Process]:
        worker = env.start_worker(processes, threads, wait=False)
        pids.append(worker.pid)
        env.wait_for_consumers(env.tier_queues, processes, worker)
        return [worker]

    try:
        result = drain_backlog(
            env, jobs, timeout, lambda: count_completed(env.engine), start_workers
        )
    except BenchTimeout as exc:
        raise BenchTimeout(f"{exc}; jobs by status: {status_counts(env.engine)}") from None
    return {**result, "queueSeconds": round(queued, 3)}


# -- plain Dramatiq ---------------------------------------------------------------------------


def start_plain_worker(
    env: BenchEnv, name: str, queue: str, count_dir: Path, processes: int, threads: int
) -> harness.Process:
    """`python -m dramatiq bench.plain:setup` on `queue`, with the prefetch `warren worker`
    sets (`worker_prefetch` messages per thread)."""
    argv = [sys.executable, "-m", "dramatiq", "bench.plain:setup"]
    argv += ["--processes", str(processes), "--threads", str(threads)]
    return env.start(
        name,
        argv,
        BENCH_PLAIN_QUEUE=queue,
        BENCH_PLAIN_COUNT_DIR=str(count_dir),
        **prefetch_env(threads, PREFETCH),
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


def backlog_plain(
    env: BenchEnv, jobs: int, processes: int, threads: int, timeout: float
) -> dict[str, Any]:
    queue = f"{env.name}.plain-backlog"
    env.add_queue(queue)
    count_dir = Path(tempfile.mkdtemp(prefix="plain-backlog-counts-", dir=env.workdir))
    broker = plain.sender(harness.BROKER_URL)
    started = time.monotonic()
    try:
        broker.declare_queue(queue, ensure=True)
        for _ in range(jobs):
            broker.enqueue(plain.message(queue))
    finally:
        broker.close()
    queued = time.monotonic() - started

    def start_workers(pids: list[int]) -> list[harness.Process]:
        worker = start_plain_worker(
            env, "plain-backlog-worker", queue, count_dir, processes, threads
        )
        pids.append(worker.pid)
        env.wait_for_consumers([queue], processes, worker)
        return [worker]

    result = drain_backlog(env, jobs, timeout, lambda: plain.completed(count_dir), start_workers)
    return {**result, "queueSeconds": round(queued, 3)}


# -- Celery -----------------------------------------------------------------------------------


def celery_argv(index: int, queue: str, threads: int) -> list[str]:
    """One `celery worker` process: `threads` threads on `queue` (see `bench.celeryapp`)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "bench.celeryapp",
        "worker",
        "--pool",
        "threads",
        "--concurrency",
        str(threads),
        "--hostname",
        f"bench{index}@%h",
        "--queues",
        queue,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        "WARNING",
    ]


def backlog_celery(
    env: BenchEnv, jobs: int, processes: int, threads: int, timeout: float
) -> dict[str, Any]:
    """Celery's drain of the same backlog: `jobs` no-op tasks published on one connection
    (no publisher confirms: only the drain is timed, and the queue is checked to hold them
    all before any worker starts), then `processes` separate `celery worker` processes of
    `threads` threads each."""
    from bench import celeryapp  # Celery is installed only with the `bench` extra

    queue = f"{env.name}.celery"
    env.add_queue(queue, companions=False)
    env.add_exchange(queue)
    count_dir = Path(tempfile.mkdtemp(prefix="celery-counts-", dir=env.workdir))
    app = celeryapp.make_app(harness.BROKER_URL, queue)
    task = app.tasks[celeryapp.TASK_NAME]
    started = time.monotonic()
    try:
        with app.producer_or_acquire() as producer:
            for _ in range(jobs):
                task.apply_async(producer=producer)
    finally:
        app.close()
    queued = time.monotonic() - started
    harness.wait_until(
        lambda: (harness.queue_info([queue])[queue] or (0, 0))[0] >= jobs,
        60,
        f"{jobs} Celery messages in {queue}",
        interval=0.2,
    )

    def start_workers(pids: list[int]) -> list[harness.Process]:
        workers = []
        for index in range(1, processes + 1):
            worker = env.start(
                f"celery-worker-{index}",
                celery_argv(index, queue, threads),
                BENCH_CELERY_QUEUE=queue,
                BENCH_CELERY_COUNT_DIR=str(count_dir),
            )
            pids.append(worker.pid)
            workers.append(worker)
        env.wait_for_consumers([queue], processes, *workers)
        return workers

    result = drain_backlog(env, jobs, timeout, lambda: counted(count_dir), start_workers)
    return {**result, "queueSeconds": round(queued, 3)}


# -- the run ----------------------------------------------------------------------------------


def show(label: str, figures: dict[str, float]) -> None:
    say(
        f"{label:<8} enqueue {figures['enqueuePerSecond']:>9.1f} jobs/s "
        f"({figures['enqueueSeconds']:.2f} s)   drain {figures['drainPerSecond']:>9.1f} jobs/s "
        f"({figures['drainSeconds']:.2f} s)"
    )


PHASES = ("live", "backlog")
SYSTEMS = ("warren", "plain", "celery")
BACKLOG = {"warren": backlog_warren, "plain": backlog_plain, "celery": backlog_celery}


def choice_list(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    """An argparse type: comma-separated names among `allowed`, in `allowed`'s order."""

    def parse(value: str) -> list[str]:
        names = {part.strip() for part in value.split(",") if part.strip()}
        unknown = names - set(allowed)
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"comma-separated names among {', '.join(allowed)}; got {value!r}"
            )
        return [name for name in allowed if name in names]

    return parse


def measure_live(env: BenchEnv, args: argparse.Namespace) -> dict[str, Any]:
    """Enqueue while the workers run: Warren's batches against plain Dramatiq's `send`."""
    shape = (args.jobs, args.processes, args.threads, args.drain_timeout)
    results: dict[str, Any] = {}
    if "warren" in args.systems:
        results["warren"] = warren = measure_warren(env, *shape)
        show("warren", warren)
        say(f"         of which publishing (in batches of 1,000): {warren['publishSeconds']:.2f} s")
    if "plain" in args.systems:
        results["plain"] = measure_plain(env, *shape)
        show("plain", results["plain"])
    if "warren" in results and "plain" in results:
        warren, baseline = results["warren"], results["plain"]
        results["ratio"] = ratio = {
            "enqueue": round(warren["enqueuePerSecond"] / baseline["enqueuePerSecond"], 3),
            "drain": round(warren["drainPerSecond"] / baseline["drainPerSecond"], 3),
        }
        say(f"warren/plain: enqueue {ratio['enqueue']:.2f}, drain {ratio['drain']:.2f}")
    return results


def measure_backlog(env: BenchEnv, args: argparse.Namespace) -> dict[str, Any]:
    """Queue first, then start the workers: each system's drain rate and costs per job, in
    `--rounds` rounds whose order alternates (warren, plain, celery, then celery, plain,
    warren), so that a slow spell of a shared machine falls on every system alike. With more
    than one round, the ratios are each round's, and their medians."""
    shape = (args.jobs, args.processes, args.threads, args.drain_timeout)
    say(
        f"backlog: {args.jobs} jobs queued, then the workers start; rate and costs between "
        f"10 % and 90 % done; {args.rounds} round(s)"
    )
    rounds = []
    for index in range(args.rounds):
        systems: dict[str, Any] = {}
        for system in args.systems if index % 2 == 0 else reversed(args.systems):
            systems[system] = figures = BACKLOG[system](env, *shape)
            say(
                f"backlog  {system:<7}{figures['drainPerSecond']:>9,.0f} jobs/s  "
                f"{costs.describe(figures['cost'])}"
            )
        ratio = backlog_ratios(systems)
        if ratio:
            say("backlog  " + "  ".join(f"{name} {value:.2f}" for name, value in ratio.items()))
        rounds.append({"systems": systems, "ratio": ratio})
    if len(rounds) == 1:
        return rounds[0]
    medians = {
        name: round(statistics.median(r["ratio"][name] for r in rounds), 3)
        for name in rounds[0]["ratio"]
    }
    for name, median in medians.items():
        each = ", ".join(f"{r['ratio'][name]:.2f}" for r in rounds)
        say(f"backlog  {name} over {len(rounds)} rounds: median {median:.2f} ({each})")
    return {"rounds": rounds, "ratio": medians}


def backlog_ratios(systems: dict[str, Any]) -> dict[str, float]:
    """warren/celery and warren/plain of the drain rates, for the systems that ran."""
    return {
        f"warren/{other}": round(
            systems["warren"]["drainPerSecond"] / systems[other]["drainPerSecond"], 3
        )
        for other in ("celery", "plain")
        if "warren" in systems and other in systems
    }


def measure(env: BenchEnv, args: argparse.Namespace) -> dict[str, Any]:
    say(
        f"{args.jobs} no-op jobs, worker {args.processes} processes x {args.threads} threads; "
        f"phases {', '.join(args.phases)}; systems {', '.join(args.systems)}"
    )
    results: dict[str, Any] = {
        "jobs": args.jobs,
        "processes": args.processes,
        "threads": args.threads,
        "phases": args.phases,
        "systems": args.systems,
    }
    if "live" in args.phases:
        results["live"] = measure_live(env, args)
    if "backlog" in args.phases:
        results["backlog"] = measure_backlog(env, args)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20000, help="jobs to run (default 20000)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per process (default 8)")
    parser.add_argument(
        "--phases",
        type=choice_list(PHASES),
        default=list(PHASES),
        help="comma-separated phases to run: live (enqueue while the workers run), backlog "
        "(queue first, then drain) (default: live,backlog)",
    )
    parser.add_argument(
        "--systems",
        type=choice_list(SYSTEMS),
        default=list(SYSTEMS),
        help="comma-separated systems to run: warren, plain, celery (default: all; celery "
        "runs in the backlog phase only)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="backlog rounds, each system once per round, in alternating order (default 1)",
    )
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
    if args.rounds < 1:
        parser.error("--rounds is 1 or more")
    if "backlog" in args.phases and "celery" in args.systems:
        try:
            import celery  # noqa: F401
        except ImportError:
            parser.error("Celery is not installed: pip install -e '.[bench]' (or --systems)")
    harness.run("throughput", measure, args, args.max_seconds)


if __name__ == "__main__":
    main()
