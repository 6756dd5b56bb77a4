"""A connection per thread, kept between uses: what a server's enqueues run on.

A server answers each enqueue with one INSERT on a thread of a fixed pool. Checking a
connection out of SQLAlchemy's pool and back in costs that thread about as much client time
as the insert itself, so each thread keeps the connection of its last enqueue instead. What
the pool's checkout would do is done here, before each use: a connection that broke, or that
the server ended meanwhile (`service.db.hung_up`, no round trip), goes back to the pool to be
discarded, and the thread takes a new one. A connection that breaks while an enqueue uses it
costs that enqueue alone. A thread's connection goes back to the pool when the thread ends,
or at `close()`.
"""

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection, Engine

from service.db import hung_up


class _Kept:
    """One thread's connection."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def usable(self) -> bool:
        return not _broken(self.connection) and not hung_up(
            self.connection.connection.dbapi_connection
        )


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
        yield self._take().connection

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
