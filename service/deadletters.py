"""The dead-letter queue: what failed for good, kept in PostgreSQL where people can see it.

A message whose job failed for good is nacked and RabbitMQ's dead-letter exchange routes it to
`<queue>.XQ`, as are messages no worker could process at all (an unknown job type after a
deploy, an undecodable body). The scheduler drains every `.XQ` into `dead_letters` (RabbitMQ
would drop them after 7 days; see `service.drain`). The inspector lists them, groups them by
fingerprint (error type + normalized message), replays them (the job starts a new life with
fresh attempts and is published again) and purges them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from sqlalchemy.engine import Connection, Engine

from service import storable
from service.broker import Publish, queue_name, tier_of
from service.errors import BadRequest
from service.models import DeadLetter, Job
from service.queries import DEFAULT_LIMIT, MAX_LIMIT, query_error
from service.settings import Settings
from service.store import dead_letters
from service.strict import Whole

log = logging.getLogger(__name__)

_table = DeadLetter.__table__

# -- recording ---------------------------------------------------------------------------------


def record_job(conn: Connection, job: Job, settings: Settings) -> None:
    """Dead-letter a job that failed with no message in hand (its worker was lost)."""
    dead_letters.record(
        conn,
        job_id=job.id,
        type=job.type,
        queue=queue_name(settings, tier_of(job.priority)),
        message={"message_id": str(job.id), "actor_name": job.type, "kwargs": job.payload},
        error=job.error or {"type": "Failed", "message": "failed"},
    )


# -- inspecting --------------------------------------------------------------------------------


class ByIds(BaseModel):
    """`{"jobIds": [...]}`: these jobs' dead letters."""

    model_config = ConfigDict(extra="forbid")

    job_ids: list[uuid.UUID] = Field(alias="jobIds", min_length=1)


class ByFingerprint(BaseModel):
    """`{"fingerprint": "..."}`: every dead letter of one error fingerprint."""

    model_config = ConfigDict(extra="forbid")

    fingerprint: str = Field(min_length=1)


def _a_bool(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError("must be true")
    return value


class Everything(BaseModel):
    """`{"all": true}`: every dead letter."""

    model_config = ConfigDict(extra="forbid")

    # A bool first: `Literal[True]` alone takes 1 and 1.0 (equal to True), even in strict mode.
    all: Annotated[Literal[True], BeforeValidator(_a_bool)]


#: The body of `POST /dlq/replay` and `DELETE /dlq`: what `Selection.parse` validates and
#: /openapi.json describes.
SelectionBody = TypeAdapter(ByIds | ByFingerprint | Everything)

_SELECTION_SHAPES = 'expected exactly one of {"jobIds": [...]}, {"fingerprint": ...}, {"all": true}'


@dataclass
class Selection:
    """Which dead letters an operation applies to: ids, a fingerprint, or all."""

    job_ids: list[uuid.UUID] | None = None
    fingerprint: str | None = None
    all: bool = False

    @classmethod
    def parse(cls, body: Any) -> Selection:
        """From `{"jobIds": [...]}`, `{"fingerprint": "..."}` or `{"all": true}`; any other
        JSON value is a `BadRequest`; text PostgreSQL cannot store is a `ValidationFailed`."""
        storable.check(body)
        try:
            chosen = SelectionBody.validate_python(body)
        except ValidationError:
            if isinstance(body, dict) and set(body) == {"jobIds"}:
                raise BadRequest("jobIds must be a non-empty list of job ids (UUIDs)") from None
            raise BadRequest(_SELECTION_SHAPES) from None
        if isinstance(chosen, ByIds):
            return cls(job_ids=chosen.job_ids)
        if isinstance(chosen, ByFingerprint):
            return cls(fingerprint=chosen.fingerprint)
        return cls(all=True)


#: The largest id PostgreSQL's `bigint` holds: `before` past it is refused, not sent.
MAX_ID = 2**63 - 1


class DeadLetterQuery(BaseModel):
    """The query string of `GET /dlq`, validated strictly; /openapi.json describes it."""

    model_config = ConfigDict(extra="forbid")

    type: str | None = None
    queue: str | None = None
    fingerprint: str | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT), Whole] = DEFAULT_LIMIT
    before: Annotated[int, Field(ge=1, le=MAX_ID), Whole] | None = None

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> DeadLetterQuery:
        """Raises `BadRequest` naming the bad parameter."""
        storable.check_params(params)
        try:
            return cls.model_validate(params)
        except ValidationError as exc:
            raise BadRequest(query_error(exc, ", ".join(cls.model_fields))) from None


def page(
    conn: Connection,
    *,
    type: str | None = None,
    queue: str | None = None,
    fingerprint: str | None = None,
    limit: int = 50,
    before: int | None = None,
) -> list[DeadLetter]:
    """Dead letters, newest first; `before` is the id the previous page ended at."""
    statement = sa.select(_table).order_by(_table.c.id.desc()).limit(limit)
    for column, value in (("type", type), ("queue", queue), ("fingerprint", fingerprint)):
        if value is not None:
            statement = statement.where(_table.c[column] == value)
    if before is not None:
        statement = statement.where(_table.c.id < before)
    return [DeadLetter.model_validate(row._mapping) for row in conn.execute(statement)]


_GROUPS = sa.text(
    """
    SELECT g.fingerprint, g.count, latest.error AS sample, g.types, g.first, g.last
      FROM (SELECT fingerprint, count(*) AS count,
                   array_agg(DISTINCT type) FILTER (WHERE type IS NOT NULL) AS types,
                   min(dead_at) AS first, max(dead_at) AS last
              FROM dead_letters GROUP BY fingerprint) AS g
     CROSS JOIN LATERAL (
            SELECT error FROM dead_letters AS d WHERE d.fingerprint = g.fingerprint
             ORDER BY d.id DESC LIMIT 1) AS latest
     ORDER BY g.count DESC, g.last DESC
    """
)


def groups(conn: Connection) -> list[dict[str, Any]]:
    """One row per fingerprint: how many, the latest error, which types, first and last seen.

    The groups are counted from `dead_letters_fingerprint_idx` alone (it holds the type and
    time), and only each group's latest error is read from its row."""
    return [dict(row._mapping) for row in conn.execute(_GROUPS)]


# -- the Python API: warren.dlq ----------------------------------------------------------------


class Inspector:
    """The DLQ inspector: `warren.dlq.list()`, `.groups()`, `.replay(selection)`, `.purge(...)`."""

    def __init__(self, engine: Engine, settings: Settings, publish: Publish | None) -> None:
        """With no `publish`, replayed jobs are flagged for the scheduler's relay, which
        publishes them (`store.dead_letters.take_for_replay`)."""
        self.engine = engine
        self.settings = settings
        self.publish = publish

    def list(
        self,
        *,
        type: str | None = None,
        queue: str | None = None,
        fingerprint: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[DeadLetter]:
        """Dead letters, newest first, as `GET /dlq` lists them; `BadRequest` for a value it
        would refuse (a limit past 500, text where a number goes)."""
        given = dict(type=type, queue=queue, fingerprint=fingerprint, limit=limit, before=before)
        query = DeadLetterQuery.parse({name: v for name, v in given.items() if v is not None})
        if query.queue is not None and "." not in query.queue:
            query.queue = f"{self.settings.queue_prefix}.{query.queue}"
        with self.engine.connect() as conn:
            return page(conn, **query.model_dump())

    def groups(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return groups(conn)

    def replay(self, selection: Selection | Mapping[str, Any]) -> int:
        """Run the selected dead jobs again with fresh attempts; returns how many. Raises
        `NotFound` when a named job id is not in the DLQ (nothing is replayed then)."""
        selection = _selection_of(selection)
        with self.engine.begin() as conn:
            due = dead_letters.take_for_replay(conn, selection, for_relay=self.publish is None)
        if self.publish is not None:
            self.publish(due)
        return len(due)

    def purge(self, selection: Selection | Mapping[str, Any]) -> int:
        """Delete the selected dead letters; their jobs stay `failed`. Returns how many."""
        with self.engine.begin() as conn:
            return dead_letters.purge(conn, _selection_of(selection))


def _selection_of(value: Selection | Mapping[str, Any]) -> Selection:
    if isinstance(value, Selection):
        return value
    return Selection.parse(dict(value) if isinstance(value, Mapping) else value)
