"""Reading jobs: one job, its attempts, filtered pages."""

import base64
import contextlib
import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, aliased

from service import storable
from service.enqueue import PRIORITY_INPUT, PRIORITY_NAMES, message_of
from service.errors import BadRequest, NotFound
from service.models import STATUSES, AttemptStatus, Job, JobAttempt, JobStatus
from service.strict import Whole, json_value, moment, whole_number

jobs = Job.__table__
attempts_table = JobAttempt.__table__

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
FILTERS = ("status", "type", "priority", "createdAfter", "createdBefore", "schedule")
PAGING = ("limit", "cursor", "offset")


def _status(value: str) -> str:
    if value not in STATUSES:
        raise ValueError(f"must be one of {', '.join(STATUSES)}")
    return value


def _priority(value: Any) -> Any:
    """`high`, `normal`, `low`, or the digits of a number."""
    if isinstance(value, str) and value in PRIORITY_NAMES:
        return PRIORITY_NAMES[value]
    return whole_number(value)


def _cursor(value: str) -> str:
    _decode_cursor(value)
    return value


Time = Annotated[AwareDatetime, BeforeValidator(moment)]
#: A job type's or a schedule's name: an empty one would select nothing, not everything.
Named = Annotated[str, Field(min_length=1)]


class JobQuery(BaseModel):
    """The query string of `GET /jobs` (but its `payload.<field>` filters), validated
    strictly: what `Filters.parse` reads and what /openapi.json describes."""

    model_config = ConfigDict(alias_generator=to_camel, extra="forbid")

    status: (
        Annotated[str, AfterValidator(_status), Field(json_schema_extra={"enum": list(STATUSES)})]
        | None
    ) = None
    type: Named | None = None
    priority: (
        Annotated[
            int,
            Field(ge=1, le=10),
            BeforeValidator(_priority, json_schema_input_type=PRIORITY_INPUT),
        ]
        | None
    ) = None
    created_after: Time | None = None
    created_before: Time | None = None
    schedule: Named | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT), Whole] = DEFAULT_LIMIT
    offset: Annotated[int, Field(ge=0, le=10**9), Whole] | None = None
    cursor: Annotated[str, AfterValidator(_cursor)] | None = None

    @model_validator(mode="after")
    def _one_way_to_page(self) -> "JobQuery":
        if self.cursor and self.offset is not None:
            raise ValueError("cursor and offset exclude each other")
        return self


@dataclass
class Filters:
    """Which jobs `GET /jobs` (and `warren jobs list`) returns, newest first."""

    status: str | None = None
    type: str | None = None
    priority: int | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    schedule: str | None = None
    payload: dict[str, str] = field(default_factory=dict)
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    offset: int | None = None

    @classmethod
    def of(cls, given: "Filters | Mapping[str, Any]", *, paging: bool = True) -> "Filters":
        """Filters from a Python caller's mapping of `GET /jobs` parameters, whose numbers may
        be numbers; without `paging`, `limit`, `cursor` and `offset` are unknown filters.
        Raises `TypeError` for what is no such mapping, `BadRequest` as `GET /jobs` does."""
        if isinstance(given, Filters):
            return given
        if not isinstance(given, Mapping):
            kind = type(given).__name__
            raise TypeError(f"a filter is a mapping of GET /jobs filters or Filters, not {kind}")
        params = {}
        for name, value in given.items():
            if not isinstance(name, str):
                raise TypeError(f"a filter's name is text, not {type(name).__name__}")
            if name in PAGING and not paging:
                known = ", ".join((*FILTERS, "payload.<field>"))
                raise BadRequest(f"unknown filter {name!r}; known: {known}")
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise BadRequest(f"filter {name!r} must be text or a whole number")
            params[name] = str(value)
        return cls.parse(params)

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> "Filters":
        """Filters from query-string parameters. Raises `BadRequest` naming the bad one."""
        storable.check_params(params)
        payload_names = [n for n in params if n.startswith("payload.") and n != "payload."]
        payload = {name.removeprefix("payload."): params[name] for name in payload_names}
        rest = {name: value for name, value in params.items() if name not in payload_names}
        try:
            query = JobQuery.model_validate(rest)
        except ValidationError as exc:
            known = ", ".join((*FILTERS, *PAGING, "payload.<field>"))
            raise BadRequest(query_error(exc, known)) from None
        return cls(payload=payload, **query.model_dump())


def query_error(exc: ValidationError, known: str) -> str:
    """The first of pydantic's errors about a query string as one line naming the parameter
    as the client spelled it: `status must be one of ...`, `unknown filter 'colour'; known:
    <known>`, `limit should be less than or equal to 500`. One line, because the CLI prints it
    as its one line of error."""
    error = exc.errors()[0]
    name = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] == "extra_forbidden":
        return f"unknown filter {name!r}; known: {known}"
    message = message_of(error)
    if name and message.startswith("Input should"):
        message = message.removeprefix("Input ")
    return f"{name} {message}" if name else message


@dataclass
class Page:
    jobs: list[Job]
    next_cursor: str | None


def get(conn: Connection, job_id: uuid.UUID) -> Job:
    [job] = _loaded(conn, sa.select(Job).where(jobs.c.id == job_id)) or [None]
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def existing(conn: Connection, job_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of `job_ids` are jobs."""
    ids = sa.bindparam("ids", job_ids, type_=postgresql.ARRAY(sa.Uuid))
    return set(conn.scalars(sa.select(jobs.c.id).where(jobs.c.id == sa.any_(ids))))


def attempts(conn: Connection, job_id: uuid.UUID) -> list[JobAttempt]:
    """A job's attempts in order. The job's current attempt, running or completed, is read
    from the job's row: the store writes an attempt's row only when the job moves on from it."""
    job = get(conn, job_id)
    ended = _loaded(
        conn,
        sa.select(JobAttempt)
        .where(attempts_table.c.job_id == job_id)
        .order_by(attempts_table.c.id),
    )
    current = _CURRENT_ATTEMPT.get(JobStatus(job.status))
    started = job.started_at is not None  # a claim waiting for a thread has not started yet
    if current and started and job.current_attempt_id not in {None, *(a.id for a in ended)}:
        ended.append(
            JobAttempt(
                id=job.current_attempt_id,
                job_id=job.id,
                number=job.attempts,
                life=job.life,
                status=current,
                worker=job.worker,
                started_at=job.started_at,
                finished_at=job.completed_at if current == AttemptStatus.COMPLETED else None,
            )
        )
    return ended


#: The statuses of a job whose current attempt is held by the job's row, and its status.
_CURRENT_ATTEMPT = {
    JobStatus.PROCESSING: AttemptStatus.RUNNING,
    JobStatus.COMPLETED: AttemptStatus.COMPLETED,
}


def conditions(filters: Filters) -> list[sa.ColumnElement[bool]]:
    """The WHERE clauses of `filters` (its paging aside): what `page` lists, and what the bulk
    verbs (`service.controls`) cancel or retry."""
    return _field_conditions(filters) + _payload_conditions(filters, jobs.c.payload)


def _payload_conditions(
    filters: Filters, payload: sa.ColumnElement
) -> list[sa.ColumnElement[bool]]:
    """The clauses of `filters`' payload fields, on `payload` (the table's column, or a
    subquery's)."""
    return [payload_matches(name, value, payload) for name, value in filters.payload.items()]


def _field_conditions(filters: Filters) -> list[sa.ColumnElement[bool]]:
    """The clauses of `filters` on the job's own columns: all but its payload fields."""
    found: list[sa.ColumnElement[bool]] = []
    if filters.status:
        found.append(jobs.c.status == filters.status)
    if filters.type:
        found.append(jobs.c.type == filters.type)
    if filters.priority is not None:
        found.append(jobs.c.priority == filters.priority)
    if filters.created_after:
        found.append(jobs.c.created_at > filters.created_after)
    if filters.created_before:
        found.append(jobs.c.created_at < filters.created_before)
    if filters.schedule:
        found.append(jobs.c.schedule_name == filters.schedule)
    return found


def _after_cursor(filters: Filters) -> list[sa.ColumnElement[bool]]:
    """The clause that starts a page after its cursor's job, if it has one."""
    if not filters.cursor:
        return []
    created, last_id = _decode_cursor(filters.cursor)
    return [sa.tuple_(jobs.c.created_at, jobs.c.id) < (created, last_id)]


def page(conn: Connection, filters: Filters) -> Page:
    if filters.payload:
        rows = _matching_payload(conn, filters)
    else:
        listing = sa.select(Job).where(*conditions(filters), *_after_cursor(filters))
        rows = _loaded(conn, _paged(listing.order_by(*_newest_first(jobs)), filters))
    more = len(rows) > filters.limit
    rows = rows[: filters.limit]
    cursor = _encode_cursor(rows[-1]) if more and rows else None
    return Page(rows, cursor)


def _newest_first(table: sa.FromClause) -> tuple[sa.ColumnElement, ...]:
    return table.c.created_at.desc(), table.c.id.desc()


def _paged(statement: sa.Select, filters: Filters) -> sa.Select:
    """`statement` cut to `filters`' page: past its offset, and one job more than the page
    holds, which tells whether another page follows."""
    if filters.offset:
        statement = statement.offset(filters.offset)
    return statement.limit(filters.limit + 1)


#: How many of the newest candidates a payload filter's first walk reads for each job its
#: page needs; how many candidates walked cost as much as one match read through the
#: payload's index (a random read, its payload tested too); and how many of the table's rows
#: a sample reads to estimate how many jobs match.
WALK_PER_JOB = 20
INDEX_WEIGHT = 2
SAMPLE_ROWS = 200

#: The jobs table's size, as PostgreSQL last estimated it (-1 before it ever did).
_TABLE_ROWS = sa.literal_column("(SELECT reltuples FROM pg_class WHERE oid = 'jobs'::regclass)")


def _matching_payload(conn: Connection, filters: Filters) -> list[Job]:
    """A page of jobs whose payload fields match, found without PostgreSQL's estimate of how
    many jobs match.

    PostgreSQL estimates a containment (`@>`) on `jsonb` from the hundred payloads its ANALYZE
    keeps: a value found among them reads as one job in a hundred, any other as one in ten
    thousand, and when payloads are larger than a kilobyte it keeps none and guesses one in a
    hundred. The first estimate walks the creation-time index testing each payload; the
    second asks the payload's GIN index for every match and sorts them. Each plan is slow
    where the other is fast, and a value's plan changed with each ANALYZE.

    So the page walks the newest candidates (the other filters and the cursor applied), a
    bounded number of them: a common value fills the page at once. Otherwise a sample of the
    table tells about how many jobs match, and the page walks on as far as reading all of
    them through the index would cost (`_walk_on`), or takes them from the index."""
    skipped = filters.offset or 0
    walked = WALK_PER_JOB * (skipped + filters.limit + 1)
    found = _walk(conn, filters, walked)
    if len(found) <= filters.limit:
        farther = _walk_on(conn, filters, walked, met=skipped + len(found))
        if farther > walked:
            found = _walk(conn, filters, farther)
    if len(found) > filters.limit:
        statement = sa.select(Job).where(jobs.c.id.in_(found))
        return _loaded(conn, statement.order_by(*_newest_first(jobs)))
    return _loaded(conn, _from_the_index(filters))


def _walk_on(conn: Connection, filters: Filters, walked: int, met: int) -> int:
    """How many candidates a second walk should read, after the first met `met` matches among
    `walked`: never more than reading every match through the index is worth. If the first
    met some, three times as many as their rate promises the page needs, or none when even
    the promise is worth more than the index; if it met none, the matches may all be older."""
    worth = INDEX_WEIGHT * _estimated_matches(conn, filters)
    if not met:
        return math.floor(worth)
    promised = walked * ((filters.offset or 0) + filters.limit + 1) / met
    return math.ceil(min(3 * promised, worth)) if promised <= worth else 0


def _estimated_matches(conn: Connection, filters: Filters) -> float:
    """How many jobs' payloads match, from the share of a sample of about `SAMPLE_ROWS` rows
    (whole pages picked at random: `TABLESAMPLE SYSTEM`) and PostgreSQL's estimate of the
    table's size; at most twice as many rows are read when that estimate is behind. The
    pages are picked the same way each time (`REPEATABLE`), so they stay in memory and a
    value's estimate is the same from one request to the next."""
    percent = 100.0 * SAMPLE_ROWS / sa.func.greatest(_TABLE_ROWS, SAMPLE_ROWS)
    picked = sa.tablesample(jobs, sa.func.system(percent), name="picked", seed=sa.literal(0))
    sample = sa.select(picked.c.payload).limit(2 * SAMPLE_ROWS).subquery()
    matching = sa.and_(*_payload_conditions(filters, sample.c.payload))
    hits, sampled, table_rows = conn.execute(
        sa.select(sa.func.count().filter(matching), sa.func.count(), _TABLE_ROWS)
    ).one()
    return hits / sampled * table_rows if sampled and table_rows > 0 else 0.0


def _walk(conn: Connection, filters: Filters, candidates: int) -> list[uuid.UUID]:
    """The ids of `filters`' page (one more than its limit) among the newest `candidates`
    jobs that meet its other clauses, whose payload matches. The limit on the candidates
    keeps PostgreSQL from testing the payloads first: it walks an index in creation order,
    and stops as soon as it has found the page."""
    newest = (
        sa.select(jobs.c.id, jobs.c.created_at, jobs.c.payload)
        .where(*_field_conditions(filters), *_after_cursor(filters))
        .order_by(*_newest_first(jobs))
        .limit(candidates)
        .subquery()
    )
    matching = sa.select(newest.c.id).where(*_payload_conditions(filters, newest.c.payload))
    return list(conn.scalars(_paged(matching.order_by(*_newest_first(newest)), filters)))


def _from_the_index(filters: Filters) -> sa.Select:
    """The page of `filters` from all matching jobs, sorted: the `OFFSET 0` keeps PostgreSQL
    from planning their search for the page's order, so it asks the payload's index for
    them."""
    everyone = (
        sa.select(jobs).where(*conditions(filters), *_after_cursor(filters)).offset(0).subquery()
    )
    listing = sa.select(aliased(Job, everyone)).order_by(*_newest_first(everyone))
    return _paged(listing, filters)


def _loaded(conn: Connection, statement: sa.Select) -> list:
    """The models `statement` selects, loaded by SQLAlchemy's ORM, which fills them from the
    typed rows directly: validating each row into a model instead cost more than the query
    (60 ms for a page of 500 jobs)."""
    with Session(bind=conn) as session:
        return list(session.scalars(statement))


def payload_matches(name: str, value: str, payload: sa.ColumnElement) -> sa.ColumnElement[bool]:
    """`payload.<name>=<value>`: the payload's top-level field `name` is `value`, or a list
    holding it. A value that reads as a JSON number or boolean matches that too, so `3`
    finds `{"n": 3}` and `{"n": "3"}`, and `true` finds `{"on": true}`.

    Written as JSON containment (`@>`), which the payload's GIN index answers, rather than
    comparing `payload->>name`, which reads every row when nothing matches."""
    candidates: list[object] = [value]
    with contextlib.suppress(ValueError):  # NaN and Infinity: not JSON, and jsonb cannot hold them
        parsed = json_value(value)
        if isinstance(parsed, bool | int) or (isinstance(parsed, float) and math.isfinite(parsed)):
            candidates.append(parsed)
    return sa.or_(*(payload.contains({name: shape}) for c in candidates for shape in (c, [c])))


def _encode_cursor(job: Job) -> str:
    raw = json.dumps([job.created_at.isoformat(), str(job.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor of `_encode_cursor` holds. Anything else, forged or mangled, is
    a `ValueError`: its parts must be an aware time within UTC's years and a UUID, as text."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job_id = json.loads(raw)
        if not isinstance(created, str) or not isinstance(job_id, str):
            raise TypeError("a cursor holds a time and an id, as text")
        return moment(created), uuid.UUID(job_id)
    except (ValueError, TypeError, RecursionError):
        raise ValueError("is not one this API returned") from None
