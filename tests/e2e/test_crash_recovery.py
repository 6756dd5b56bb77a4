"""A worker process killed with SIGKILL loses no job (invariants 1 and 2): the job's lease
expires, a new worker takes it over and records the lost attempt; runs never overlap; the jobs
it held without starting them run later with no attempt spent; and a job that kills every
worker running it ends `failed` once its attempts are spent instead of looping, having killed
at most one worker more than its attempts when it kills them before its start mark commits.

These tests run real `dramatiq service.worker:setup` processes and kill their process groups.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.broker import queue_family
from service.settings import Settings
from tests.e2e.workers import WorkerProcesses
from tests.helpers import runs, wait_for

FINAL = ("completed", "failed", "cancelled")


@pytest.fixture
def worker_processes(settings: Settings, clean: None, tmp_path: Path) -> Iterator[WorkerProcesses]:
    """Worker process groups for this test; all ended afterwards, their output printed (pytest
    shows it when the test fails)."""
    workers = WorkerProcesses(settings, tmp_path)
    try:
        yield workers
    finally:
        try:
            workers.close()
        finally:
            print(workers.report())


def db_now(engine: sa.Engine):
    with engine.connect() as conn:
        return conn.scalar(sa.text("SELECT clock_timestamp()"))


def test_a_job_whose_worker_is_killed_mid_run_completes_on_another_worker(
    warren, engine, worker_processes
):
    job_id = warren.enqueue("test-record", {"seconds": 6, "tag": "survivor"}).id
    first = worker_processes.start()
    wait_for(
        lambda: warren.get(job_id).status == "processing" and runs(engine, job_id),
        timeout=30,
        what="the job to start on the first worker",
    )

    first.kill()
    killed_at = db_now(engine)
    assert warren.get(job_id).status == "processing"  # nobody has noticed yet
    worker_processes.start()
    job = wait_for(
        lambda: (j := warren.get(job_id)).status in FINAL and j,
        timeout=45,
        what="the job to finish on the second worker",
    )

    assert job.status == "completed"
    assert job.result == {"attempt": 2, "tag": "survivor"}
    assert job.attempts == 2
    assert job.error is None
    lost, done = warren.attempts(job_id)
    assert (lost.number, lost.status) == (1, "lost")
    assert lost.error["type"] == "WorkerLost"
    assert "worker lost" in lost.error["message"]
    assert (done.number, done.status) == (2, "completed")
    assert done.worker != lost.worker
    assert done.started_at >= lost.finished_at
    first_run, second_run = runs(engine, job_id)  # killed once, completed once
    assert (first_run.attempt, second_run.attempt) == (1, 2)
    assert first_run.finished_at is None  # it died mid-run
    assert second_run.started_at > killed_at  # no overlap: the takeover waited for the kill
    assert second_run.finished_at is not None


def test_jobs_a_killed_worker_held_but_never_started_run_later_with_no_attempt_spent(
    warren, engine, worker_processes
):
    first = worker_processes.start(threads=1)  # it prefetches more messages than it runs
    running = warren.enqueue("test-record", {"seconds": 6, "tag": "running"}).id
    wait_for(lambda: runs(engine, running), timeout=30, what="the long job to start")
    held = [warren.enqueue("test-record", {"tag": f"held {n}"}).id for n in range(3)]
    wait_for(
        lambda: all(warren.get(job_id).status == "processing" for job_id in held),
        timeout=15,
        what="the first worker to claim the jobs it holds",
    )

    first.kill()
    worker_processes.start()
    for job_id in [running, *held]:
        wait_for(lambda j=job_id: warren.get(j).status in FINAL, timeout=45, what="the jobs")

    assert warren.get(running).attempts == 2  # it ran when its worker died: one attempt lost
    for job_id in held:
        job = warren.get(job_id)
        assert (job.status, job.attempts) == ("completed", 1)
        assert [(a.number, a.status) for a in warren.attempts(job_id)] == [(1, "completed")]
        assert len(runs(engine, job_id)) == 1


def run_until_final(warren, job_id, worker_processes: WorkerProcesses, most_deaths: int):
    """Start a worker, and another each time one dies, until the job is final; return the
    number of workers that died and the worker left running. Fails as soon as more than
    `most_deaths` workers died."""
    deadline = time.monotonic() + 90
    current = worker_processes.start()
    deaths = 0
    while True:
        wait_for(
            lambda worker=current: warren.get(job_id).status in FINAL or worker.exited(),
            timeout=max(deadline - time.monotonic(), 0.1),
            what="the job to finish or its worker to die",
        )
        if warren.get(job_id).status in FINAL:
            return deaths, current
        deaths += 1
        assert deaths <= most_deaths, f"the poison job killed worker {deaths}"
        current.kill()  # whatever is left of its group
        current = worker_processes.start()


def test_a_job_that_kills_its_worker_fails_once_its_attempts_are_spent(
    warren, engine, worker_processes
):
    job_id = warren.enqueue("test-crash", {}, max_attempts=2).id
    deaths, current = run_until_final(warren, job_id, worker_processes, most_deaths=2)

    job = warren.get(job_id)
    assert job.status == "failed"
    assert job.attempts == 2
    assert job.error["type"] == "WorkerLost"
    assert "worker lost" in job.error["message"]
    attempts = warren.attempts(job_id)
    assert [(a.number, a.status) for a in attempts] == [(1, "lost"), (2, "lost")]
    assert all(a.error["type"] == "WorkerLost" for a in attempts)
    assert [run.attempt for run in runs(engine, job_id)] == [1, 2]
    assert deaths == 2  # one worker per attempt, no more
    # Its message was dead-lettered, not requeued: the third worker lives on and works.
    dead_letters = queue_family(warren.settings, "normal").dead
    wait_for(
        lambda: warren.queue_depths()[dead_letters]["messages"] == 1,
        timeout=10,
        what="the poison job's message in the dead-letter queue",
    )
    sentinel = warren.enqueue("test-record", {}).id
    wait_for(lambda: warren.get(sentinel).status == "completed", timeout=20, what="a later job")
    assert not current.exited()


def test_a_job_that_kills_its_worker_before_its_start_mark_commits_kills_one_more_at_most(
    warren, worker_processes
):
    job_id = warren.enqueue("test-crash", {"at_once": True}, max_attempts=2).id
    deaths, current = run_until_final(warren, job_id, worker_processes, most_deaths=3)

    job = warren.get(job_id)
    assert (job.status, job.attempts) == ("failed", 2)
    assert job.error["type"] == "WorkerLost"
    # A death before the mark committed gave the attempt back unspent, and only once: the
    # next delivery waited for its mark, so each later death spent an attempt.
    assert job.unstarted_losses == deaths - 2 <= 1
    attempts = warren.attempts(job_id)
    assert [(a.number, a.status) for a in attempts] == [(1, "lost"), (2, "lost")]
    sentinel = warren.enqueue("test-record", {}).id
    wait_for(lambda: warren.get(sentinel).status == "completed", timeout=20, what="a later job")
    assert not current.exited()
