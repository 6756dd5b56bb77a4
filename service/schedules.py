"""Cron schedules: a job enqueued at every slot of a cron expression, in a time zone.

A schedule is declared in code, beside its job type (`schedule(...)` in an `actors/` module,
synced into the database when the scheduler starts), or at runtime (`POST /schedules`). Cron
expressions are read by `cronsim` (five fields, and `@hourly`, `@daily`, `@weekly`,
`@monthly`, `@yearly`), in the schedule's IANA time zone: a slot at a fixed time in a
daylight-saving gap fires at the end of the gap, one in a repeated hour fires once; as in
Vixie cron, an expression whose minute or hour field starts with `*` follows the clock.

The scheduler fires what is due each tick (`service.firing`), up to `LEAD` seconds ahead (the job
is then due at its slot): with the schedule's row locked, it inserts the job and moves
`next_run_at` on in one transaction, so each slot fires once however
many schedulers run. Slots missed while no scheduler ran follow the schedule's `catchUp`:
`latest` (the default) fires the newest missed slot once, `all` fires each (the newest
`CATCH_UP_LIMIT`), `none` fires only a slot that is at most `ON_TIME` late.
"""

import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, available_timezones

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel
from sqlalchemy.engine import Connection, Engine

from service.broker import Publish, dispatch_of
from service.enqueue import EnqueueRequest, build_row, field_errors, validated
from service.errors import NotFound, UnknownJobType, ValidationFailed
from service.models import Job, Schedule
from service.registry import Registry
from service.settings import Settings
from service.store import jobs
from service.store import schedules as store

log = logging.getLogger(__name__)

ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
#: Slots `all` fires at most after a downtime: the newest ones.
CATCH_UP_LIMIT = 100
#: How late a slot may fire and still count as on time (for `catchUp: none`).
ON_TIME = timedelta(seconds=60)
#: How early a slot is fired: its job is stored and published ahead, due at the slot, so a
#: tick that fires thousands of schedules is done before their time comes.
LEAD = timedelta(seconds=5)

CatchUp = Literal["none", "latest", "all"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
_JOB_OPTIONS = ("priority", "max_attempts", "timeout_seconds", "retry")
_camel = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


@cache
def _zones() -> frozenset[str]:
    return (frozenset(available_timezones()) - {"localtime"}) | {"UTC"}


def slots(cron: str, timezone: str, after: datetime) -> CronSim:
    """The slots of `cron` in `timezone` strictly after `after`, as aware datetimes."""
    return CronSim(ALIASES.get(cron, cron), after.astimezone(ZoneInfo(timezone)))


def next_slot(cron: str, timezone: str, after: datetime) -> datetime:
    """The first slot strictly after `after`, in UTC."""
    return next(slots(cron, timezone, after)).astimezone(UTC)


class ScheduleFields(BaseModel):
    """What a schedule says, as `POST /schedules` and `PATCH /schedules/{name}` spell it.

    A field left out keeps what the schedule has (or its default). The job's options
    (`priority`, `maxAttempts`, `timeoutSeconds`, `retry`) may be `null`, which gives the
    option back to the job type; the schedule's own fields may not, as a schedule cannot be
    without them. Their defaults stand for "not given" and are never validated."""

    model_config = _camel

    cron: str = Field(default=None, min_length=1, max_length=200)
    timezone: str = Field(default=None, min_length=1, max_length=100)
    type: str = Field(default=None, min_length=1, max_length=200)
    payload: dict[str, Any] = Field(default=None)
    priority: Any = None
    max_attempts: Any = None
    timeout_seconds: Any = None
    retry: Any = None
    enabled: bool = Field(default=None, strict=True)
    catch_up: CatchUp = Field(default=None)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if value not in ALIASES and len(value.split()) != 5:
            raise ValueError("five fields: minute hour day month weekday")
        try:
            next(CronSim(ALIASES.get(value, value), datetime.now(UTC)))
        except StopIteration:  # `0 0 30 2 *`, `0 0 * 2 5#5`: no day matches
            raise ValueError("never fires: no time matches it in the next 50 years") from None
        except CronSimError as exc:
            raise ValueError(f"not a cron expression: {exc}") from None
        except Exception:  # whatever else the parser trips on is no cron expression either
            raise ValueError("not a cron expression") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if value not in _zones():  # ZoneInfo would also take localtime and posix/... files
            raise ValueError("not an IANA time zone, such as Europe/Berlin or UTC")
        return value


class ScheduleRequest(ScheduleFields):
    """The body of `POST /schedules`: `name`, `cron`, `type` and `payload` are required."""

    name: str = Field(pattern=_NAME.pattern)
    cron: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=200)
    payload: dict[str, Any]


def known_name(name: str) -> str:
    """`name`, if it can name a schedule at all; `NotFound` if not (no lookup needed)."""
    if not _NAME.match(name):
        raise NotFound(f"schedule {name!r} not found")
    return name


def parse(body: Any, model: type[ScheduleFields] = ScheduleRequest) -> ScheduleFields:
    """Validate a schedule body; `ValidationFailed` names each bad field."""
    return validated(model, body, "a schedule")


@dataclass(frozen=True)
class Definition:
    """A validated schedule, as the store keeps it."""

    name: str
    cron: str
    timezone: str
    type: str
    payload: dict[str, Any]
    options: dict[str, Any]
    enabled: bool
    catch_up: CatchUp


def define(
    request: ScheduleFields, registry: Registry, settings: Settings, base: Schedule | None = None
) -> Definition:
    """The whole schedule `request` makes, on top of `base` (for a PATCH). Its job is checked
    as an enqueue of it would be, so a schedule never fires a job the API would refuse."""
    given = request.model_dump(exclude_unset=True, by_alias=False)
    merged: dict[str, Any] = {
        "name": base.name if base else given["name"],
        "cron": base.cron if base else None,
        "timezone": base.timezone if base else "UTC",
        "type": base.type if base else None,
        "payload": base.payload if base else None,
        "enabled": base.enabled if base else True,
        "catch_up": base.catch_up if base else "latest",
        "options": dict(base.options) if base else {},
    }
    for key, value in given.items():
        if key in _JOB_OPTIONS:
            merged["options"][to_camel(key)] = value
        elif key != "name":
            merged[key] = value
    merged["options"] = {k: v for k, v in merged["options"].items() if v is not None}
    try:
        request = _check_job(Definition(**merged), registry, settings)
    except UnknownJobType as exc:  # a schedule's type is one of its fields: a 422 naming it
        raise ValidationFailed(exc.message, [{"field": "type", "message": exc.message}]) from None
    options = request.model_dump(by_alias=True, include=set(_JOB_OPTIONS), exclude_none=True)
    return Definition(**(merged | {"options": options}))


def _check_job(definition: Definition, registry: Registry, settings: Settings) -> EnqueueRequest:
    """The schedule's job as an enqueue request, checked as the API would check it."""
    request = _enqueue_request(definition)
    if request.type in registry and registry.get(request.type).secret:
        secret = [f for f in registry.get(request.type).secret if f in request.payload]
        if secret:
            raise ValidationFailed(
                "a schedule cannot hold secret fields",
                [{"field": f"payload.{f}", "message": "use secretRef"} for f in secret],
            )
    build_row(request, registry, settings=settings)
    return request


def _enqueue_request(definition: Definition) -> EnqueueRequest:
    body = {"type": definition.type, "payload": definition.payload, **definition.options}
    try:
        return EnqueueRequest.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed("invalid schedule", field_errors(exc)) from None


def values(definition: Definition) -> dict[str, Any]:
    """The store's columns of a definition."""
    return asdict(definition)


def sync_declared(
    conn: Connection, registry: Registry, settings: Settings, now: datetime | None = None
) -> list[Schedule]:
    """Store the schedules declared in code (`schedule(...)`): new ones, and changed
    definitions. A declaration that is wrong is logged, naming it, and left out."""
    now = now or datetime.now(UTC)
    synced = []
    for name, body in registry.schedules.items():
        try:
            definition = define(parse(_camel_keys(body)), registry, settings)
        except (ValidationFailed, UnknownJobType) as exc:
            details = "; ".join(f"{d['field']}: {d['message']}" for d in exc.details)
            log.error("schedule %r declared in code is left out: %s (%s)", name, exc, details)
            continue
        following = next_slot(definition.cron, definition.timezone, now)
        synced.append(store.sync(conn, values(definition), following))
    return synced


def _camel_keys(body: dict[str, Any]) -> dict[str, Any]:
    return {to_camel(key): value for key, value in body.items()}


def job_row(
    schedule: Schedule,
    slot: datetime,
    registry: Registry,
    settings: Settings,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The job row a schedule's slot enqueues, naming its schedule and slot: due at the slot
    if it is still ahead of `now`, at once if not."""
    definition = Definition(
        schedule.name,
        schedule.cron,
        schedule.timezone,
        schedule.type,
        schedule.payload,
        schedule.options,
        schedule.enabled,
        schedule.catch_up,  # type: ignore[arg-type]
    )
    row = build_row(_enqueue_request(definition), registry, settings=settings)
    ahead = slot if slot > (now or datetime.now(UTC)) else None
    return row | {"schedule_name": schedule.name, "scheduled_for": slot, "scheduled_at": ahead}


# -- the Python API: warren.schedules -----------------------------------------------------------


class Schedules:
    """Cron schedules: `warren.schedules.create({...})`, `.list()`, `.get(name)`,
    `.update(name, {...})`, `.delete(name)`, `.run(name)`, as `/schedules` over HTTP."""

    def __init__(
        self, engine: Engine, registry: Registry, settings: Settings, publish: Publish
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.settings = settings
        self.publish = publish

    def list(self) -> list[Schedule]:
        with self.engine.connect() as conn:
            return store.every(conn)

    def get(self, name: str) -> Schedule:
        with self.engine.connect() as conn:
            return store.get(conn, known_name(name))

    def create(self, body: Mapping[str, Any]) -> Schedule:
        """Store a new schedule; its first slot is the first after now. Raises
        `ValidationFailed` naming the field, `UnknownJobType`, or `Conflict` for a taken name."""
        definition = define(parse(body), self.registry, self.settings)
        first = next_slot(definition.cron, definition.timezone, datetime.now(UTC))
        with self.engine.begin() as conn:
            return store.create(conn, values(definition), first)

    def update(self, name: str, body: Mapping[str, Any]) -> Schedule:
        """Change some fields. A new time, or a schedule enabled again, starts from the first
        slot after now: a paused schedule does not catch up. Raises as `create`, or
        `NotFound`."""
        change = parse(body, ScheduleFields)
        with self.engine.begin() as conn:
            base = store.get(conn, known_name(name), lock=True)
            definition = define(change, self.registry, self.settings, base)
            following = base.next_run_at
            moved = (definition.cron, definition.timezone) != (base.cron, base.timezone)
            if moved or (definition.enabled and not base.enabled):
                now = datetime.now(UTC)
                following = next_slot(definition.cron, definition.timezone, now)
            return store.update(conn, values(definition), following)

    def delete(self, name: str) -> None:
        """Delete a schedule; the jobs it created stay. Raises `NotFound`."""
        with self.engine.begin() as conn:
            store.delete(conn, known_name(name))

    def run(self, name: str) -> Job:
        """Enqueue the schedule's job now, outside its slots. Raises `NotFound`."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            schedule = store.get(conn, known_name(name), lock=True)
            row = job_row(schedule, now, self.registry, self.settings)
            jobs.insert(conn, [row])
            store.advance(conn, [(name, schedule.next_run_at, row["id"])], now)
        job = Job.model_validate(row)
        self.publish([dispatch_of(job)])
        return job
