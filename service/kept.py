"""A connection per thread, kept between uses: what a server's enqueues run on.

A server answers each enqueue with one INSERT on a thread of a fixed pool. Checking a
connection out of SQLAlchemy's pool and back in costs that thread about as much client time
as the insert itself, so each thread keeps the connection of its last enqueue instead. What
the pool's checkout would do is done here: a connection idle for `IDLE_CHECK_SECONDS` is
pinged before it is used, so the first enqueue after a pause does not fail on a connection
the server closed meanwhile; one that broke, or failed its ping, goes back to the pool to be
discarded, and costs at most the enqueue that was using it. A thread's connection goes back
to the pool when the thread ends, or at `close()`.
"""

import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection, Engine

from service.db import IDLE_CHECK_SECONDS, answers


class _Kept:
    """One thread's connection and when it was last used."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.used_at = time.monotonic()

    def usable(self) -> bool:
        if _broken(self.connection):
            return False
        if time.monotonic() - self.used_at < IDLE_CHECK_SECONDS:
            return True
        return answers(self.connection.dialect, self.connection.connection.dbapi_connection)


def _broken(connection: Connection) -> bool:
    if connection.closed or connection.invalidated:
        return True
    driver = connection.connection.driver_connection
    return driver.closed or driver.broken


def _release(connection: Connection, dead: bool = False) -> None:
    """Back to the pool, which discards it if it is `dead` or broke. Safe to call twice."""
    if connection.closed:
        return
    if not connection.invalidated and (dead or _broken(connection)):
        connection.invalidate()
    connection.close()


class KeptConnections:
    """Connections of `engine` (an autocommit one), one per thread that asks."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()
        self._all: weakref.WeakSet[_Kept] = weakref.WeakSet()
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """This thread's connection, usable; it stays this thread's after the block."""
        kept = self._take()
        try:
            yield kept.connection
        finally:
            kept.used_at = time.monotonic()

    def close(self) -> None:
        """Hand every kept connection back to the pool."""
        with self._lock:
            kept, self._all = list(self._all), weakref.WeakSet()
        for one in kept:
            _release(one.connection)
        self._local = threading.local()

    def _take(self) -> _Kept:
        kept: _Kept | None = getattr(self._local, "kept", None)
        if kept is not None:
            if kept.usable():
                return kept
            self._local.kept = None  # whatever happens next, this one is not kept
            _release(kept.connection, dead=True)
        kept = self._local.kept = _Kept(self.engine.connect())
        weakref.finalize(kept, _release, kept.connection)  # when the thread ends
        with self._lock:
            self._all.add(kept)
        return kept
