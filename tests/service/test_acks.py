"""Acks wait for the record: a message whose success is not committed yet stays unacked, so
a worker that dies before the commit leaves it to RabbitMQ to deliver again."""

from concurrent.futures import Future

import dramatiq

from service.acks import ack_after
from service.broker import build_broker, queue_name
from tests.helpers import ready_messages, wait_for


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
