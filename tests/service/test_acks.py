"""Acks wait for the record: a message whose success is not committed yet stays unacked, so
a worker that dies before the commit leaves it to RabbitMQ to deliver again."""

from concurrent.futures import Future

import dramatiq

from service.acks import ack_after
from service.broker import build_broker, queue_name
from tests.helpers import ready_messages, wait_for
from tests.jobtypes import run_count


def consumed(settings, queue: str):
    """A consumer of `queue` as a worker has it, and the one message it received."""
    broker = build_broker(settings)
    broker.enqueue(dramatiq.Message(queue, "test-noop", (), {}, {}))
    consumer = broker.consume(queue, prefetch=1, timeout=1000)
    message = next(m for m in consumer if m is not None)
    return broker, consumer, message


def test_an_ack_waits_until_the_success_is_recorded(settings, clean):
    queue = queue_name(settings, "normal")
    broker, consumer, message = consumed(settings, queue)
    recorded = Future()
    ack_after(message, recorded)
    consumer.ack(message)

    recorded.set_result(None)  # the commit: the ack goes out now
    next(consumer)  # the consumer's thread sends it
    consumer.close()
    broker.close()

    assert ready_messages(settings, queue) == 0


def test_a_message_whose_success_was_not_recorded_is_delivered_again(settings, clean):
    queue = queue_name(settings, "normal")
    broker, consumer, message = consumed(settings, queue)
    ack_after(message, Future())  # a commit that never came: the worker died first
    consumer.ack(message)
    next(consumer)

    consumer.close()
    broker.close()

    wait_for(lambda: ready_messages(settings, queue) == 1, what="the message back in its queue")


def test_a_worker_acks_every_message_it_completed(warren, worker, settings):
    jobs = warren.submit([{"type": "test-noop", "payload": {}}] * 20)
    wait_for(lambda: all(warren.get(job.id).status == "completed" for job in jobs))

    worker.stop()  # what it had not acked would go back to the queue now

    assert ready_messages(settings, queue_name(settings, "normal")) == 0


# -- claims at delivery: a job claimed while it waits for a thread ------------------------------


def waiting_behind_a_long_job(warren, engine, seconds: float):
    """With one thread, a job of `seconds` runs while the next, claimed at its delivery,
    waits for the thread as `processing`. Returns both ids."""
    running = warren.enqueue("test-record", {"seconds": seconds}).id
    wait_for(lambda: run_count(engine, str(running)) == 1, what="the long job to start")
    waiting = warren.enqueue("test-record", {"tag": "waiting"}).id
    wait_for(lambda: warren.get(waiting).status == "processing", what="the claim at delivery")
    assert run_count(engine, str(waiting)) == 0
    return running, waiting


def test_a_worker_that_stops_gives_back_the_jobs_it_claimed_but_never_started(
    warren, start_worker, engine
):
    worker = start_worker(threads=1)
    running, waiting = waiting_behind_a_long_job(warren, engine, seconds=2)

    worker.stop()  # as on SIGTERM: the running job finishes, the waiting one goes back

    assert warren.get(running).status == "completed"
    job = warren.get(waiting)
    assert (job.status, job.attempts, run_count(engine, str(waiting))) == ("pending", 0, 0)

    start_worker(threads=1)  # its message went back to RabbitMQ: the next worker runs it
    wait_for(lambda: warren.get(waiting).status == "completed")
    assert (warren.get(waiting).attempts, run_count(engine, str(waiting))) == (1, 1)


def test_a_job_cancelled_while_it_waits_for_a_thread_never_starts(warren, start_worker, engine):
    start_worker(threads=1, lease_seconds=3)  # a heartbeat a second
    running, waiting = waiting_behind_a_long_job(warren, engine, seconds=4)

    warren.cancel(waiting)

    wait_for(lambda: warren.get(waiting).status == "cancelled", timeout=15)
    assert run_count(engine, str(waiting)) == 0
    [attempt] = warren.attempts(waiting)
    assert attempt.error["message"] == "cancelled before it started"
    wait_for(lambda: warren.get(running).status == "completed")


def test_a_job_that_waits_for_a_thread_longer_than_a_lease_keeps_its_claim(
    warren, start_worker, scheduler, engine
):
    start_worker(threads=1, lease_seconds=2)
    scheduler(lease_seconds=2)  # it takes over any job whose lease runs out
    running, waiting = waiting_behind_a_long_job(warren, engine, seconds=6)

    wait_for(lambda: warren.get(waiting).status == "completed", timeout=20)

    assert (warren.get(waiting).attempts, run_count(engine, str(waiting))) == (1, 1)
    assert warren.get(running).attempts == 1


def test_a_job_claimed_before_its_type_was_paused_runs_and_the_next_one_waits(
    warren, start_worker, engine
):
    start_worker(threads=1)
    _, waiting = waiting_behind_a_long_job(warren, engine, seconds=2)

    warren.pause("type", "test-record")  # what the worker holds already is processing

    wait_for(lambda: warren.get(waiting).status == "completed", timeout=15)
    assert run_count(engine, str(waiting)) == 1
    later = warren.enqueue("test-record", {}).id
    wait_for(lambda: warren.get(later).life == 2, what="the next job to be parked")
    job = warren.get(later)
    assert (job.status, job.published_at, run_count(engine, str(later))) == ("pending", None, 0)
