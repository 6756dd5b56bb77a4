"""Warren's error types. The API maps each to an HTTP status and a stable code in one place
(`api/errors.py`, which adds the errors only HTTP has); the CLI prints their message on one
line."""

from typing import Any

from dramatiq.middleware import MiddlewareError
from dramatiq.threading import Interrupt


class WarrenError(Exception):
    """Base of every error a caller of Warren may see. `code` is stable; `details` name fields."""

    code = "internal"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class BadRequest(WarrenError):
    code = "bad_request"


class UnknownJobType(BadRequest):
    code = "unknown_job_type"


class ValidationFailed(WarrenError):
    code = "validation_error"


class NotFound(WarrenError):
    code = "not_found"


class Conflict(WarrenError):
    code = "conflict"


class UpstreamFailed(WarrenError):
    """A server Warren asked on the caller's behalf (the embeddings server of a search) failed
    or gave an answer that cannot be used; the message says which and how."""

    code = "upstream_failed"


class PermanentError(Exception):
    """Raised by a handler when retrying cannot help: the job fails at once, `retryable=false`."""


#: The longest wait a `RetryLater` may ask for, as the longest retry delay a setting may set.
MAX_RETRY_LATER_SECONDS = 7 * 86_400


class RetryLater(Exception):
    """Raised by a handler for a failure worth retrying, but not before `seconds` (a server's
    `Retry-After`): the next attempt waits that long, or the retry policy's delay if longer.
    `seconds` is a number from 0 to 7 days: anything else is a `TypeError` or `ValueError`
    where the handler raises it, which fails the attempt as any bug in a handler would."""

    def __init__(self, message: str, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(f"RetryLater seconds must be a number, not {type(seconds).__name__}")
        if not 0 <= seconds <= MAX_RETRY_LATER_SECONDS:  # NaN fails this too
            raise ValueError(
                f"RetryLater seconds must be from 0 to {MAX_RETRY_LATER_SECONDS} (7 days),"
                f" not {seconds!r}"
            )
        super().__init__(message)
        self.seconds = float(seconds)


class JobCancelled(Interrupt):
    """Raised inside a running handler's thread when someone cancelled its job."""


class LeaseLost(Interrupt):
    """Raised inside a running handler's thread when its worker could not renew the job's lease
    in time, or found the job taken over: it stops so that two attempts never run at once."""


class DatabaseUnavailable(MiddlewareError):
    """The worker could not reach PostgreSQL to claim or record a job."""
