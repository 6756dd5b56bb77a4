"""Operator controls: pause and resume a tier or a job type, and cancel or retry every job a
filter selects (`POST /queues/{tier}/pause`, `POST /types/{type}/pause`, `POST /jobs/cancel`,
`POST /jobs/retry`; `warren pause`, `warren cancel`; `Warren.pause`, `Warren.cancel_where`).

What a pause does to workers and the scheduler is in `service.pauses`. A bulk verb works in
batches of `BATCH` jobs, each selected by keyset on the job id and changed in a transaction of
its own, so a filter matching millions of jobs neither locks them all at once nor holds their
ids in memory. Each change is fenced as the one-job verb's: by the job's status and by the life
it was selected in (`store.jobs.cancel_many`, `retry_many`).
"""

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr
from pydantic.alias_generators import to_camel
from sqlalchemy.engine import Engine

from service import metrics, queries
from service.broker import TIERS, Publish
from service.enqueue import validated
from service.errors import BadRequest, NotFound
from service.models import Job
from service.registry import Registry
from service.store import dead_letters
from service.store import jobs as job_store
from service.store import pauses as pause_store
from service.store.pauses import KINDS, Kind, Paused

#: Jobs changed per transaction.
BATCH = 1000

_jobs = Job.__table__

# -- pause and resume ---------------------------------------------------------------------------


def pause(engine: Engine, registry: Registry, kind: Kind, name: str) -> Paused:
    """Pause a tier or a registered job type; returns everything paused now. Idempotent.
    Raises `NotFound` for an unknown tier or type."""
    _known(registry, kind, name)
    with engine.begin() as conn:
        pause_store.pause(conn, kind, name)
        return pause_store.every(conn)


def resume(engine: Engine, registry: Registry, kind: Kind, name: str) -> Paused:
    """End a pause; returns everything paused now. Idempotent. A type that is paused but no
    longer registered can be resumed too. Raises `NotFound` for an unknown tier or type."""
    if kind not in KINDS:
        _known(registry, kind, name)
    with engine.begin() as conn:
        before = pause_store.every(conn)
        if name not in (before.tiers if kind == "tier" else before.types):
            _known(registry, kind, name)
            return before
        pause_store.resume(conn, kind, name)
        return pause_store.every(conn)


def paused(engine: Engine) -> Paused:
    with engine.connect() as conn:
        return pause_store.every(conn)


def _known(registry: Registry, kind: Kind, name: str) -> None:
    if kind not in KINDS:
        raise BadRequest(f"pause a tier or a type, not a {kind!r}")
    if kind == "tier" and name not in TIERS:
        raise NotFound(f"unknown tier {name!r}; tiers: {', '.join(TIERS)}")
    if kind == "type" and name not in registry:
        known = ", ".join(registry.names()) or "none"
        raise NotFound(f"unknown job type {name!r}; known types: {known}")


def paused_json(value: Paused) -> dict[str, list[str]]:
    """`{"tiers": [...], "types": [...]}`, each sorted: the `paused` of the API's answers."""
    return {"tiers": sorted(value.tiers), "types": sorted(value.types)}


# -- cancel and retry by filter -----------------------------------------------------------------


class BulkRequest(BaseModel):
    """The body of `POST /jobs/cancel` and `POST /jobs/retry`: the filters of `GET /jobs`
    (not its paging) as a JSON object, and whether only to count."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    filter: dict[StrictStr, StrictStr | StrictInt]
    dry_run: StrictBool = False


@dataclass(frozen=True)
class Bulk:
    """What a bulk verb did: `matched` jobs the filter selects, `changed` of them it changed
    (with `dry_run`: would change)."""

    matched: int
    changed: int
    dry_run: bool


def parse_bulk(body: Any) -> BulkRequest:
    """Validate a bulk body; `ValidationFailed` names each bad field (an unknown one too)."""
    return validated(BulkRequest, body, "a bulk request")


def filters_of(filter: queries.Filters | Mapping[str, Any]) -> queries.Filters:
    """The filters of `GET /jobs` from a mapping of them; numbers may be numbers. Paging has
    no meaning here. Raises `BadRequest` as `GET /jobs` does for a bad filter."""
    return queries.Filters.of(filter, paging=False)


def cancel_where(engine: Engine, filters: queries.Filters, dry_run: bool = False) -> Bulk:
    """Cancel every job `filters` selects that a cancel changes: pending ones never start,
    processing ones are asked to stop (`store.jobs.CANCELLABLE`)."""
    matched, changed = _counts(engine, filters, job_store.CANCELLABLE)
    if not dry_run:
        changed = 0
        for batch in _selected(engine, filters, job_store.CANCELLABLE):
            with engine.begin() as conn:
                cancelled = job_store.cancel_many(conn, batch)
            metrics.cancelled_by_hand(cancelled)
            changed += len(cancelled)
    return Bulk(matched, changed, dry_run)


def retry_where(
    engine: Engine,
    filters: queries.Filters,
    publish: Publish | None,
    dry_run: bool = False,
) -> Bulk:
    """Start a new life of every failed or cancelled job `filters` selects, as a retry of
    one does (its dead letter leaves the DLQ), and `publish` each batch once committed; with
    no `publish`, flag them for the scheduler's relay, which publishes them (a server's way:
    the request then only writes the rows, however many the filter selects)."""
    matched, changed = _counts(engine, filters, job_store.RETRYABLE)
    if not dry_run:
        changed = 0
        for batch in _selected(engine, filters, job_store.RETRYABLE):
            with engine.begin() as conn:
                revived = job_store.retry_many(conn, batch, for_relay=publish is None)
                dead_letters.resolve(conn, [job.id for job in revived])
            if publish is not None:
                publish(revived)
            changed += len(revived)
    return Bulk(matched, changed, dry_run)


def _counts(engine: Engine, filters: queries.Filters, changeable: str) -> tuple[int, int]:
    """How many jobs `filters` selects, and how many of those are `changeable`."""
    where = queries.conditions(filters)
    statement = sa.select(sa.func.count(), sa.func.count().filter(sa.text(changeable))).select_from(
        _jobs
    )
    with engine.connect() as conn:
        matched, changeable_now = conn.execute(statement.where(*where)).one()
    return matched, changeable_now


def _selected(
    engine: Engine, filters: queries.Filters, changeable: str
) -> Iterator[Sequence[tuple[uuid.UUID, int]]]:
    """`(id, life)` of the `changeable` jobs `filters` selects, `BATCH` at a time in id order.
    Each batch is read in a short transaction of its own; the writes are fenced by the life
    read, so a job that moved on in between is left alone."""
    where = [*queries.conditions(filters), sa.text(changeable)]
    after: uuid.UUID | None = None
    while True:
        statement = sa.select(_jobs.c.id, _jobs.c.life).where(*where)
        if after is not None:
            statement = statement.where(_jobs.c.id > after)
        with engine.connect() as conn:
            batch = [
                tuple(row) for row in conn.execute(statement.order_by(_jobs.c.id).limit(BATCH))
            ]
        if batch:
            yield batch
        if len(batch) < BATCH:
            return
        after = batch[-1][0]
