"""The store's verbs for `processes`: the workers and schedulers that say they are alive.

Each process writes its row from its heartbeat, so a row's `seen_at` is the process's last
heartbeat; a process that stops cleanly deletes its row, and one that died keeps a row that
stops moving until `forget_gone` deletes it.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

Kind = Literal["worker", "scheduler"]

_BEAT = sa.text(
    """
    INSERT INTO processes (kind, name) VALUES (:kind, :name)
    ON CONFLICT (kind, name) DO UPDATE SET seen_at = now()
    """
)
_LEAVE = sa.text("DELETE FROM processes WHERE kind = :kind AND name = :name")
_SEEN = sa.text(
    """
    SELECT kind, name, started_at, seen_at FROM processes
     WHERE seen_at > now() - make_interval(secs => :within)
     ORDER BY kind DESC, name
    """
)
_FORGET_GONE = sa.text(
    "DELETE FROM processes WHERE seen_at < now() - make_interval(secs => :after)"
)


@dataclass(frozen=True)
class Process:
    kind: Kind
    name: str
    started_at: datetime
    seen_at: datetime


def beat(conn: Connection, kind: Kind, name: str) -> None:
    """`name` is alive now (its first beat also records when it started)."""
    conn.execute(_BEAT, {"kind": kind, "name": name})


def leave(conn: Connection, kind: Kind, name: str) -> None:
    """`name` stopped cleanly."""
    conn.execute(_LEAVE, {"kind": kind, "name": name})


def seen(conn: Connection, within: float) -> list[Process]:
    """The processes whose last heartbeat is at most `within` seconds old, workers first."""
    return [Process(*row) for row in conn.execute(_SEEN, {"within": within})]


def forget_gone(conn: Connection, after: float) -> None:
    """Delete the rows of processes not seen for `after` seconds (they died)."""
    conn.execute(_FORGET_GONE, {"after": after})
