"""The worker's RabbitMQ consumer: it claims at delivery, and it acks once the record is
committed.

Claims at delivery: the messages that arrive together are claimed in one batch from the
consumer's thread (`Lifecycle.claim_delivered`), so a worker thread that takes one starts it
at once instead of waiting for a claim of its own; see the lifecycle for what a job claimed
but not yet started may rely on.

Acks that wait for the record:
A worker thread hands a success to the group commit and goes on to its next message without
waiting (see `Lifecycle._record_success`); the completion then shares a transaction with the
claims of the next jobs, one commit where there were two. The message's ack waits instead:
the lifecycle pins a future to the message (`ack_after`), and this consumer sends the ack when
that future is done. A worker that dies in between leaves the message unacked; RabbitMQ
redelivers it, and the job, still `processing` under a lease that nobody renews, is taken over
and run again, as for a worker that died while running it.
"""

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from functools import partial
from typing import Any

import pika
from dramatiq.brokers.rabbitmq import RabbitmqBroker, _RabbitmqConsumer

ACK_AFTER = "ack_after"
#: The attribute of a message that holds the claim made at its delivery, if one was.
CLAIMED = "warren_claim"


def ack_after(message: Any, recorded: "Future | Recorded") -> None:
    """Hold `message`'s ack until `recorded` is done."""
    setattr(message, ACK_AFTER, recorded)


class Recorded:
    """A one-shot latch between the writer that commits an outcome (`done()`) and the consumer
    that would ack its message (`add_done_callback`, as on a `Future`): whichever comes
    second runs the callback. A `Future` does the same with a condition variable and a list
    of callbacks, which a worker paid for on every job."""

    __slots__ = ("_callback", "_done", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False
        self._callback: Callable[[Recorded], object] | None = None

    def done(self) -> None:
        with self._lock:
            self._done = True
            callback, self._callback = self._callback, None
        if callback is not None:
            callback(self)

    def add_done_callback(self, callback: Callable[["Recorded"], object]) -> None:
        with self._lock:
            if not self._done:
                self._callback = callback
                return
        callback(self)


class _RecordedConsumer(_RabbitmqConsumer):
    """Acks a message once its outcome is recorded, and acks runs of messages with one frame.

    The acks a commit releases are sent together by one callback on the consumer's connection
    (one wake-up of its thread, not one per message). RabbitMQ numbers a channel's deliveries
    1, 2, 3, ..., so the callback knows the lowest one not settled yet (`_floor`): when the
    messages from there on are ready, one `basic.ack` with `multiple` settles them all, where
    Dramatiq sends a frame per message. A message settled out of that order (acked while an
    earlier one still runs, or nacked) gets a frame of its own, as before. Nacks go through the
    same connection thread and are noted there, so a multiple ack never covers a message that
    is to be nacked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._claimer = next(
            (m for m in self.broker.middleware if hasattr(m, "claim_delivered")), None
        )
        self._handout: deque[Any] = deque()
        self._pump = _ConnectionPump(self.connection)
        self._ready: list[int] = []
        self._ready_lock = threading.Lock()
        # Owned by the connection's thread (its callbacks):
        self._floor = 1
        self._settled: set[int] = set()

    def __next__(self) -> Any:
        """The next message, claimed at delivery where it could be: the messages that arrived
        together are claimed in one batch (`Lifecycle.claim_delivered`), then handed out one
        by one."""
        if self._handout:
            return self._handout.popleft()
        message = super().__next__()
        if message is None or self._claimer is None:
            return message
        burst = [message]
        for _ in range(self.channel.get_waiting_message_count()):
            more = super().__next__()
            if more is not None:
                burst.append(more)
        self._claimer.claim_delivered(burst, self._pump)
        self._handout.extend(burst[1:])
        return burst[0]

    def requeue(self, messages: Iterable[Any]) -> None:
        """The worker stops with these messages unstarted: give back their claims before the
        connection closes and RabbitMQ delivers them again."""
        if self._claimer is not None:
            self._claimer.release_unstarted(messages)

    def close(self) -> None:
        if self._claimer is not None and self._handout:
            self._claimer.release_unstarted(self._handout)
        self._handout.clear()
        super().close()

    def ack(self, message: Any) -> None:
        recorded: Future | None = getattr(message, ACK_AFTER, None)
        if recorded is None:
            self._release(message)
        else:
            recorded.add_done_callback(lambda _: self._release(message))

    def _release(self, message: Any) -> None:
        try:
            self.known_tags.remove(message._tag)
        except KeyError:  # the connection was reset since: RabbitMQ redelivers the message
            return
        with self._ready_lock:
            self._ready.append(message._tag)
            first = len(self._ready) == 1
        if not first:
            return
        try:
            self.connection.add_callback_threadsafe(self._send_acks)
        except pika.exceptions.AMQPError:  # closed: RabbitMQ redelivers what was not acked
            with self._ready_lock:
                self._ready.clear()

    def _send_acks(self) -> None:
        with self._ready_lock:
            ready, self._ready = set(self._ready), []
        run_end = None
        while self._floor in ready or self._floor in self._settled:
            if self._floor in ready:
                ready.discard(self._floor)
                run_end = self._floor
            else:
                self._settled.discard(self._floor)
            self._floor += 1
        if run_end is not None:
            self.channel.basic_ack(run_end, multiple=True)
        for tag in ready:
            self.channel.basic_ack(tag)
        self._settled |= ready

    def _nack(self, tag: int) -> None:
        self.connection.add_callback_threadsafe(partial(self._send_nack, tag))

    def _send_nack(self, tag: int) -> None:
        self.channel.basic_nack(tag, requeue=False)
        if tag == self._floor:
            self._floor += 1
            while self._floor in self._settled:
                self._settled.discard(self._floor)
                self._floor += 1
        else:
            self._settled.add(tag)


class _ConnectionPump:
    """While the consumer's thread waits for the claims of a burst, its connection goes on:
    acks released meanwhile go out, so RabbitMQ delivers the next messages, and those are
    read into the consumer's buffer, to be the next burst. Blocked instead, the thread held
    back every ack for a commit's round trip, and the worker's threads waited for messages.
    A connection that failed is left alone: its error comes with the next delivery."""

    __slots__ = ("connection",)

    def __init__(self, connection: pika.BlockingConnection) -> None:
        self.connection = connection

    def wait(self) -> None:
        try:
            self.connection.process_data_events(time_limit=1)
        except pika.exceptions.AMQPError:
            time.sleep(0.01)

    def wake(self) -> None:
        with contextlib.suppress(pika.exceptions.AMQPError):
            self.connection.add_callback_threadsafe(_nothing)


def _nothing() -> None:
    pass


class Broker(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker, with consumers whose acks wait for the record."""

    @property
    def consumer_class(self) -> type[_RabbitmqConsumer]:
        return _RecordedConsumer
