"""What an enqueue asks for, validated the same way for HTTP, Python and CLI callers."""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails
from uuid_utils.compat import uuid7

from service import sealing, storable
from service.errors import UnknownJobType, ValidationFailed
from service.models import JobStatus
from service.registry import Enqueueing, Registry
from service.settings import RetryStrategy, Settings
from service.strict import moment

M = TypeVar("M", bound=BaseModel)

PRIORITY_NAMES = {"high": 10, "normal": 5, "low": 1}
#: What a priority may be written as, for JSON schemas (/openapi.json).
PRIORITY_INPUT = Annotated[int, Field(ge=1, le=10)] | Literal["high", "normal", "low"]
MAX_DELAY_SECONDS = 10 * 366 * 86400

_camel = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def _priority(value: Any) -> Any:
    if isinstance(value, str) and value in PRIORITY_NAMES:
        return PRIORITY_NAMES[value]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("priority is a whole number from 1 to 10, or high, normal or low")
    return value


#: A priority as a request writes it: 1 to 10, or `high`, `normal` or `low`.
Priority = Annotated[
    int,
    Field(ge=1, le=10),
    BeforeValidator(_priority, json_schema_input_type=PRIORITY_INPUT),
]


class RetryOverride(BaseModel):
    """A job's own retry policy; unset fields come from its job type, then from settings."""

    model_config = _camel

    strategy: RetryStrategy | None = None
    base_seconds: float | None = Field(default=None, strict=True, ge=0, le=86400 * 7)
    max_seconds: float | None = Field(default=None, strict=True, ge=0, le=86400 * 7)
    jitter: float | None = Field(default=None, strict=True, ge=0, le=1)

    @model_validator(mode="after")
    def _max_not_below_base(self) -> "RetryOverride":
        if (
            None not in (self.base_seconds, self.max_seconds)
            and self.max_seconds < self.base_seconds
        ):
            raise ValueError("maxSeconds must not be below baseSeconds")
        return self


class EnqueueRequest(BaseModel):
    """The enqueue body of CONTRACT.md. Only `type` and `payload` are required."""

    model_config = _camel

    type: str = Field(min_length=1, max_length=200)
    payload: dict[str, Any]
    priority: Priority | None = None
    max_attempts: Annotated[int, Field(strict=True, ge=1, le=25)] | None = None
    timeout_seconds: Annotated[int, Field(strict=True, ge=1, le=3600)] | None = None
    delay_seconds: float | None = Field(default=None, strict=True, ge=0, le=MAX_DELAY_SECONDS)
    scheduled_at: Annotated[AwareDatetime, BeforeValidator(moment)] | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    retry: RetryOverride | None = None

    @model_validator(mode="after")
    def _one_way_to_delay(self) -> "EnqueueRequest":
        if self.delay_seconds is not None and self.scheduled_at is not None:
            raise ValueError("delaySeconds and scheduledAt exclude each other")
        return self


def message_of(error: ErrorDetails) -> str:
    """Pydantic's message for one error, without the `Value error, ` it puts before the text
    of a validator's own `ValueError`."""
    return error["msg"].removeprefix("Value error, ")


def field_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """Pydantic's errors as `[{field, message}]`, fields named as the caller spelled them."""
    details = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"] if not _is_union_tag(part))
        field = ".".join(part for part in (prefix, path) if part)
        details.append({"field": field or "(body)", "message": message_of(error)})
    return details


def _is_union_tag(part: object) -> bool:
    return isinstance(part, str) and (
        part.startswith(("function-", "literal[", "constrained-")) or part in ("int", "str")
    )


def validated(model: type[M], body: Any, what: str) -> M:
    """`body` as `model`, a request body of the API, Python or CLI: `ValidationFailed`
    naming each bad field (values PostgreSQL cannot store among them) if it is not one."""
    if not isinstance(body, dict):
        raise ValidationFailed(
            f"{what} is a JSON object", [{"field": "(body)", "message": "expected an object"}]
        )
    storable.check(body)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed(f"invalid {what.removeprefix('a ')}", field_errors(exc)) from None


def parse(body: Any, prefix: str = "") -> EnqueueRequest:
    """Validate an enqueue body; raise `ValidationFailed` naming each bad field, values that
    PostgreSQL cannot store among them (for HTTP, Python and CLI callers alike)."""
    if not isinstance(body, dict):
        raise ValidationFailed(
            "an enqueue request is a JSON object",
            [{"field": prefix or "(body)", "message": "expected an object"}],
        )
    storable.check(body, prefix)
    try:
        return EnqueueRequest.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed("invalid enqueue request", field_errors(exc, prefix)) from None


def _stored(payload: BaseModel, field: str) -> dict[str, Any]:
    """The payload as the JSON stored, checked as stored: a Python caller's tuple, set or
    bytes in a field typed `Any` passes validation and becomes JSON only here, and a NUL in
    it would reach PostgreSQL."""
    try:
        stored = payload.model_dump(mode="json", by_alias=True)
    except ValueError as exc:  # PydanticSerializationError, or an int past 4,300 digits
        reason = str(exc).splitlines()[0]
        raise ValidationFailed("invalid payload", [{"field": field, "message": reason}]) from None
    storable.check(stored, field)
    return stored


def build_row(
    request: EnqueueRequest,
    registry: Registry,
    prefix: str = "",
    now: datetime | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """The `jobs` row for a validated request: type known, payload valid, defaults applied.
    Raises `UnknownJobType` or `ValidationFailed`, each with details naming the field.
    `settings` are the enqueuing side's, read by the payload's enqueue-time checks (a
    webhook's literal address against `allowed_networks`); without them, the environment's.

    The job's id is a UUIDv7: it begins with the time, so new ids go to the right edge of the
    primary key's index, as rows go to the end of the table. A random UUIDv4 lands on any page
    of that index, and every page an insert touches after a checkpoint is written to the WAL
    whole (docs/performance.md). Ids made in the same millisecond count up from a random start
    (RFC 9562's counter), so they keep the time they were made even in a burst."""
    try:
        job = registry.get(request.type)
    except UnknownJobType as exc:
        field = ".".join(p for p in (prefix, "type") if p)
        raise UnknownJobType(exc.message, [{"field": field, "message": exc.message}]) from None
    field = ".".join(p for p in (prefix, "payload") if p)
    try:
        payload = job.validate(request.payload, context=Enqueueing(settings))
    except ValidationError as exc:
        raise ValidationFailed("invalid payload", field_errors(exc, field)) from None
    now = now or datetime.now(UTC)
    scheduled_at = request.scheduled_at
    if request.delay_seconds:
        scheduled_at = now + timedelta(seconds=request.delay_seconds)
    job_id = uuid7()
    stored = _stored(payload, field)
    if job.secret:
        key = Enqueueing(settings).current_settings().sealing_key
        stored = sealing.seal(stored, job.secret, key, str(job_id))
    return {
        "id": job_id,
        "type": job.name,
        "status": JobStatus.PENDING.value,
        "priority": request.priority or job.priority,
        "payload": stored,
        "attempts": 0,
        "max_attempts": request.max_attempts or job.max_attempts,
        "timeout_seconds": request.timeout_seconds or job.timeout_seconds,
        "retry": request.retry.model_dump(by_alias=True, exclude_none=True)
        if request.retry
        else None,
        "idempotency_key": request.idempotency_key,
        "created_at": now,
        "updated_at": now,
        "scheduled_at": scheduled_at.astimezone(UTC) if scheduled_at else None,
        "schedule_name": None,
        "scheduled_for": None,
    }
