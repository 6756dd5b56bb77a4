"""RabbitMQ as readers see it: is it reachable, and how deep are the tier queues.

`GET /health` needs no token and `GET /stats` is called by dashboards in a loop: a connection
per call would let anyone make RabbitMQ open and close connections as fast as they can send
requests. One connection serves every call of a process, one call at a time (pika's blocking
connection is not thread-safe), and is opened again after it was lost; the reachability check
is kept for `ttl` seconds.
"""

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

import pika
from pika.adapters.blocking_connection import BlockingChannel

from service.broker import PublishErrors, pika_parameters, queue_families
from service.settings import Settings

#: This connection, as RabbitMQ's management UI names it (after the queue prefix).
PURPOSE = "health and stats"


class _QuietProbes(logging.Filter):
    """Drops what pika's channels log in a thread while it asks RabbitMQ whether a queue
    exists: the broker answers "no" by closing the channel, which pika logs as a warning, but
    a queue no worker has declared yet is an answer here, not a fault."""

    def __init__(self) -> None:
        super().__init__()
        self._probing = threading.local()

    @contextlib.contextmanager
    def probing(self) -> Iterator[None]:
        self._probing.on = True
        try:
            yield
        finally:
            self._probing.on = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self._probing, "on", False)


_QUIET = _QuietProbes()


class BrokerView:
    def __init__(self, settings: Settings, ttl: float = 1.0) -> None:
        self.settings = settings
        self.ttl = ttl
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._checked: tuple[float, str] | None = None
        logging.getLogger("pika.channel").addFilter(_QUIET)  # a no-op if it is there already

    def health(self) -> str:
        """`"ok"`, or `"unreachable: <reason>"`; at most one check per `ttl` seconds."""
        with self._lock:
            now = time.monotonic()
            if self._checked is None or now - self._checked[0] >= self.ttl:
                self._checked = (now, self._check())
            return self._checked[1]

    def depths(self) -> dict[str, dict[str, int]]:
        """Messages and consumers of each tier queue and its `.DQ` and `.XQ`, as RabbitMQ
        reports them; a queue not declared yet is left out; empty when RabbitMQ is
        unreachable."""
        with self._lock:
            for _ in range(2):  # the connection may have died since the last call
                try:
                    return self._depths()
                except PublishErrors:
                    self._close()
            return {}

    def close(self) -> None:
        with self._lock:
            self._close()

    def _check(self) -> str:
        try:
            self._open().process_data_events(time_limit=0)
            return "ok"
        except PublishErrors:
            self._close()
        try:  # the connection may have died since the last call: one fresh try
            self._open().process_data_events(time_limit=0)
            return "ok"
        except PublishErrors as exc:
            self._close()
            return f"unreachable: {exc.__class__.__name__}"

    def _depths(self) -> dict[str, dict[str, int]]:
        depths: dict[str, dict[str, int]] = {}
        for family in queue_families(self.settings):
            for queue in family:
                try:
                    with _QUIET.probing():
                        ok = self._open_channel().queue_declare(queue, passive=True).method
                except pika.exceptions.ChannelClosedByBroker:
                    self._channel = None  # the broker closes a channel asked for a missing queue
                    continue
                depths[queue] = {"messages": ok.message_count, "consumers": ok.consumer_count}
        return depths

    def _open(self) -> pika.BlockingConnection:
        if self._connection is None or not self._connection.is_open:
            self._close()
            self._connection = pika.BlockingConnection(pika_parameters(self.settings, PURPOSE))
        return self._connection

    def _open_channel(self) -> BlockingChannel:
        if self._channel is None or not self._channel.is_open:
            self._channel = self._open().channel()
        return self._channel

    def _close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(*PublishErrors):
                connection.close()
