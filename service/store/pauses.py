"""The job store's verbs for `pauses`: what an operator paused, a tier or a job type.

A pause is a row; resuming deletes it. Both verbs are idempotent: pausing what is paused keeps
its first `paused_at`, resuming what is not paused changes nothing.
"""

from dataclasses import dataclass, field
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

Kind = Literal["tier", "type"]
KINDS: tuple[Kind, ...] = ("tier", "type")


@dataclass(frozen=True)
class Paused:
    """What is paused: tier names and job type names. Empty: nothing is."""

    tiers: frozenset[str] = field(default_factory=frozenset)
    types: frozenset[str] = field(default_factory=frozenset)

    def holds(self, tier: str | None, type: str) -> bool:
        """Whether a job of `type` on `tier` must wait."""
        return type in self.types or (tier is not None and tier in self.tiers)

    def __bool__(self) -> bool:
        return bool(self.tiers or self.types)


_PAUSE = sa.text(
    "INSERT INTO pauses (kind, name) VALUES (:kind, :name) ON CONFLICT DO NOTHING RETURNING name"
)
_RESUME = sa.text("DELETE FROM pauses WHERE kind = :kind AND name = :name RETURNING name")
_EVERY = sa.text("SELECT kind, name FROM pauses")


def pause(conn: Connection, kind: Kind, name: str) -> bool:
    """Pause a tier or a job type. True if it was not paused before."""
    return conn.execute(_PAUSE, {"kind": kind, "name": name}).first() is not None


def resume(conn: Connection, kind: Kind, name: str) -> bool:
    """End a pause. True if it was paused."""
    return conn.execute(_RESUME, {"kind": kind, "name": name}).first() is not None


def every(conn: Connection) -> Paused:
    """Everything paused now."""
    rows = conn.execute(_EVERY).all()
    return Paused(
        tiers=frozenset(name for kind, name in rows if kind == "tier"),
        types=frozenset(name for kind, name in rows if kind == "type"),
    )
