"""Enqueue latency over HTTP: `POST /jobs` at a steady request rate, against what users would
write instead, then `POST /jobs/batch`.

    .venv/bin/python -m bench.latency --rate 200 --seconds 30

A `warren api` (2 gunicorn processes x 8 threads) runs on a free port of 127.0.0.1, with a
`warren scheduler`, whose relay publishes the jobs the API stores; no worker runs, the jobs
just accumulate. A second one, "warren-quiet", runs with `WARREN_ACCESS_LOG=false`: it writes
no access line, as the baseline writes none, so the two Warren figures show what the line
costs. Beside them runs the baseline, "plain" (`bench.plainapi`): a
Falcon app whose `POST /jobs` parses the body, calls a Dramatiq actor's `send()` with
publisher confirms and records nothing, served by gunicorn with `warren api`'s own command line
(the same worker class, processes and threads); its messages accumulate in a queue of the
run's own.

Single enqueue, open loop: request i is due at start + i/rate, whatever happened to the ones
before; `--clients` threads (each with its own keep-alive connection) take the next due
request, wait for its time and send it. The load generator shares the two cores with what it
measures, so it is kept lean: the standard library's `http.client` and a body encoded once
(httpx, used for everything else here, added 1-2 ms of its own to each request).
Two latencies per request:
- "service": from sending to the response;
- "from schedule": from the time it was due to the response, which also counts the wait when
  every client thread was busy (the API fell behind), so a slow API cannot hide its backlog.
Errors are responses other than 201, and exceptions (timeouts, refused connections).
A short warm-up of each API at the same rate runs first and is not counted. Then the three
take turns with the same rate, clients and seconds: `--rounds` rounds (10), each `--seconds /
--rounds` per API, in the order warren, warren-quiet, plain, then plain, warren-quiet,
warren, and so on, so that load from elsewhere on the machine falls on all alike: short turns
keep a slow phase of a shared machine from falling on one API only. The samples of each API's
turns are pooled; the achieved rate is its answered requests over the sum of its turns'
spans. The ratio warren/plain of the pooled p95 from schedule is the figure to compare (and
warren-quiet/plain beside it); with each, the median of the rounds' own ratios (a round's
turns ran back to back) says how steady it was, and a 95 % interval of the pooled ratio says
what another run of the same length could read: rounds are drawn with replacement, 1,000
times, and the pooled ratio computed again (whole rounds, because the slow requests come in
clusters within a turn). Each API's CPU per request is read around its turns (`bench.costs`):
its own processes (Warren's API and scheduler, the plain endpoint's gunicorn), PostgreSQL and
RabbitMQ. On two shared cores, what a request costs the machine decides how much one API's
tail suffers from the other load.

Batch: `--batches` requests of 1,000 `bench-noop` jobs each, one after another; jobs/s is all
jobs over the time until the last answer. The API answers once the rows are committed and the
scheduler's relay publishes them right after, so "published" jobs/s is all jobs over the time
until no row is left unpublished (polled every 0.1 s).

`--no-relay` runs no scheduler: the API stores its jobs and nothing publishes them, which no
deployment would do. It measures what the relay's work costs the requests beside it; the batch
phase, which waits for publishing, is left out.
"""

import argparse
import http.client
import json
import random
import statistics
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa

from bench import costs, harness
from bench.harness import BenchEnv, latency_summary, percentile, say

JOB = {"type": "bench-noop", "payload": {}}
JOB_BODY = json.dumps(JOB).encode()
JSON_HEADERS = {"Content-Type": "application/json"}
BATCH_SIZE = 1000


@dataclass(frozen=True)
class Sample:
    due: float
    sent: float
    answered: float
    error: str | None


def failure(status: int, body: bytes) -> str:
    """`HTTP 503 unavailable`: the status and Warren's error code, when the body has one."""
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = ""
    return f"HTTP {status} {code}".strip()


def send_one(connection: http.client.HTTPConnection) -> str | None:
    """POST one job; None on 201, else what went wrong. A connection that failed is closed,
    and the next request opens it again."""
    try:
        connection.request("POST", "/jobs", JOB_BODY, JSON_HEADERS)
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        return type(exc).__name__
    return None if response.status == 201 else failure(response.status, body)


def open_loop(url: str, rate: float, seconds: float, clients: int) -> list[Sample]:
    """Send `rate * seconds` requests, each at its due time, from `clients` threads."""
    total = round(rate * seconds)
    start = time.monotonic() + 0.1
    samples: list[Sample] = []
    lock = threading.Lock()
    next_index = 0

    address = urllib.parse.urlsplit(url)

    def client_thread() -> None:
        nonlocal next_index
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
        try:
            while True:
                with lock:
                    index, next_index = next_index, next_index + 1
                if index >= total:
                    return
                due = start + index / rate
                time.sleep(max(0.0, due - time.monotonic()))
                sent = time.monotonic()
                error = send_one(connection)
                sample = Sample(due, sent, time.monotonic(), error)
                with lock:
                    samples.append(sample)
        finally:
            connection.close()

    threads = [threading.Thread(target=client_thread, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples


def single_figures(turns: list[list[Sample]], rate: float) -> dict[str, Any]:
    """Latencies of the pooled samples of one API's turns."""
    samples = [sample for turn in turns for sample in turn]
    ok = [s for s in samples if s.error is None]
    span = sum(max(s.answered for s in turn) - min(s.due for s in turn) for turn in turns)
    return {
        "requests": len(samples),
        "targetPerSecond": rate,
        "achievedPerSecond": round(len(ok) / span, 1),
        "service": latency_summary([s.answered - s.sent for s in ok]),
        "fromSchedule": latency_summary(from_schedule(ok)),
        "errors": dict(Counter(s.error for s in samples if s.error is not None)),
    }


def batches(env: BenchEnv, url: str, count: int) -> dict[str, Any]:
    """`count` sequential `POST /jobs/batch` of 1,000 jobs each. The API answers once the rows
    are committed and the scheduler's relay publishes them after, so this also waits for every
    job to be marked published: jobs/s counts answered jobs, published jobs/s the whole way."""
    body = {"jobs": [JOB] * BATCH_SIZE}
    durations, errors = [], Counter()
    with httpx.Client(timeout=120) as client:
        started = time.monotonic()
        for _ in range(count):
            sent = time.monotonic()
            try:
                response = client.post(f"{url}/jobs/batch", json=body)
                error = (
                    None
                    if response.status_code == 201
                    else failure(response.status_code, response.content)
                )
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            durations.append(time.monotonic() - sent)
            if error:
                errors[error] += 1
        elapsed = time.monotonic() - started
        harness.wait_until(lambda: unpublished(env) == 0, 300, "every job published")
        published = time.monotonic() - started
    created = (count - sum(errors.values())) * BATCH_SIZE
    return {
        "requests": count,
        "jobsPerRequest": BATCH_SIZE,
        "jobsPerSecond": round(created / elapsed, 1),
        "publishedPerSecond": round(created / published, 1),
        "request": latency_summary(durations),
        "errors": dict(errors),
    }


def unpublished(env: BenchEnv) -> int:
    with env.engine.connect() as conn:
        return conn.scalar(sa.text("SELECT count(*) FROM jobs WHERE published_at IS NULL"))


def show_latency(label: str, figures: dict[str, float]) -> None:
    say(
        f"  {label:<14} p50 {figures['p50Ms']:8.1f} ms   p95 {figures['p95Ms']:8.1f} ms   "
        f"p99 {figures['p99Ms']:8.1f} ms   max {figures['maxMs']:8.1f} ms"
    )


def queued_messages(queue: str) -> int:
    return (harness.queue_info([queue])[queue] or (0, 0))[0]


def single_enqueue(
    env: BenchEnv, args: argparse.Namespace, warrens: dict[str, tuple[str, list[int]]]
) -> dict[str, Any]:
    """`POST /jobs` open loop on each of `warrens` (name: url and its processes' pids, its
    API's and the scheduler's) and on the plain endpoint, taking turns. Around each turn, the
    CPU of the API's own processes, of PostgreSQL and of RabbitMQ is read (`bench.costs`):
    what a request costs the machine."""
    queue = f"{env.name}.plainapi"
    env.add_queue(queue)
    plain = env.start_app(
        "plain-api", "bench.plainapi:create_app()", workers=2, threads=8, BENCH_PLAINAPI_QUEUE=queue
    )
    say(f"plain api on {plain.url} (bench.plainapi: Dramatiq send with confirms, no records)")
    urls = {name: url for name, (url, _) in warrens.items()} | {"plain": plain.url}
    pids = {name: processes for name, (_, processes) in warrens.items()}
    pids["plain"] = [plain.process.pid]
    spent: dict[str, list[dict[str, Any]]] = {name: [] for name in urls}
    sent_ok = dict.fromkeys(urls, 0)
    for name, url in urls.items():
        warmup = open_loop(url, args.rate, args.warmup, args.clients)
        sent_ok[name] += sum(s.error is None for s in warmup)

    turns: dict[str, list[list[Sample]]] = {name: [] for name in urls}
    order: list[str] = []
    for index in range(args.rounds):
        for name in list(urls) if index % 2 == 0 else reversed(urls):
            before = costs.snapshot(env.engine, pids[name])
            turn = open_loop(urls[name], args.rate, args.seconds / args.rounds, args.clients)
            answered = sum(s.error is None for s in turn)
            after = costs.snapshot(env.engine, pids[name])
            spent[name].append(costs.per_job(before, after, max(answered, 1)))
            turns[name].append(turn)
            sent_ok[name] += answered
            order.append(name)
    # Every 201 of the plain endpoint is a confirmed message in its queue (nothing consumes it)
    harness.wait_until(
        lambda: queued_messages(queue) >= sent_ok["plain"],
        30,
        f"{sent_ok['plain']} messages of the plain endpoint in {queue}",
        interval=0.2,
    )

    say(
        f"POST /jobs at {args.rate:g}/s for {args.seconds:g} s each, {args.clients} clients, "
        f"in turns of {args.seconds / args.rounds:g} s: {', '.join(order)}"
    )
    figures = {
        name: single_figures(turns[name], args.rate) | {"cost": request_cost(spent[name])}
        for name in urls
    }
    for name, single in figures.items():
        say(
            f"{name}: {single['requests']} requests, achieved {single['achievedPerSecond']}/s, "
            f"errors {single['errors'] or 0}"
        )
        show_latency("service", single["service"])
        show_latency("from schedule", single["fromSchedule"])
        cost = single["cost"]
        say(
            f"  CPU per request: its processes {cost['processesMs']:.2f} ms, PostgreSQL "
            f"{cost['pgMs']:.2f}, RabbitMQ {cost['rabbitMs']:.2f}: {cost['totalMs']:.2f} ms"
        )
    results: dict[str, Any] = {"plain": figures["plain"], "turns": order}
    for name in warrens:
        compared = against_plain(figures[name], figures["plain"], turns[name], turns["plain"])
        show_ratio(name, compared)
        results[name] = {"single": figures[name], **compared}
    return results


def show_ratio(name: str, compared: dict[str, Any]) -> None:
    ratio, rounds = compared["ratioFromSchedule"], compared["roundRatiosP95"]
    low, high = compared["ratioP95Interval"]
    say(
        f"{name}/plain from schedule: p95 {ratio['p95Ms']:.2f} (95 % interval over rounds "
        f"{low:.2f}-{high:.2f}; p50 {ratio['p50Ms']:.2f}, p99 {ratio['p99Ms']:.2f}); p95 of "
        f"each round: median {statistics.median(rounds):.2f}, {min(rounds):.2f}-{max(rounds):.2f}"
    )


def against_plain(
    warren: dict[str, Any],
    plain: dict[str, Any],
    warren_turns: list[list[Sample]],
    plain_turns: list[list[Sample]],
) -> dict[str, Any]:
    """A Warren API's latencies over the plain endpoint's: the pooled ratios, each round's
    p95 ratio, and the 95 % interval of the pooled p95 ratio."""
    return {
        "ratioFromSchedule": {
            key: round(warren["fromSchedule"][key] / plain["fromSchedule"][key], 3)
            for key in ("p50Ms", "p95Ms", "p99Ms")
        },
        "roundRatiosP95": round_ratios(warren_turns, plain_turns),
        "ratioP95Interval": list(p95_interval(warren_turns, plain_turns)),
    }


def request_cost(turns: list[dict[str, Any]]) -> dict[str, float]:
    """CPU ms per answered request over all of an API's turns (`costs.per_job` of each turn,
    weighted by its requests). "Processes" are the API's own (for Warren, with its scheduler,
    whose relay publishes what the API stores); PostgreSQL and RabbitMQ are the whole servers."""
    requests = sum(turn["jobs"] for turn in turns) or 1

    def pooled(key: str) -> float:
        return round(sum(turn[key] * turn["jobs"] for turn in turns) / requests, 3)

    cost = {
        "processesMs": pooled("workerMsPerJob"),
        "pgMs": pooled("pgMsPerJob"),
        "rabbitMs": pooled("rabbitMsPerJob"),
    }
    return cost | {"totalMs": round(sum(cost.values()), 3)}


def from_schedule(samples: list[Sample]) -> list[float]:
    """Seconds from each answered request's due time to its answer."""
    return [s.answered - s.due for s in samples if s.error is None]


def round_ratios(warren: list[list[Sample]], plain: list[list[Sample]]) -> list[float]:
    """warren/plain of the p95 from schedule, round by round."""
    return [
        round(percentile(from_schedule(w), 95) / percentile(from_schedule(p), 95), 3)
        for w, p in zip(warren, plain, strict=True)
    ]


def p95_interval(
    warren: list[list[Sample]], plain: list[list[Sample]], resamples: int = 1000
) -> tuple[float, float]:
    """A 95 % bootstrap interval of warren/plain of the pooled p95 from schedule: the rounds
    (a turn of each API) drawn with replacement, `resamples` times."""
    pairs = [(from_schedule(w), from_schedule(p)) for w, p in zip(warren, plain, strict=True)]
    draw = random.Random(0)
    ratios = []
    for _ in range(resamples):
        drawn = [draw.choice(pairs) for _ in pairs]
        pooled_warren = [s for w, _ in drawn for s in w]
        pooled_plain = [s for _, p in drawn for s in p]
        ratios.append(percentile(pooled_warren, 95) / percentile(pooled_plain, 95))
    ratios.sort()
    return round(ratios[int(0.025 * resamples)], 3), round(ratios[int(0.975 * resamples) - 1], 3)


def measure(env: BenchEnv, args: argparse.Namespace) -> dict[str, Any]:
    relay_pids = [] if args.no_relay else [env.start_scheduler().pid]
    api = env.start_api(workers=2, threads=8)
    quiet = env.start_api(workers=2, threads=8, WARREN_ACCESS_LOG="false")
    say(
        f"warren api on {api.url}, and warren-quiet (WARREN_ACCESS_LOG=false) on {quiet.url} "
        "(2 processes x 8 threads each), "
        + ("no scheduler: nothing publishes the jobs" if args.no_relay else "a scheduler")
        + ", no worker"
    )
    single = single_enqueue(
        env,
        args,
        {
            "warren": (api.url, [api.process.pid, *relay_pids]),
            "warren-quiet": (quiet.url, [quiet.process.pid, *relay_pids]),
        },
    )
    run = {key: getattr(args, key) for key in ("rate", "seconds", "clients", "rounds")}
    if args.no_relay:
        return {**run, **single, "noRelay": True}

    batch = batches(env, api.url, args.batches)
    say(
        f"POST /jobs/batch: {args.batches} x {BATCH_SIZE} jobs, "
        f"{batch['jobsPerSecond']} jobs/s answered, {batch['publishedPerSecond']} jobs/s "
        f"published, errors {batch['errors'] or 0}"
    )
    show_latency("per request", batch["request"])
    return {**run, **single, "batch": batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200, help="requests per second (200)")
    parser.add_argument(
        "--seconds", type=float, default=30, help="how long to send to each API (30)"
    )
    parser.add_argument(
        "--rounds", type=int, default=10, help="turns of each API, alternating order (10)"
    )
    parser.add_argument("--clients", type=int, default=16, help="sending threads (16)")
    parser.add_argument("--warmup", type=float, default=2, help="uncounted seconds first (2)")
    parser.add_argument("--batches", type=int, default=20, help="batch requests (20)")
    parser.add_argument(
        "--no-relay",
        action="store_true",
        help="run no scheduler, so nothing publishes the jobs: what the relay costs the requests",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=900, help="time limit of the whole run (900)"
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more")
    harness.run("latency", measure, args, args.max_seconds)


if __name__ == "__main__":
    main()
