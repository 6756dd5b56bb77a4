"""pika's writes, coalesced: the frames waiting for a socket go out in one `send()`.

pika queues each frame it writes as a chunk of its own (a message is three: method, header
and body) and sends the chunks one `send()` each once the socket is writable. A batch of ten
messages in an AMQP transaction was 31 system calls, and RabbitMQ read as many segments: about
a sixth of the relay's CPU per look. `install()` makes the plaintext transport join the chunks
waiting (up to `MAX_BYTES` at a time) before it sends them, so a batch goes out in one write.

Only the plaintext transport is changed. A TLS write that must be retried has to be retried
with the same buffer, so joining chunks there could change a write midway; pika's own loop
stays. The bytes sent and their order are pika's, and a partial send keeps its remainder at
the front, as pika's loop does.
"""

from pika.adapters.utils.io_services_utils import _AsyncPlaintextTransport

#: The most bytes joined into one write: enough for hundreds of small messages, while a large
#: backlog is not copied whole at each partial send.
MAX_BYTES = 256 * 1024


def install() -> None:
    """Make every plaintext pika connection of this process coalesce its writes. Idempotent;
    a pika whose transport lacks the attributes this relies on is left as it is."""
    if _AsyncPlaintextTransport.__dict__.get("_produce") is _produce:
        return
    if hasattr(_AsyncPlaintextTransport, "_sigint_safe_send"):
        _AsyncPlaintextTransport._produce = _produce


def _produce(self: _AsyncPlaintextTransport) -> None:
    """pika's `_AsyncTransportBase._produce`, joining the waiting chunks before each send."""
    buffers = self._tx_buffers
    while buffers:
        if len(buffers) > 1 and len(buffers[0]) < MAX_BYTES:
            joined, size = [], 0
            while buffers and size < MAX_BYTES:
                chunk = buffers.popleft()
                joined.append(chunk)
                size += len(chunk)
            buffers.appendleft(b"".join(joined))
        sent = self._sigint_safe_send(self._sock, buffers[0])
        chunk = buffers.popleft()
        if sent < len(chunk):
            buffers.appendleft(chunk[sent:])
        self._tx_buffered_byte_count -= sent
