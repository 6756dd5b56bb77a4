"""The JSON shapes of the API's answers, as pydantic models for /openapi.json.

The answers themselves are built by `api.views` and the resources; these models only
describe them. They cannot drift silently: the schemathesis test (tests/e2e) checks every
answer of a live `warren api` against the document they generate.
"""

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from service.models import STATUSES

Status = Literal[STATUSES]  # type: ignore[valid-type]

#: Every error code of CONTRACT.md and README.
ERROR_CODES = (
    "bad_request",
    "unknown_job_type",
    "validation_error",
    "payload_too_large",
    "unsupported_media_type",
    "not_found",
    "conflict",
    "unauthorized",
    "forbidden",
    "unavailable",
    "internal",
)


class Shape(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class FieldError(Shape):
    field: str
    message: str


class ErrorInfo(Shape):
    code: Literal[ERROR_CODES]  # type: ignore[valid-type]
    message: str
    details: list[FieldError]


class Error(Shape):
    """Every error: a stable code, a message, and the fields at fault."""

    success: Literal[False]
    error: ErrorInfo


class Job(Shape):
    id: uuid.UUID
    type: str
    status: Status
    priority: int = Field(ge=1, le=10)
    payload: dict[str, Any]
    result: Any
    error: dict[str, Any] | None
    attempts: int
    life: int
    max_attempts: int
    timeout_seconds: int
    retry: dict[str, Any] | None
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    next_attempt_at: datetime | None
    cancel_requested_at: datetime | None
    progress: dict[str, Any] | None
    schedule_name: str | None
    scheduled_for: datetime | None


class Attempt(Shape):
    number: int
    life: int | None
    status: str
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    worker: str | None
    error: dict[str, Any] | None
    traceback: str | None


class DeadLetter(Shape):
    id: int
    job_id: uuid.UUID | None
    type: str | None
    queue: str
    error: dict[str, Any]
    fingerprint: str
    dead_at: datetime
    payload: Any
    x_death: Any


class DeadLetterGroup(Shape):
    fingerprint: str
    count: int
    sample_error: dict[str, Any]
    types: list[str]
    first_dead_at: datetime
    last_dead_at: datetime


class Enqueued(Shape):
    success: Literal[True]
    job_id: uuid.UUID
    message: str


class BatchEnqueued(Shape):
    success: Literal[True]
    job_ids: list[uuid.UUID]


class Done(Shape):
    success: Literal[True]
    message: str


class Schedule(Shape):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: str
    cron: str
    timezone: str
    type: str
    payload: dict[str, Any]
    enabled: bool
    catch_up: Literal["none", "latest", "all"]
    declared_in_code: bool
    next_run_at: datetime
    last_run_at: datetime | None
    last_job_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class OneSchedule(Shape):
    success: Literal[True]
    schedule: Schedule


class SchedulePage(Shape):
    success: Literal[True]
    schedules: list[Schedule]


class ScheduleRun(Shape):
    success: Literal[True]
    job_id: uuid.UUID
    job: Job


class SearchResult(Shape):
    key: str
    score: float | None
    model: str


class SearchResults(Shape):
    success: Literal[True]
    results: list[SearchResult]


class OneJob(Shape):
    success: Literal[True]
    job: Job


class JobPage(Shape):
    success: Literal[True]
    count: int
    jobs: list[Job]
    next_cursor: str | None


class Attempts(Shape):
    success: Literal[True]
    attempts: list[Attempt]


class DeadLetterPage(Shape):
    success: Literal[True]
    count: int
    messages: list[DeadLetter]
    next_before: int | None


class DeadLetterGroups(Shape):
    success: Literal[True]
    groups: list[DeadLetterGroup]


class Replayed(Shape):
    success: Literal[True]
    replayed: int


class Purged(Shape):
    success: Literal[True]
    purged: int


class PausedSet(Shape):
    """What is paused, each list sorted."""

    tiers: list[str]
    types: list[str]


class PausedAnswer(Shape):
    success: Literal[True]
    paused: PausedSet


class BulkAnswer(Shape):
    """`matched`: the jobs the filter selects; `changed`: those cancelled or retried (with
    `dryRun`: that would be)."""

    success: Literal[True]
    matched: int
    changed: int
    dry_run: bool


class StatsBody(Shape):
    total: int
    pending: int
    processing: int
    completed: int
    failed: int
    cancelled: int
    completion_rate: str
    failure_rate: str
    by_type: dict[str, dict[str, int]]
    queues: dict[str, dict[str, int]]
    paused: PausedSet


class Stats(Shape):
    success: Literal[True]
    stats: StatsBody


class Health(Shape):
    status: Literal["ok", "degraded"]
    service: str
    timestamp: datetime
    checks: dict[str, str]
    paused: PausedSet | None
