"""Firing cron schedules: each scheduler tick, the slots that came due become jobs.

A schedule's row is locked while its slots fire (`store.schedules.due` skips the rows another
scheduler holds), and its jobs are inserted and `next_run_at` moved on in the caller's
transaction, so each slot fires once however many schedulers run; a slot that has its job
already (a schedule enabled again, re-timed or re-created within the `LEAD` it fired ahead)
is skipped, and the other schedules' slots fire. Which missed slots fire follows the
schedule's `catchUp` (`service.schedules`).
"""

import logging
from datetime import UTC, datetime, timedelta
from itertools import islice, takewhile
from typing import Any
from zoneinfo import ZoneInfo

from cronsim import CronSim
from sqlalchemy.engine import Connection

from service.broker import Dispatch, dispatch_of_row
from service.errors import UnknownJobType, ValidationFailed
from service.models import Schedule
from service.registry import Registry
from service.schedules import ALIASES, CATCH_UP_LIMIT, LEAD, ON_TIME, job_row, next_slot, slots
from service.settings import Settings
from service.store import jobs
from service.store import schedules as store

log = logging.getLogger(__name__)


def due_slots(schedule: Schedule, now: datetime) -> tuple[list[datetime], datetime]:
    """The slots of `schedule` to fire at `now` (those up to `LEAD` ahead included), oldest
    first, as its `catchUp` says, and its next slot after them."""
    horizon = now + LEAD
    upcoming = slots(schedule.cron, schedule.timezone, schedule.next_run_at - timedelta(seconds=1))
    missed = list(takewhile(lambda slot: slot <= horizon, islice(upcoming, CATCH_UP_LIMIT + 1)))
    if len(missed) > CATCH_UP_LIMIT:  # down a long time: the newest slots, counted back
        back = CronSim(ALIASES.get(schedule.cron, schedule.cron), _zoned(horizon, schedule), True)
        missed = sorted(islice(back, CATCH_UP_LIMIT))
    following = next_slot(schedule.cron, schedule.timezone, horizon)
    if not missed:
        return [], following
    if schedule.catch_up == "all":
        return [s.astimezone(UTC) for s in missed], following
    newest = missed[-1].astimezone(UTC)
    if schedule.catch_up == "none" and now - newest > ON_TIME:
        return [], following
    return [newest], following


def _zoned(now: datetime, schedule: Schedule) -> datetime:
    """`now` in the schedule's zone, a second on, so that counting back includes `now`."""
    return (now.replace(microsecond=0) + timedelta(seconds=1)).astimezone(
        ZoneInfo(schedule.timezone)
    )


def fire_due(
    conn: Connection,
    registry: Registry,
    settings: Settings,
    now: datetime | None = None,
    limit: int = 1000,
) -> tuple[list[Dispatch], bool]:
    """Fire up to `limit` enabled schedules whose next slot comes within `LEAD`, in `conn`'s
    transaction:
    insert a job per slot its `catchUp` allows and move `next_run_at` past `now`, all in two
    statements. Schedules another scheduler holds are skipped. Returns what publishing the
    jobs needs, to be published after the commit, and whether more schedules may be due."""
    now = now or datetime.now(UTC)
    due = store.due(conn, now + LEAD, limit)
    fired: list[tuple[str, datetime, list[dict[str, Any]]]] = []
    for schedule in due:
        chosen, following = due_slots(schedule, now)
        try:
            made = [job_row(schedule, slot, registry, settings, now) for slot in chosen]
        except (UnknownJobType, ValidationFailed) as exc:  # a deploy retired or changed its type
            log.error("schedule %s: slot skipped, its job is refused: %s", schedule.name, exc)
            made = []
        fired.append((schedule.name, following, made))
    inserted = jobs.insert_slots(conn, [row for _, _, made in fired for row in made])
    moves, rows = [], []
    for name, following, made in fired:
        kept = [row for row in made if row["id"] in inserted]  # not a slot that had its job
        rows += kept
        moves.append((name, following, kept[-1]["id"] if kept else None))
    store.advance(conn, moves, now)
    return [dispatch_of_row(row) for row in rows], len(due) == limit
