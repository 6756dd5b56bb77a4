"""The durable record: one `jobs` row per job and one `job_attempts` row per attempt."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field, SQLModel


class JobStatus(StrEnum):
    """The one status vocabulary: stored, returned by the API and printed by the CLI alike."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)

    @property
    def sql(self) -> str:
        """The status as a quoted SQL literal, the one spelling of statements and index
        predicates: a statement meant to use a partial index must name the status as the
        index's predicate does."""
        return f"'{self.value}'"


STATUSES = tuple(s.value for s in JobStatus)


class AttemptStatus(StrEnum):
    """An attempt's status: `running` while its worker holds the job, then how it ended;
    `lost` when its worker stopped renewing the lease and the job was taken back."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"


def _time(**kw: Any) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), **kw))


def _json(**kw: Any) -> Any:
    return Field(default=None, sa_column=Column(JSONB, **kw))


#: When a job may start next: its retry time, its schedule, or its creation. The indexes of
#: pending jobs are ordered by it, and every statement that finds due jobs names it this way.
DUE_AT = "coalesce(next_attempt_at, scheduled_at, created_at)"


class Job(SQLModel, table=True):
    """A job. Sub-states are columns, not statuses: `scheduled_at` (not before), `published_at`
    (handed to RabbitMQ), `next_attempt_at` (waiting for a retry), `cancel_requested_at`
    (running, asked to stop), `lease_until` (its worker is alive until then).

    `for_relay`: stored by the API and not yet published by the scheduler's relay
    (`service.relay`).

    `life` counts the job's lives: 1 at enqueue, one more at each retry by hand or DLQ replay.
    Messages carry the life they were published for, and every write a message can cause is
    fenced by it (see migration 0006)."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(f"status IN {STATUSES!r}", name="jobs_status_check"),
        CheckConstraint("priority BETWEEN 1 AND 10", name="jobs_priority_check"),
        Index("jobs_created_idx", text("created_at DESC"), text("id DESC")),
        Index("jobs_status_created_idx", "status", text("created_at DESC"), text("id DESC")),
        Index("jobs_type_created_idx", "type", text("created_at DESC"), text("id DESC")),
        Index(
            "jobs_unpublished_idx",
            text(DUE_AT),
            postgresql_where=text(f"status = {JobStatus.PENDING.sql} AND published_at IS NULL"),
        ),
        Index(
            "jobs_lease_idx",
            "lease_until",
            postgresql_where=text(f"status = {JobStatus.PROCESSING.sql}"),
        ),
        Index(
            "jobs_idempotency_key_idx",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        Index(
            "jobs_schedule_slot_idx",
            "schedule_name",
            "scheduled_for",
            unique=True,
            postgresql_where=text("schedule_name IS NOT NULL"),
        ),
        Index(
            "jobs_payload_idx",
            "payload",
            postgresql_using="gin",
            postgresql_ops={"payload": "jsonb_path_ops"},
        ),
        Index(
            "jobs_pending_due_idx",
            "priority",
            text(DUE_AT),
            postgresql_where=text(f"status = {JobStatus.PENDING.sql}"),
        ),
        Index("jobs_updated_idx", "updated_at", "id"),
        Index("jobs_for_relay_idx", "id", postgresql_where=text("for_relay")),
    )

    id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    type: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(sa_column=Column(Text, nullable=False))
    priority: int = Field(nullable=False)
    payload: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    result: Any = _json()
    error: dict[str, Any] | None = _json()
    attempts: int = Field(default=0, nullable=False)
    life: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1"))
    max_attempts: int = Field(nullable=False)
    timeout_seconds: int = Field(nullable=False)
    retry: dict[str, Any] | None = _json()
    idempotency_key: str | None = Field(default=None, sa_column=Column(Text))
    worker: str | None = Field(default=None, sa_column=Column(Text))
    current_attempt_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    created_at: datetime = _time(nullable=False)
    updated_at: datetime = _time(nullable=False)
    scheduled_at: datetime | None = _time()
    published_at: datetime | None = _time()
    started_at: datetime | None = _time()
    completed_at: datetime | None = _time()
    next_attempt_at: datetime | None = _time()
    lease_until: datetime | None = _time()
    cancel_requested_at: datetime | None = _time()
    progress: dict[str, Any] | None = _json()
    schedule_name: str | None = Field(default=None, sa_column=Column(Text))
    scheduled_for: datetime | None = _time()
    for_relay: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default="false")
    )
    unstarted_losses: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default="0")
    )


class JobAttempt(SQLModel, table=True):
    """One attempt of a job (`AttemptStatus`). `number` restarts at 1 in each `life` of the job.

    An attempt's row is written when it ends; while it runs, the job's row holds it
    (`current_attempt_id`, `worker`, `started_at`), and readers show it as `running`."""

    __tablename__ = "job_attempts"
    __table_args__ = (Index("job_attempts_job_idx", "job_id", "id"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    job_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"))
    )
    number: int = Field(nullable=False)
    life: int | None = Field(default=None, sa_column=Column(Integer))
    status: str = Field(sa_column=Column(Text, nullable=False))
    worker: str | None = Field(default=None, sa_column=Column(Text))
    started_at: datetime = _time(nullable=False)
    finished_at: datetime | None = _time()
    error: dict[str, Any] | None = _json()
    traceback: str | None = Field(default=None, sa_column=Column(Text))


class DeadLetter(SQLModel, table=True):
    """A message that could not be processed for good, drained from a `.XQ` queue (or recorded
    directly when a job failed with no message in hand). Kept until purged or replayed."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        Index(
            "dead_letters_job_idx",
            "job_id",
            unique=True,
            postgresql_where=text("job_id IS NOT NULL"),
        ),
        Index(
            "dead_letters_fingerprint_idx",
            "fingerprint",
            text("id DESC"),
            postgresql_include=["type", "dead_at"],
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    job_id: uuid.UUID | None = Field(default=None, sa_column=Column(UUID(as_uuid=True)))
    type: str | None = Field(default=None, sa_column=Column(Text))
    queue: str = Field(sa_column=Column(Text, nullable=False))
    message: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    x_death: Any = _json()
    error: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    fingerprint: str = Field(sa_column=Column(Text, nullable=False))
    dead_at: datetime = _time(nullable=False)


class Schedule(SQLModel, table=True):
    """A cron schedule: a job of `type` with `payload` and `options` at every slot of `cron`
    in `timezone`. `next_run_at` (UTC) is the next slot to fire (see `service.schedules`)."""

    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint("catch_up IN ('none', 'latest', 'all')", name="schedules_catch_up"),
        Index("schedules_due_idx", "next_run_at", postgresql_where=text("enabled")),
    )

    name: str = Field(sa_column=Column(Text, primary_key=True))
    cron: str = Field(sa_column=Column(Text, nullable=False))
    timezone: str = Field(sa_column=Column(Text, nullable=False))
    type: str = Field(sa_column=Column(Text, nullable=False))
    payload: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    options: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    enabled: bool = Field(sa_column=Column(Boolean, nullable=False))
    catch_up: str = Field(sa_column=Column(Text, nullable=False))
    declared_in_code: bool = Field(sa_column=Column(Boolean, nullable=False))
    next_run_at: datetime = _time(nullable=False)
    last_run_at: datetime | None = _time()
    last_job_id: uuid.UUID | None = Field(default=None, sa_column=Column(UUID(as_uuid=True)))
    created_at: datetime = _time(nullable=False)
    updated_at: datetime = _time(nullable=False)
