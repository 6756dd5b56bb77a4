"""How a job talks to a model server over HTTP: the rule generate-content and the embeddings
backends share.

A request runs through `service.interruptible`, so a cancel stops it within a second, and its
answer is read up to `MAX_ANSWER_BYTES` (an error's up to `ERROR_EXCERPT` bytes), so a server
cannot fill the worker's memory. 429 and 5xx are worth retrying, not before the server's
`Retry-After` (seconds or an HTTP date, up to `MAX_RETRY_AFTER`); any other 4xx will not get
better, so it fails the job at once. A timeout, a connection error, or an answer that is not
strict JSON (`NaN` and `Infinity` are not) is retried too.
"""

import email.utils
from datetime import UTC, datetime
from typing import Any

import httpx

from service import bodies, interruptible, storable
from service.errors import PermanentError, RetryLater
from service.strict import json_value

#: At most this long a `Retry-After` is honoured; a longer one waits for the retry policy.
MAX_RETRY_AFTER = 3600.0
#: The most of a successful answer that is read: far beyond a completion or a batch of vectors.
MAX_ANSWER_BYTES = 32 * 1024 * 1024
#: How much of an error answer is kept in the job's error.
ERROR_EXCERPT = 300


def post_json(
    url: str,
    body: dict[str, Any],
    *,
    headers: dict[str, str],
    timeout: float,
    server: str,
    failed: type[Exception],
) -> Any:
    """POST `body` to `server` (named in messages) at `url`; its JSON answer. Raises `failed`
    (retried) or `RetryLater` for what may pass, `PermanentError` for what will not."""
    client = httpx.Client(timeout=timeout, headers=headers, follow_redirects=False)
    try:
        with client:
            status, retry_after_header, content = interruptible.call(
                lambda: _exchange(client, url, body, server), abort=client.close
            )
    except httpx.TimeoutException as exc:
        raise failed(f"{server} did not answer within {timeout:g}s") from exc
    except httpx.HTTPError as exc:  # no connection, or an answer that broke off or won't decode
        raise failed(f"could not reach {server} at {url}: {exc}") from exc
    if status >= 400:
        excerpt = storable.clean(content.decode(errors="replace"))
        _raise_for_status(
            status, retry_after_header, f"HTTP {status} from {server}: {excerpt}", failed
        )
    try:
        return json_value(content)
    except ValueError as exc:
        raise failed(f"the answer of {server} is not JSON: {exc}") from exc


def _exchange(
    client: httpx.Client, url: str, body: dict[str, Any], server: str
) -> tuple[int, str | None, bytes]:
    with client.stream("POST", url, json=body) as answer:
        if answer.status_code >= 400:
            content = bodies.head(answer, ERROR_EXCERPT)
        else:
            content = bodies.read(answer, MAX_ANSWER_BYTES, f"the answer of {server}")
        return answer.status_code, answer.headers.get("Retry-After"), content


def _raise_for_status(
    status: int, retry_after_header: str | None, message: str, failed: type[Exception]
) -> None:
    if status == 429 or status >= 500:
        wait = retry_after(retry_after_header)
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
