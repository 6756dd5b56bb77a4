"""Fault injection: 2,000 jobs run while workers are killed, RabbitMQ restarts or PostgreSQL
restarts. Each scenario ends with every job completed exactly once, none lost, none stuck in
`processing`, no job run concurrently with itself, no deadlock broken by PostgreSQL; and the
API answered every request made while a dependency was down with a clear answer (503, or 201
for enqueue while only RabbitMQ was down), never a 500 or a hang.

The handler (`test-ledger`) writes one row per run with its start and finish into `test_runs`.
These tests restart this machine's RabbitMQ and PostgreSQL: they run in CI on its own machine.
"""

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.faults.deployment import Deployment, Prober
from tests.helpers import wait_for

JOBS = 2000
PROGRESS_BEFORE_FAULT = 200


@pytest.fixture
def deployment(settings, clean, tmp_path: Path) -> Iterator[Deployment]:
    running = Deployment(settings, tmp_path)
    try:
        running.start()
        yield running
    finally:
        try:
            running.close()
        finally:
            print(running.report()[-20000:])


def count(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as conn:
        return conn.scalar(sa.text(sql))


def completed(engine: sa.Engine) -> int:
    return count(
        engine, "SELECT count(*) FROM jobs WHERE type = 'test-ledger' AND status = 'completed'"
    )


def deadlocks(engine: sa.Engine) -> int:
    """Deadlocks PostgreSQL has broken in this database. A backend reports its count once it
    is idle for a moment or exits, well before a scenario's jobs are all final."""
    return count(
        engine, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    )


def run_with_fault(
    deployment: Deployment, warren, engine: sa.Engine, fault: Callable[[Prober], None]
) -> Prober:
    """Enqueue the jobs, inject `fault` once some have completed, wait for all to finish.
    Fails if PostgreSQL broke a deadlock meanwhile: every writer locks rows in one order or
    skips what another holds, and a deadlock stalls both sides for `deadlock_timeout`."""
    deadlocks_before = deadlocks(engine)
    for _ in range(JOBS // 500):
        warren.submit([{"type": "test-ledger", "payload": {"seconds": 0.05}}] * 500)
    with Prober(deployment.url) as prober:
        wait_for(lambda: completed(engine) >= PROGRESS_BEFORE_FAULT, timeout=60, what="progress")
        fault(prober)
        wait_for(
            lambda: _all_final(engine),
            timeout=240,
            interval=0.5,
            what="every job to reach a final status",
        )
    engine.dispose()  # pooled connections may have died with a restarted server
    assert deadlocks(engine) == deadlocks_before, "PostgreSQL broke a deadlock"
    return prober


def _all_final(engine: sa.Engine) -> bool:
    """Whether every ledger job is final; PostgreSQL may still be coming back."""
    try:
        return (
            count(
                engine,
                "SELECT count(*) FROM jobs WHERE type = 'test-ledger'"
                " AND status IN ('pending', 'processing')",
            )
            == 0
        )
    except sa.exc.OperationalError:
        return False


def assert_nothing_lost(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(
                sa.text("SELECT status, count(*) FROM jobs WHERE type = 'test-ledger' GROUP BY 1")
            ).all()
        )
        completed_twice = conn.scalar(
            sa.text(
                "SELECT count(*) FROM (SELECT job_id FROM job_attempts WHERE status = 'completed'"
                " GROUP BY job_id HAVING count(*) > 1) twice"
            )
        )
        ran = conn.scalar(sa.text("SELECT count(DISTINCT job_id) FROM test_runs"))
        overlapping = conn.execute(
            sa.text(
                "SELECT a.job_id, a.started_at, a.finished_at, b.started_at, b.finished_at"
                "  FROM test_runs a JOIN test_runs b ON a.job_id = b.job_id AND a.id < b.id"
                " WHERE a.started_at < b.finished_at AND b.started_at < a.finished_at LIMIT 5"
            )
        ).all()
    assert statuses == {"completed": JOBS}
    assert completed_twice == 0
    assert ran == JOBS
    assert overlapping == [], f"runs of one job overlapped: {overlapping}"


def assert_clear_answers(prober: Prober, enqueue_statuses: set[int]) -> None:
    assert prober.during_fault("POST /jobs"), "no request was made during the fault"
    for call in prober.calls:
        assert call.status is not None, f"{call.route} got no answer ({call.seconds:.1f}s)"
        assert call.status != 500, f"{call.route} answered 500"
        assert call.seconds < 10, f"{call.route} took {call.seconds:.1f}s"
    assert {c.status for c in prober.during_fault("POST /jobs")} <= enqueue_statuses
    assert {c.status for c in prober.during_fault("GET /health")} <= {200, 503}


def test_workers_killed_five_times(deployment, warren, engine):
    def kill_five_times(prober: Prober) -> None:
        prober.fault.set()
        for kill in range(5):
            done = completed(engine)
            deployment.replace_worker(kill % 2)
            wait_for(lambda done=done: completed(engine) > done + 50, timeout=60, what="progress")
        prober.fault.clear()

    prober = run_with_fault(deployment, warren, engine, kill_five_times)

    assert_nothing_lost(engine)
    assert_clear_answers(prober, {201})


def test_rabbitmq_restarted(deployment, warren, engine):
    def restart_rabbitmq(prober: Prober) -> None:
        prober.fault.set()
        subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=120)
        try:
            time.sleep(3)  # the outage itself: the prober keeps calling the API meanwhile
        finally:
            subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, timeout=120)
        prober.fault.clear()

    prober = run_with_fault(deployment, warren, engine, restart_rabbitmq)

    assert_nothing_lost(engine)
    assert_clear_answers(prober, {201})


def test_postgresql_restarted(deployment, warren, engine):
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    cluster = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]

    def restart_postgresql(prober: Prober) -> None:
        prober.fault.set()
        subprocess.run([*cluster, "stop", "-m", "fast"], check=True, timeout=120)
        try:
            time.sleep(3)  # the outage itself: the prober keeps calling the API meanwhile
        finally:
            subprocess.run([*cluster, "start"], check=True, timeout=120)
        prober.fault.clear()

    prober = run_with_fault(deployment, warren, engine, restart_postgresql)

    assert_nothing_lost(engine)
    assert_clear_answers(prober, {201, 503})
