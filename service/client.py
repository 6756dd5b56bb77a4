"""Warren's Python API: the same operations as the HTTP API, for service-to-service callers.

`Warren` is not an HTTP client: it is the facade the API itself serves, run in the caller's
process against PostgreSQL and RabbitMQ directly (the rows are written by the job store,
`service.store`).

    warren = Warren.connect()                       # settings from WARREN_* variables
    job = warren.enqueue("send-email", {"to": "a@example.com", "subject": "Hi", "body": "…"})
    warren.get(job.id).status

`enqueue` and `submit` (a batch) accept the caller's own SQLAlchemy/SQLModel `Session`: the job rows
join the caller's transaction and are published only if it commits.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, SessionTransaction

from service import (
    activity,
    artifacts,
    controls,
    db,
    deadletters,
    metrics,
    queries,
    reschedule,
    retention,
    schedules,
)
from service.broker import (
    Dispatch,
    Publish,
    Publisher,
    build_broker,
    dispatch_of,
    dispatch_of_row,
)
from service.brokerview import BrokerView
from service.enqueue import EnqueueRequest, build_row, parse
from service.errors import NotFound, UnknownJobType, ValidationFailed
from service.kept import KeptConnections
from service.models import STATUSES, Job, JobAttempt, JobStatus
from service.registry import Registry
from service.registry import registry as default_registry
from service.reschedule import RescheduleRequest
from service.settings import Settings
from service.store import counts, dead_letters, jobs, publishing
from service.store.pauses import Kind, Paused

log = logging.getLogger(__name__)

MAX_BATCH = 1000
_PENDING_KEY = "warren.unpublished"


@dataclass(frozen=True)
class Enqueued:
    """The outcome of one enqueue: the job's id, and False when its idempotency key had been
    seen before (the id is then the first job's)."""

    id: uuid.UUID
    created: bool


class Warren:
    """A handle on one Warren deployment: its database, its broker and its job types."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        registry: Registry | None = None,
        publisher: Publisher | None = None,
        relayed: bool = False,
    ) -> None:
        """With `relayed`, enqueue only stores the jobs, flagged for the scheduler's relay,
        which publishes them (`service.relay`), and each thread keeps the connection of its
        enqueues (`service.kept`): what a server that answers many enqueues on a few
        long-lived threads wants. Without it, enqueue publishes the jobs itself, so a
        script's jobs run whether a scheduler runs or not."""
        self.settings = settings
        self.engine = engine or db.make_engine(settings)
        self._autocommit = (
            db.make_autocommit_engine(settings)
            if engine is None
            else engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self.registry = registry or default_registry.load(settings.job_modules)
        self.publisher = publisher or Publisher(build_broker(settings), settings)
        self.relayed = relayed
        self._kept = KeptConnections(self._autocommit) if relayed else None
        self.dlq = deadletters.Inspector(self.engine, settings, self._bulk_publish)
        self.schedules = schedules.Schedules(self.engine, self.registry, settings, self.publish)
        self.broker_view = BrokerView(settings)

    @classmethod
    def connect(cls, settings: Settings | None = None) -> Warren:
        return cls(settings or Settings())

    def close(self) -> None:
        self.broker_view.close()
        self.publisher.close()
        if self._kept is not None:
            self._kept.close()
        self._autocommit.dispose()
        self.engine.dispose()

    # -- enqueue ------------------------------------------------------------------------------

    def enqueue(
        self,
        type: str,
        payload: Mapping[str, Any],
        *,
        session: Session | None = None,
        **options: Any,
    ) -> Enqueued:
        """Enqueue one job. Options are the enqueue fields in snake_case (`priority`,
        `max_attempts`, `timeout_seconds`, `delay_seconds`, `scheduled_at`, `idempotency_key`,
        `retry`). Raises `UnknownJobType` or `ValidationFailed`; nothing is written then."""
        body = {"type": type, "payload": dict(payload) if isinstance(payload, Mapping) else payload}
        body.update({key: value for key, value in options.items() if value is not None})
        return self.submit([body], session=session, batch=False)[0]

    def submit(
        self,
        bodies: Sequence[Mapping[str, Any] | EnqueueRequest],
        *,
        session: Session | None = None,
        batch: bool = True,
    ) -> list[Enqueued]:
        """Enqueue many jobs, all or nothing: each body is an enqueue request (the JSON of
        `POST /jobs`, or an `EnqueueRequest`). In a batch, errors name the item
        (`jobs[3].payload.to`, `jobs[1].type`); otherwise the field alone (`payload.to`).
        Raises `UnknownJobType` when any item's type is unknown, else `ValidationFailed`;
        either way with the details of every bad item, and nothing is stored."""
        if len(bodies) > MAX_BATCH:
            raise ValidationFailed(
                f"a batch holds at most {MAX_BATCH} jobs",
                [{"field": "jobs", "message": f"{len(bodies)} items, at most {MAX_BATCH}"}],
            )
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        refused: list[ValidationFailed | UnknownJobType] = []
        for index, body in enumerate(bodies):
            prefix = f"jobs[{index}]" if batch else ""
            try:
                request = body if isinstance(body, EnqueueRequest) else parse(body, prefix)
                rows.append(build_row(request, self.registry, prefix, now, self.settings))
            except (ValidationFailed, UnknownJobType) as exc:
                refused.append(exc)
        if refused:
            raise self._refusal(refused, batch)
        return self._store(rows, session)

    def _refusal(
        self, refused: list[ValidationFailed | UnknownJobType], batch: bool
    ) -> ValidationFailed | UnknownJobType:
        """One error for every refused item, so a caller fixes a batch in one round: its
        details name each bad field of each item. Any unknown type makes it `UnknownJobType`
        (400, as a lone unknown type always was), whose message lists the known types."""
        details = [detail for exc in refused for detail in exc.details]
        unknown = [exc for exc in refused if isinstance(exc, UnknownJobType)]
        if not unknown:
            message = "invalid jobs in batch; none enqueued" if batch else "invalid enqueue request"
            return ValidationFailed(message, details)
        if not batch:
            return unknown[0]
        items = ", ".join(d["field"].removesuffix(".type") for exc in unknown for d in exc.details)
        known = ", ".join(self.registry.names()) or "none"
        return UnknownJobType(
            f"unknown job type in {items}; none enqueued; known types: {known}", details
        )

    def _store(self, rows: list[dict[str, Any]], session: Session | None) -> list[Enqueued]:
        if session is not None and not isinstance(session, Session):
            raise TypeError(f"session is a SQLAlchemy Session, not {type(session).__name__}")
        if session is not None:
            outcome = jobs.insert(session.connection(), rows)
            self._publish_after_commit(session, rows, outcome)
            return [Enqueued(*pair) for pair in outcome]
        # One INSERT statement is atomic on its own: autocommit saves the BEGIN round trip.
        with self._kept.connection() if self._kept else self._autocommit.connect() as conn:
            outcome = jobs.insert(conn, rows, for_relay=self.relayed)
        if self.relayed:
            metrics.enqueued(rows, outcome)
        else:
            self.publish_new(rows, outcome)
        return [Enqueued(*pair) for pair in outcome]

    def _publish_after_commit(self, session: Session, rows, outcome) -> None:
        """Publish the rows once `session` commits; a rollback of the transaction (or the
        savepoint) they were inserted in forgets them, and only them."""
        inserted_in = session.get_nested_transaction() or session.get_transaction()
        session.info.setdefault(_PENDING_KEY, []).append((rows, outcome, inserted_in))
        if not event.contains(session, "after_commit", self._after_commit):
            event.listen(session, "after_commit", self._after_commit)
            event.listen(session, "after_soft_rollback", self._after_rollback)

    def _after_commit(self, session: Session) -> None:
        for rows, outcome, _ in session.info.pop(_PENDING_KEY, []):
            self.publish_new(rows, outcome)

    def _after_rollback(self, session: Session, previous_transaction: SessionTransaction) -> None:
        pending = session.info.get(_PENDING_KEY, [])
        kept = [entry for entry in pending if not _within(entry[2], previous_transaction)]
        session.info[_PENDING_KEY] = kept

    def publish_new(
        self, rows: list[dict[str, Any]], outcome: list[tuple[uuid.UUID, bool]]
    ) -> None:
        """Publish freshly inserted rows that are due within the horizon; mark them published.
        What fails to publish stays an unpublished row, which the scheduler picks up."""
        metrics.enqueued(rows, outcome)
        horizon = datetime.now(UTC) + timedelta(seconds=self.settings.delay_horizon_seconds)
        due = [
            dispatch_of_row(row)
            for row, (_, created) in zip(rows, outcome, strict=True)
            if created and (row["scheduled_at"] is None or row["scheduled_at"] <= horizon)
        ]
        self.publish(due)

    def publish(self, due: list[Dispatch]) -> None:
        """Publish jobs and mark them published; what fails stays for the scheduler."""
        published = self.publisher.publish_many(due) if due else []
        if published:
            self._record_published(published)

    @property
    def _bulk_publish(self) -> Publish | None:
        """How the verbs that start many jobs again (a retry by filter, a DLQ replay) publish
        them: a server leaves them flagged for the scheduler's relay, as its enqueues, so a
        request that selects thousands of jobs only writes their rows; a script publishes
        them itself, so they run whether a scheduler runs or not."""
        return None if self.relayed else self.publish

    def _record_published(self, published: list[Dispatch]) -> None:
        """A mark that fails is only logged: the scheduler publishes those jobs again, and a
        duplicate message is harmless."""
        try:
            with self.engine.begin() as conn:
                publishing.mark_published(conn, published)
        except sa.exc.SQLAlchemyError as exc:
            log.warning(
                "%d jobs not marked published (%s); the scheduler will", len(published), exc
            )

    # -- read ---------------------------------------------------------------------------------

    def get(self, job_id: uuid.UUID | str) -> Job:
        with self.engine.connect() as conn:
            return queries.get(conn, _uuid(job_id))

    def artifact(self, job_id: uuid.UUID | str) -> tuple[Path, str]:
        """The file a job's recorded result names (a report) and its media type. Raises
        `NotFound`."""
        job = self.get(job_id)
        return artifacts.find(self.settings, job.id, job.result)

    def attempts(self, job_id: uuid.UUID | str) -> list[JobAttempt]:
        with self.engine.connect() as conn:
            return queries.attempts(conn, _uuid(job_id))

    def list(self, filters: queries.Filters | Mapping[str, str] | None = None) -> queries.Page:
        with self.engine.connect() as conn:
            return queries.page(conn, queries.Filters.of({} if filters is None else filters))

    def stats(self) -> dict[str, Any]:
        """Counts by status and type, rates, and RabbitMQ's view of each tier queue."""
        with self.engine.connect() as conn:
            by_type = counts.read(conn)
        totals = dict.fromkeys(STATUSES, 0)
        for per_status in by_type.values():
            for status, n in per_status.items():
                totals[status] += n
        total = sum(totals.values())
        return {
            "total": total,
            **totals,
            "completionRate": _rate(totals[JobStatus.COMPLETED], total),
            "failureRate": _rate(totals[JobStatus.FAILED], total),
            "byType": {
                name: {"total": sum(c.values()), **dict.fromkeys(STATUSES, 0), **c}
                for name, c in sorted(by_type.items())
            },
            "queues": self.queue_depths(),
            "paused": controls.paused_json(self.paused()),
        }

    def queue_depths(self) -> dict[str, dict[str, int]]:
        """Messages ready and consumers per tier queue, as RabbitMQ reports them; empty when
        RabbitMQ is unreachable."""
        return self.broker_view.depths()

    def health(self) -> dict[str, str]:
        """`{"database": "ok" | reason, "broker": "ok" | reason}`. The broker's answer is
        at most a second old (see `service.brokerview`)."""
        checks = {}
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            checks["database"] = "ok"
        except sa.exc.SQLAlchemyError as exc:
            checks["database"] = f"unreachable: {exc.__class__.__name__}"
        checks["broker"] = self.broker_view.health()
        return checks

    def per_minute(self, minutes: int = 60) -> list[activity.Minute]:
        """Jobs completed and failed for good in each of the last `minutes` minutes, oldest
        first (see `service.activity` for which jobs it counts)."""
        with self.engine.connect() as conn:
            return activity.per_minute(conn, minutes)

    def workers(self) -> list[activity.Worker]:
        """The workers and schedulers alive (heartbeat at most three beats old), with their
        last heartbeat and, for a worker, the jobs it holds now."""
        with self.engine.connect() as conn:
            return activity.running(conn, self.settings.heartbeat_seconds)

    # -- steer --------------------------------------------------------------------------------

    def prune(self, *, dry_run: bool = False) -> dict[str, int]:
        """Delete finished jobs and dead letters past their retention (`WARREN_RETAIN_*_DAYS`);
        returns how many of each kind (`completed`, `cancelled`, `failed`, `deadLetters`) were
        deleted, or with `dry_run` would be."""
        if dry_run:
            return retention.prunable(self.engine, self.settings)
        return retention.prune(self.engine, self.settings)

    def retry(self, job_id: uuid.UUID | str) -> None:
        """Run a failed or cancelled job again with fresh attempts."""
        with self.engine.begin() as conn:
            job = jobs.retry(conn, _uuid(job_id))
            dead_letters.resolve(conn, [job.id])
        self.publish([dispatch_of(job)])

    def reschedule(
        self, job_id: uuid.UUID | str, change: RescheduleRequest | Mapping[str, Any]
    ) -> Job:
        """Move a pending job to a new time and/or priority (`{"scheduledAt": ...,
        "delaySeconds": ..., "priority": ...}`, as `PATCH /jobs/{id}`). Messages published
        before are dropped; the job runs once, at its new time, from its new tier. Raises
        `ValidationFailed`, `NotFound`, or `Conflict` when the job is not pending."""
        if not isinstance(change, RescheduleRequest):
            change = reschedule.parse(change)
        with self.engine.begin() as conn:
            job = jobs.reschedule(conn, _uuid(job_id), change.run_at(), change.priority)
        horizon = datetime.now(UTC) + timedelta(seconds=self.settings.delay_horizon_seconds)
        dispatch = dispatch_of(job)
        if dispatch.due_at is None or dispatch.due_at <= horizon:
            self.publish([dispatch])
        return job

    def cancel(self, job_id: uuid.UUID | str) -> JobStatus:
        """Cancel a job; returns the status it had (`pending`: it never starts; `processing`:
        it is asked to stop and ends `cancelled`)."""
        with self.engine.begin() as conn:
            cancelled = jobs.cancel(conn, _uuid(job_id))
        metrics.cancelled_by_hand([cancelled])
        return cancelled.was

    # -- operator controls (service.controls) -----------------------------------------------------

    def pause(self, kind: Kind, name: str) -> Paused:
        """Pause a tier (`"tier", "high"`) or a job type (`"type", "send-email"`): workers
        park its jobs instead of starting them, until it is resumed. Returns what is paused
        now. Idempotent; raises `NotFound` for an unknown tier or type."""
        return controls.pause(self.engine, self.registry, kind, name)

    def resume(self, kind: Kind, name: str) -> Paused:
        """End a pause: its waiting jobs are published within a scheduler tick."""
        return controls.resume(self.engine, self.registry, kind, name)

    def paused(self) -> Paused:
        """What is paused now: `.tiers` and `.types`."""
        return controls.paused(self.engine)

    def cancel_where(
        self, filter: queries.Filters | Mapping[str, Any], *, dry_run: bool = False
    ) -> controls.Bulk:
        """Cancel every job the filters of `GET /jobs` select (`{"status": "pending",
        "type": "send-email"}`), in batches; with `dry_run`, only count. Raises `BadRequest`
        for a bad filter."""
        return controls.cancel_where(self.engine, controls.filters_of(filter), dry_run)

    def retry_where(
        self, filter: queries.Filters | Mapping[str, Any], *, dry_run: bool = False
    ) -> controls.Bulk:
        """Run again every failed or cancelled job the filters select, in batches."""
        filters = controls.filters_of(filter)
        return controls.retry_where(self.engine, filters, self._bulk_publish, dry_run)


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    """A job id from a caller: text that is no UUID names no job (`NotFound`, as over HTTP);
    a value of another type is the caller's bug, a `TypeError` that says so."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        raise TypeError(f"a job id is a UUID or its text, not {type(value).__name__}")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"job {value} not found") from None


def _rate(part: int, total: int) -> str:
    return f"{(100 * part / total) if total else 0:.2f}%"


def _within(transaction: SessionTransaction | None, outer: SessionTransaction) -> bool:
    """Whether `transaction` is `outer` or one of its savepoints."""
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False
