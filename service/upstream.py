"""How a job reads a model server's HTTP error: the rule generate-content and the embeddings
backends share.

429 and 5xx are worth retrying, not before the server's `Retry-After` (seconds or an HTTP
date, up to `MAX_RETRY_AFTER`); any other 4xx will not get better, so it fails the job at once.
"""

import email.utils
from datetime import UTC, datetime

import httpx

from service.errors import PermanentError, RetryLater

#: At most this long a `Retry-After` is honoured; a longer one waits for the retry policy.
MAX_RETRY_AFTER = 3600.0


def raise_for_status(answer: httpx.Response, server: str, failed: type[Exception]) -> None:
    """Raise for an error answer from `server` (named in the message): `RetryLater` or
    `failed` (retried) for 429 and 5xx, `PermanentError` for another 4xx."""
    status = answer.status_code
    if status < 400:
        return
    message = f"HTTP {status} from {server}: {answer.text[:300]}"
    if status == 429 or status >= 500:
        wait = retry_after(answer.headers.get("Retry-After"))
        if wait is not None:
            raise RetryLater(message, wait)
        raise failed(message)
    raise PermanentError(message)


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header, if it says a sane amount."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return seconds if 0 <= seconds <= MAX_RETRY_AFTER else None
