"""Rescheduling a pending job: `PATCH /jobs/{id}` with a new time and/or priority.

A reschedule starts a new life of the job (its attempts are kept): a message published for
the old time or the old tier belongs to the old life, so its claim fails and it is dropped,
and the job runs once, at its new time, from its new tier's queue. A job due within the
delay horizon is published again at once; a later one waits as a row for the scheduler.
"""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic.alias_generators import to_camel

from service.enqueue import MAX_DELAY_SECONDS, Priority, validated
from service.strict import moment


class RescheduleRequest(BaseModel):
    """The body of `PATCH /jobs/{id}`: at least one of a time (`scheduledAt` or
    `delaySeconds`, from now) and a `priority`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    scheduled_at: Annotated[AwareDatetime, BeforeValidator(moment)] | None = None
    delay_seconds: float | None = Field(default=None, strict=True, ge=0, le=MAX_DELAY_SECONDS)
    priority: Priority | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> "RescheduleRequest":
        if self.delay_seconds is not None and self.scheduled_at is not None:
            raise ValueError("delaySeconds and scheduledAt exclude each other")
        if (self.scheduled_at, self.delay_seconds, self.priority) == (None, None, None):
            raise ValueError("name at least one of scheduledAt, delaySeconds and priority")
        return self

    def run_at(self, now: datetime | None = None) -> datetime | None:
        """The new time, in UTC; None when the time does not change."""
        if self.delay_seconds is not None:
            return (now or datetime.now(UTC)) + timedelta(seconds=self.delay_seconds)
        return self.scheduled_at.astimezone(UTC) if self.scheduled_at else None


def parse(body: Any) -> RescheduleRequest:
    """Validate a reschedule body; `ValidationFailed` names each bad field."""
    return validated(RescheduleRequest, body, "a reschedule")
