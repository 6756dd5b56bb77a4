"""Schedules: 10,000 cron schedules firing every minute.

    .venv/bin/python -m bench.schedules --schedules 10000 --minutes 2

`--schedules` schedules of `bench-noop`, each `* * * * *`, are stored through the Python API.
A scheduler (`service.scheduler.Scheduler`, as `warren scheduler` runs it) then ticks in this
process every second for `--minutes` slots from the next minute on. Reported:
- each tick's time (p50, p95, max) and the scheduler thread's CPU per minute;
- each slot's lateness: from the slot's time to the moment its last job was stored
  (`created_at`; negative: stored ahead, due at the slot), and whether every schedule fired
  each slot exactly once;
- PostgreSQL's CPU over the run (`bench.costs`).
No worker runs: the jobs are published and stay in their queue.
"""

import argparse
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bench import costs, harness
from bench.harness import BenchEnv, latency_summary, say
from service.broker import Publisher, build_broker
from service.scheduler import Scheduler


def create(env: BenchEnv, count: int) -> float:
    warren = env.client()
    started = time.monotonic()
    for n in range(count):
        body = {"name": f"bench-{n}", "cron": "* * * * *", "type": "bench-noop", "payload": {}}
        warren.schedules.create(body)
    return time.monotonic() - started


def slots(env: BenchEnv) -> list[tuple[datetime, int, int, float]]:
    """Per fired slot: its time, jobs, distinct schedules, seconds until its last job."""
    with env.engine.connect() as conn:
        return conn.execute(
            sa.text(
                """
                SELECT scheduled_for, count(*), count(DISTINCT schedule_name),
                       extract(epoch FROM max(created_at) - scheduled_for)
                  FROM jobs WHERE schedule_name IS NOT NULL
                 GROUP BY scheduled_for ORDER BY scheduled_for
                """
            )
        ).all()


def measure(env: BenchEnv, args: argparse.Namespace) -> dict[str, Any]:
    took = create(env, args.schedules)
    say(f"{args.schedules} schedules, each * * * * *; created in {took:.1f} s")
    publisher = Publisher(build_broker(env.settings), env.settings)
    scheduler = Scheduler(env.engine, publisher, env.settings)
    now = datetime.now(UTC)
    start = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    end = start + timedelta(minutes=args.minutes - 1, seconds=30)
    ticks: list[float] = []
    cpu_start = time.thread_time()
    before = costs.snapshot(env.engine, [])
    while datetime.now(UTC) < end:
        began = time.monotonic()
        scheduler.tick()
        ticks.append(time.monotonic() - began)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
    cpu = time.thread_time() - cpu_start
    after = costs.snapshot(env.engine, [])
    publisher.close()
    fired = [s for s in slots(env) if s[0] >= start]
    spent = costs.per_job(before, after, max(1, sum(jobs for _, jobs, _, _ in fired)))
    ticked = latency_summary(ticks)
    say(
        f"ticks {len(ticks)}: p50 {ticked['p50Ms']:.1f} ms, p95 {ticked['p95Ms']:.1f} ms, "
        f"max {ticked['maxMs']:.1f} ms; scheduler CPU {cpu / args.minutes:.2f} s per minute"
    )
    for slot, jobs, distinct, late in fired:
        say(
            f"slot {slot:%H:%M}: {jobs} jobs of {distinct} schedules, the last stored {late:+.2f} s"
        )
    exact = all(jobs == distinct == args.schedules for _, jobs, distinct, _ in fired)
    say(f"every slot fired once per schedule: {exact}; PostgreSQL {spent['pgMsPerJob']:.2f} ms/job")
    return {
        "schedules": args.schedules,
        "minutes": args.minutes,
        "tick": ticked,
        "schedulerCpuSecondsPerMinute": round(cpu / args.minutes, 3),
        "slots": [
            {"slot": slot.isoformat(), "jobs": jobs, "lateSeconds": round(float(late), 3)}
            for slot, jobs, _, late in fired
        ],
        "exactlyOnce": exact,
        "cost": spent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=10000)
    parser.add_argument("--minutes", type=int, default=2, help="whole minutes to fire (2)")
    parser.add_argument("--max-seconds", type=float, default=900)
    args = parser.parse_args()
    harness.run("schedules", measure, args, args.max_seconds)


if __name__ == "__main__":
    main()
