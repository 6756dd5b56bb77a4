"""Group commit: a worker's threads claim and complete jobs through shared transactions, and
each still gets the answer it would have had alone."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from service.groupcommit import GroupCommit
from service.store import attempts, jobs
from tests.helpers import wait_for


@pytest.fixture
def group(engine):
    group = GroupCommit(engine, "test-worker", lease=30)
    yield group
    group.close()


def pending_jobs(warren, count: int) -> list:
    return [job.id for job in warren.submit([{"type": "test-noop", "payload": {}}] * count)]


def test_many_threads_claim_and_complete_each_job_once(warren, group):
    job_ids = pending_jobs(warren, 40)

    # Every job is asked for twice, as when RabbitMQ redelivers a message to another thread.
    with ThreadPoolExecutor(16) as pool:
        claims = [
            c
            for c in pool.map(lambda job_id: group.claim(job_id, 1), job_ids + job_ids)
            if c is not None
        ]
        recorded = list(pool.map(lambda claim: group.complete(claim, '{"ok": true}'), claims))

    assert sorted(c.job_id for c in claims) == sorted(job_ids)
    assert all(recorded)
    for job_id in job_ids:
        job = warren.get(job_id)
        assert (job.status, job.attempts, job.result) == ("completed", 1, {"ok": True})
        [attempt] = warren.attempts(job_id)
        assert attempt.status == "completed"


def test_a_completion_for_an_attempt_that_lost_its_job_is_refused(warren, group, engine):
    [job_id] = pending_jobs(warren, 1)
    claim = group.claim(job_id, 1)
    with engine.begin() as conn:  # as after a takeover: another attempt holds the job
        conn.execute(
            sa.text(
                "UPDATE jobs SET current_attempt_id = current_attempt_id + 1000 WHERE id = :id"
            ),
            {"id": job_id},
        )

    assert group.complete(claim, None) is False
    assert warren.get(job_id).status == "processing"


def test_a_result_postgresql_refuses_fails_only_its_own_completion(warren, group, engine):
    blocker_id, good_id, bad_id = pending_jobs(warren, 3)
    good, bad = group.claim(good_id, 1), group.claim(bad_id, 1)
    answers: dict[str, object] = {}

    def complete(name, claim, result):
        try:
            answers[name] = group.complete(claim, result)
        except sa.exc.DBAPIError as exc:
            answers[name] = exc

    # Hold the writer on a locked row so that both completions wait in the same batch.
    with engine.begin() as lock:
        lock.execute(sa.text("SELECT 1 FROM jobs WHERE id = :id FOR UPDATE"), {"id": blocker_id})
        blocked = threading.Thread(target=group.claim, args=(blocker_id, 1))
        blocked.start()
        wait_for(lambda: writer_waits_on_a_lock(engine), what="the writer to wait on the lock")
        threads = [
            threading.Thread(target=complete, args=("good", good, '"fine"')),
            threading.Thread(target=complete, args=("bad", bad, '"\\u0000"')),
        ]
        for thread in threads:
            thread.start()
        wait_for(lambda: group._requests.qsize() == 2, what="both completions to queue")
    blocked.join(10)
    for thread in threads:
        thread.join(10)

    assert answers["good"] is True
    assert isinstance(answers["bad"], sa.exc.DBAPIError)
    assert warren.get(good_id).status == "completed"
    assert warren.get(good_id).result == "fine"
    assert warren.get(bad_id).status == "processing"  # its lease will expire and it runs again


def writer_waits_on_a_lock(engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            )
        )


def test_after_its_connection_is_lost_the_writer_takes_a_new_one(warren, group, engine):
    first, second = pending_jobs(warren, 2)
    assert group.claim(first, 1) is not None
    writer_pid = group._connection.connection.driver_connection.info.backend_pid
    with engine.begin() as conn:  # as when PostgreSQL restarts
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": writer_pid})

    with pytest.raises(sa.exc.OperationalError):
        group.claim(second, 1)  # the lifecycle retries this while PostgreSQL is unreachable
    claim = group.claim(second, 1)

    assert claim is not None and claim.job_id == second


@pytest.mark.parametrize("completed", ["higher", "lower"])
def test_a_batch_waiting_for_a_row_holds_none_a_bulk_cancel_needs_next(
    warren, group, engine, completed
):
    """A person's bulk cancel locks its jobs in id order. A worker's batch that completes one
    of them and claims the other must lock them in that order too: one that held either while
    it waited for the other would deadlock with the cancel, which PostgreSQL breaks after a
    second by refusing one side's work. (Completions before claims deadlocked when the higher
    id was completed; rows locked in heap order, when the lower one was.)"""
    low, high = sorted(pending_jobs(warren, 2))
    done_id, claim_id = (high, low) if completed == "higher" else (low, high)
    [running] = group.claim_many([(done_id, 1)])
    assert group.start(running)  # its row is now the last of the table's heap
    answers: list = []

    def batch() -> None:  # one job done, the other's message delivered
        with engine.begin() as conn:
            wanted = [(claim_id, 1, True)]
            answers.append(attempts.work(conn, wanted, [], [(running, None)], "test-worker", 30))

    with engine.connect() as person, person.begin():
        person.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
        person.execute(sa.text("SELECT 1 FROM jobs WHERE id = :id FOR UPDATE"), {"id": low})
        worker = threading.Thread(target=batch)
        worker.start()
        wait_for(lambda: writer_waits_on_a_lock(engine), what="the batch to wait for the row")
        cancelled = jobs.cancel_many(person, [(low, 1), (high, 1)])  # never waits for the batch
    worker.join(10)

    assert sorted(c.was for c in cancelled) == ["pending", "processing"]
    [worked] = answers  # the batch went through once the person committed
    assert worked.claimed == {}  # its claim came too late: the job is cancelled
    assert warren.get(claim_id).status == "cancelled"


class CountingPump:
    """A consumer's stand-in: counts the turns of work it is given while claims are out."""

    def __init__(self) -> None:
        self.turns = 0
        self.woken = threading.Event()

    def wait(self) -> None:
        self.turns += 1
        self.woken.wait(0.05)
        self.woken.clear()

    def wake(self) -> None:
        self.woken.set()


def test_a_burst_claimer_keeps_working_through_its_pump_until_its_claims_are_in(
    warren, group, engine
):
    [job_id] = pending_jobs(warren, 1)
    pump, answers = CountingPump(), []

    # Hold the writer on the job's row: the claims stay out while the consumer works on.
    with engine.begin() as lock:
        lock.execute(sa.text("SELECT 1 FROM jobs WHERE id = :id FOR UPDATE"), {"id": job_id})
        claimer = threading.Thread(
            target=lambda: answers.append(group.claim_many([(job_id, 1)], pump))
        )
        claimer.start()
        wait_for(lambda: pump.turns >= 3, what="the claimer to keep working while it waits")
    claimer.join(10)

    [[claim]] = answers
    assert claim is not None and claim.job_id == job_id
    assert warren.get(job_id).status == "processing"


# -- start marks: a claim made at delivery spends its attempt only once a thread starts it -------


def one_attempt_job(warren) -> list:
    return [
        job.id for job in warren.submit([{"type": "test-noop", "payload": {}, "maxAttempts": 1}])
    ]


def expire_lease(engine, job_id) -> None:
    with engine.begin() as conn:  # as when its worker died and stopped renewing it
        conn.execute(
            sa.text("UPDATE jobs SET lease_until = now() - interval '1 second' WHERE id = :id"),
            {"id": job_id},
        )


def take_back(engine, claim):
    with engine.begin() as conn:
        return attempts.release_expired(conn, claim.job_id, claim.attempt_id)


def test_a_claim_made_at_delivery_waits_unstarted_until_its_start_mark(warren, group):
    [job_id] = pending_jobs(warren, 1)
    [claim] = group.claim_many([(job_id, 1)])

    waiting = warren.get(job_id)
    assert (waiting.status, waiting.attempts, waiting.started_at) == ("processing", 1, None)
    assert warren.attempts(job_id) == []  # nothing has run

    assert group.start(claim) is True
    assert warren.get(job_id).started_at is not None
    [running] = warren.attempts(job_id)
    assert (running.number, running.status) == (1, "running")


def test_a_claim_its_worker_died_holding_unstarted_is_given_back_unspent(warren, group, engine):
    [job_id] = one_attempt_job(warren)
    [claim] = group.claim_many([(job_id, 1)])
    expire_lease(engine, job_id)

    taken = take_back(engine, claim)

    assert not taken.spent
    job = taken.job
    assert (job.status, job.attempts, job.worker, job.error) == ("pending", 0, None, None)
    assert warren.attempts(job_id) == []
    assert group.start(claim) is False  # the dead worker's thread could never start it now
    again = group.claim(job_id, 1)
    assert (again.number, warren.get(job_id).status) == (1, "processing")


def test_a_started_claim_its_worker_died_holding_spends_its_attempt(warren, group, engine):
    [job_id] = one_attempt_job(warren)
    [claim] = group.claim_many([(job_id, 1)])
    assert group.start(claim) is True
    expire_lease(engine, job_id)

    taken = take_back(engine, claim)

    assert taken.spent
    job = taken.job
    assert (job.status, job.attempts, job.error["type"]) == ("failed", 1, "WorkerLost")
    [lost] = warren.attempts(job_id)
    assert (lost.number, lost.status) == (1, "lost")


def test_a_job_lost_unstarted_comes_back_with_the_loss_counted(warren, group, engine):
    [job_id] = one_attempt_job(warren)
    [claim] = group.claim_many([(job_id, 1)])
    assert claim.unstarted_losses == 0
    expire_lease(engine, job_id)
    take_back(engine, claim)

    [again] = group.claim_many([(job_id, 1)])

    assert (again.number, again.unstarted_losses) == (1, 1)  # its next start mark is waited for


# -- plans: a writer's kept plan looks up its batch by key, whatever the statistics said --------

_PENDING = """
    INSERT INTO jobs (id, type, status, priority, payload, max_attempts, timeout_seconds,
                      created_at, updated_at)
    SELECT gen_random_uuid(), 'test-noop', 'pending', 5, '{}', 3, 60, now(), now()
      FROM generate_series(1, :count)
"""


def pkey_entries_read(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(
            sa.text(
                "SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelname = 'jobs_pkey'"
            )
        )


def pending_ids(engine, count: int) -> list:
    with engine.connect() as conn:
        statement = "SELECT id FROM jobs WHERE status = 'pending' ORDER BY id LIMIT :count"
        return conn.scalars(sa.text(statement), {"count": count}).all()


def test_a_writer_that_planned_on_a_near_empty_table_reads_only_its_batch(engine, clean):
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE jobs"))  # statistics say empty, as after retention
        conn.execute(sa.text(_PENDING), {"count": 1})
    group = GroupCommit(engine, "test-worker", lease=30)
    [first] = group.claim_many([(pending_ids(engine, 1)[0], 1)])
    assert group.start(first) and group.complete(first, None)  # plans it keeps are made now
    with engine.begin() as conn:  # then a burst arrives before the statistics are renewed
        conn.execute(sa.text(_PENDING), {"count": 20_000})
    job_ids = pending_ids(engine, 8)
    before = pkey_entries_read(engine)

    claims = group.claim_many([(job_id, 1) for job_id in job_ids])
    assert all([group.start(claim) for claim in claims])
    assert all([group.complete(claim, None) for claim in claims])
    group.close()  # its backend exits and reports what it read

    # By key, the three updates read the batch's 8 entries each; a walk over the key index
    # reads all 20,000 for each.
    assert len(claims) == 8
    wait_for(lambda: pkey_entries_read(engine) - before >= 24, timeout=15)
    assert pkey_entries_read(engine) - before < 5_000
