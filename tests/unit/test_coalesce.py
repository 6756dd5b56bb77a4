"""service.coalesce when the socket takes less than it is given: what it did not take is sent
next, first, and RabbitMQ would read pika's bytes in pika's order. (tests/service has the
batch that leaves in a few writes, against the real RabbitMQ.)

The transport here is pika's own, on a real socket pair with a small send buffer."""

import contextlib
import socket
from collections.abc import Iterator

import pytest
from pika.adapters.utils.io_services_utils import _AsyncPlaintextTransport

from service import coalesce


class Loop:
    """The part of pika's I/O services a transport calls while it writes: nothing to do."""

    def set_reader(self, fd: int, on_readable: object) -> None: ...

    def set_writer(self, fd: int, on_writable: object) -> None: ...

    def remove_writer(self, fd: int) -> bool:
        return True


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    sender, theirs = socket.socketpair()
    sender.setblocking(False)
    theirs.settimeout(5)
    yield sender, theirs
    sender.close()
    theirs.close()


def frames(count: int, size: int) -> list[bytes]:
    """`count` distinct chunks of `size` bytes, as pika's frames would be."""
    return [f"{n:08d}".encode().ljust(size, b".") for n in range(count)]


def received(theirs: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += theirs.recv(size - len(data))
    return data


def test_a_send_the_socket_cuts_short_keeps_the_rest_first_and_loses_nothing(pair) -> None:
    sender, theirs = pair
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    coalesce.install()
    assert _AsyncPlaintextTransport._produce is coalesce._produce  # else pika's own loop runs
    transport = _AsyncPlaintextTransport(sender, protocol=None, nbio=Loop())
    chunks = frames(4000, 150)  # 600 KB: more than one join and far more than the socket holds
    for chunk in chunks:
        transport.write(chunk)

    data = b""
    while transport.get_write_buffer_size():
        with contextlib.suppress(BlockingIOError):  # pika waits until writable, then again
            transport._produce()
        data += theirs.recv(1 << 20)
    data += received(theirs, len(chunks) * 150 - len(data))

    assert data == b"".join(chunks)
    assert transport._tx_buffered_byte_count == 0
