"""The job store's verbs for `schedules`: create, change, delete, sync from code, and the
firing scheduler's two: lock the due schedules, move one on past its fired slots."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Row

from service.errors import Conflict, NotFound
from service.models import Schedule

_COLUMNS = ("name", "cron", "timezone", "type", "payload", "options", "enabled", "catch_up")
_JSON = (sa.bindparam("payload", type_=JSONB), sa.bindparam("options", type_=JSONB))

_CREATE = sa.text(
    f"""
    INSERT INTO schedules ({", ".join(_COLUMNS)}, declared_in_code, next_run_at, created_at,
                           updated_at)
    VALUES ({", ".join(f":{c}" for c in _COLUMNS)}, :declared_in_code, :next_run_at, now(), now())
    ON CONFLICT (name) DO NOTHING
    RETURNING *
    """
).bindparams(*_JSON)


def create(
    conn: Connection, values: dict[str, Any], next_run_at: datetime, in_code: bool = False
) -> Schedule:
    """Store a new schedule. Raises `Conflict` when the name is taken."""
    params = values | {"next_run_at": next_run_at, "declared_in_code": in_code}
    row = conn.execute(_CREATE, params).first()
    if row is None:
        raise Conflict(f"schedule {values['name']!r} exists already")
    return _schedule(row)


_SYNC = sa.text(
    f"""
    INSERT INTO schedules ({", ".join(_COLUMNS)}, declared_in_code, next_run_at, created_at,
                           updated_at)
    VALUES ({", ".join(f":{c}" for c in _COLUMNS)}, true, :next_run_at, now(), now())
    ON CONFLICT (name) DO UPDATE SET
        next_run_at = CASE WHEN (schedules.cron, schedules.timezone)
                                IS DISTINCT FROM (excluded.cron, excluded.timezone)
                           THEN excluded.next_run_at ELSE schedules.next_run_at END,
        cron = excluded.cron, timezone = excluded.timezone, type = excluded.type,
        payload = excluded.payload, options = excluded.options, catch_up = excluded.catch_up,
        declared_in_code = true, updated_at = now()
    RETURNING *
    """
).bindparams(*_JSON)


def sync(conn: Connection, values: dict[str, Any], next_run_at: datetime) -> Schedule:
    """Store a schedule declared in code: new, or its definition updated. Whether it is
    enabled stays as a person left it, and its next slot stays unless its time changed."""
    return _schedule(conn.execute(_SYNC, values | {"next_run_at": next_run_at}).one())


_UPDATE = sa.text(
    f"""
    UPDATE schedules SET {", ".join(f"{c} = :{c}" for c in _COLUMNS[1:])},
           next_run_at = :next_run_at, updated_at = now()
     WHERE name = :name
    RETURNING *
    """
).bindparams(*_JSON)


def update(conn: Connection, values: dict[str, Any], next_run_at: datetime) -> Schedule:
    """Replace a schedule's definition and next slot. Raises `NotFound`."""
    row = conn.execute(_UPDATE, values | {"next_run_at": next_run_at}).first()
    if row is None:
        raise NotFound(f"schedule {values['name']!r} not found")
    return _schedule(row)


_DELETE = sa.text("DELETE FROM schedules WHERE name = :name")
_EVERY = sa.text("SELECT * FROM schedules ORDER BY name")


def delete(conn: Connection, name: str) -> None:
    """Delete a schedule; the jobs it created stay. Raises `NotFound`."""
    if not conn.execute(
        sa.text("DELETE FROM schedules WHERE name = :name"), {"name": name}
    ).rowcount:
        raise NotFound(f"schedule {name!r} not found")


def get(conn: Connection, name: str, lock: bool = False) -> Schedule:
    """One schedule, locked for the transaction with `lock`. Raises `NotFound`."""
    statement = "SELECT * FROM schedules WHERE name = :name" + (" FOR UPDATE" if lock else "")
    row = conn.execute(sa.text(statement), {"name": name}).first()
    if row is None:
        raise NotFound(f"schedule {name!r} not found")
    return _schedule(row)


def every(conn: Connection) -> list[Schedule]:
    return [
        _schedule(row) for row in conn.execute(sa.text("SELECT * FROM schedules ORDER BY name"))
    ]


_DUE = sa.text(
    """
    SELECT * FROM schedules WHERE enabled AND next_run_at <= :now
     ORDER BY next_run_at LIMIT :limit FOR UPDATE SKIP LOCKED
    """
)


def due(conn: Connection, now: datetime, limit: int = 500) -> list[Schedule]:
    """Enabled schedules whose next slot has come by `now`, locked; those another scheduler
    holds are left to it."""
    return [_schedule(row) for row in conn.execute(_DUE, {"now": now, "limit": limit})]


_ADVANCE = sa.text(
    """
    UPDATE schedules SET next_run_at = moved.next_run_at,
           last_run_at = CASE WHEN moved.job_id IS NULL THEN last_run_at
                              ELSE CAST(:now AS timestamptz) END,
           last_job_id = coalesce(moved.job_id, last_job_id)
      FROM unnest(CAST(:names AS text[]), CAST(:next AS timestamptz[]), CAST(:jobs AS uuid[]))
           AS moved(name, next_run_at, job_id)
     WHERE schedules.name = moved.name
    """
)


def advance(conn: Connection, moves: list[tuple[str, datetime, Any]], now: datetime) -> None:
    """Move locked schedules on: `(name, next_run_at, job id fired last or None)` each."""
    if moves:
        names, following, job_ids = (list(column) for column in zip(*moves, strict=True))
        conn.execute(_ADVANCE, {"names": names, "next": following, "jobs": job_ids, "now": now})


def _schedule(row: Row) -> Schedule:
    return Schedule.model_validate(dict(row._mapping))
