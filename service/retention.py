"""Retention: finished work is deleted once it is old enough, in small batches.

What is kept, and for how long (`WARREN_RETAIN_*_DAYS`): completed and cancelled jobs 7 days,
failed jobs 30 days, dead letters 30 days. Pending and processing jobs are never deleted. A
job goes with its attempts and its files (`service.artifacts`): after the rows, a prune sweeps
`WARREN_FILES_DIR` for files whose job is gone, so the process that prunes (the scheduler)
needs the workers' folder. A job's dead letter follows its own retention.

The scheduler prunes every `prune_interval_seconds`; `warren prune` does the same at once, or
with `--dry-run` only counts. Each batch is one short transaction of at most `BATCH` rows, so
no lock is held for long, and several schedulers can prune side by side (`SKIP LOCKED`).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from sqlalchemy.engine import Connection, Engine

from service import artifacts, queries
from service.models import JobStatus
from service.settings import DAY, Settings
from service.store import dead_letters, jobs

#: Rows deleted per transaction.
BATCH = 1000


@dataclass(frozen=True)
class Kept:
    """One kind of finished work and how to delete what is past its retention."""

    name: str
    delete: Callable[[Connection], Sequence[object]]  # one batch; returns the ids deleted
    count: Callable[[Connection], int]  # how many are past retention


def kinds(settings: Settings) -> list[Kept]:
    kept = []
    for status, days in (
        (JobStatus.COMPLETED, settings.retain_completed_days),
        (JobStatus.CANCELLED, settings.retain_cancelled_days),
        (JobStatus.FAILED, settings.retain_failed_days),
    ):
        age = days * DAY
        kept.append(
            Kept(
                status.value,
                partial(jobs.prune, status=status, age=age, limit=BATCH),
                partial(jobs.prunable, status=status, age=age),
            )
        )
    age = settings.retain_dead_letter_days * DAY
    kept.append(
        Kept(
            "deadLetters",
            partial(dead_letters.prune, age=age, limit=BATCH),
            partial(dead_letters.prunable, age=age),
        )
    )
    return kept


def prune(engine: Engine, settings: Settings, max_batches: int | None = None) -> dict[str, int]:
    """Delete what is past its retention; returns how many of each kind were deleted. Each
    kind stops after `max_batches` batches (None: once none is left), so a scheduler's tick
    stays short and the rest waits for the next."""
    deleted = {}
    for kind in kinds(settings):
        deleted[kind.name] = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            with engine.begin() as conn:
                gone = kind.delete(conn)
            deleted[kind.name] += len(gone)
            batches += 1
            if len(gone) < BATCH:
                break
    with engine.connect() as conn:
        artifacts.sweep(settings, partial(queries.existing, conn))
    return deleted


def prunable(engine: Engine, settings: Settings) -> dict[str, int]:
    """How many of each kind `prune` would delete now."""
    with engine.connect() as conn:
        return {kind.name: kind.count(conn) for kind in kinds(settings)}
