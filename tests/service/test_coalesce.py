"""Coalesced writes: a batch of messages reaches RabbitMQ in a few writes, whole and in order."""

import uuid
from typing import Any

import pika
from dramatiq import Message

from service.broker import Dispatch, Publisher, build_broker, pika_parameters, queue_name
from tests.helpers import ready_messages


class CountingSocket:
    """A socket that counts its `send()` calls and is otherwise the socket it wraps."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.sends = 0

    def send(self, data: bytes) -> int:
        self.sends += 1
        return self.sock.send(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def test_a_batch_of_messages_goes_out_in_a_few_writes_and_arrives_whole(settings, clean):
    publisher = Publisher(build_broker(settings), settings)
    transport = publisher._batch_channel().connection._impl._transport
    counting = transport._sock = CountingSocket(transport._sock)
    jobs = [
        Dispatch(
            id=uuid.uuid4(), type="test-record", payload={"n": n}, priority=5, timeout_seconds=60
        )
        for n in range(200)
    ]

    try:
        assert publisher.publish_many(jobs) == jobs
    finally:
        publisher.close()

    # pika alone writes three chunks a message, one send() each: 600 and the commit
    assert counting.sends <= 10
    queue = queue_name(settings, "normal")
    assert ready_messages(settings, queue) == 200
    connection = pika.BlockingConnection(pika_parameters(settings))
    try:
        channel = connection.channel()
        bodies = [channel.basic_get(queue, auto_ack=True)[2] for _ in range(200)]
    finally:
        connection.close()
    received = [Message.decode(body) for body in bodies]
    assert [(m.message_id, m.kwargs) for m in received] == [
        (str(job.id), job.payload) for job in jobs
    ]
