"""Retry policies: how long a job waits before its next attempt.

A policy is chosen per job (enqueue field `retry`), else per job type, else from settings.
`delay(attempt)` is the wait after failed attempt number `attempt` (1-based):

- exponential: base * 2**(attempt-1)
- linear:      base * attempt
- fixed:       base

each capped at `max_seconds`, then spread by +/- `jitter` (a fraction) so that jobs failing
together do not retry together.
"""

import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from service.settings import RetryStrategy, Settings


class RetryPolicy(BaseModel):
    """A retry strategy with its delays in seconds. JSON fields are camelCase."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    strategy: RetryStrategy = "exponential"
    base_seconds: float = Field(default=5.0, ge=0, le=86400 * 7)
    max_seconds: float = Field(default=3600.0, ge=0, le=86400 * 7)
    jitter: float = Field(default=0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _max_not_below_base(self) -> "RetryPolicy":
        if self.max_seconds < self.base_seconds:
            raise ValueError("maxSeconds must not be below baseSeconds")
        return self

    @classmethod
    def from_settings(cls, settings: Settings) -> "RetryPolicy":
        return cls(
            strategy=settings.retry_strategy,
            base_seconds=settings.retry_base_seconds,
            max_seconds=settings.retry_max_seconds,
            jitter=settings.retry_jitter,
        )

    def merged(self, override: dict[str, Any] | None) -> "RetryPolicy":
        """This policy with the fields a job set (camelCase JSON, as stored) replaced. A job
        that raises the base delay above the inherited cap raises the cap with it."""
        if not override:
            return self
        fields = {**self.model_dump(by_alias=True), **override}
        if "maxSeconds" not in override:
            fields["maxSeconds"] = max(fields["maxSeconds"], fields["baseSeconds"])
        return self.model_validate(fields)

    def base_delay(self, attempt: int) -> float:
        """The delay after failed attempt `attempt`, before jitter."""
        n = max(attempt, 1)
        if self.strategy == "exponential":
            raw = self.base_seconds * 2 ** min(n - 1, 62)
        elif self.strategy == "linear":
            raw = self.base_seconds * n
        else:
            raw = self.base_seconds
        return min(raw, self.max_seconds)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay after failed attempt `attempt`, jittered, never negative."""
        base = self.base_delay(attempt)
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))
