"""Job type "webhook-delivery": send one JSON HTTP request to a URL someone gave us.

Receivers see the same request again after a retry, so every request carries `Warren-Job-Id`
as an idempotency key. With `WARREN_WEBHOOK_SECRET` set, requests are signed the way Stripe
signs its webhooks (`Warren-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`), so a receiver
can check with `verify_signature` that the request came from us, unaltered and recently.

Only failures that may pass on their own are retried (5xx, 408, 429, network errors,
timeouts); any other answer means the request itself is wrong and fails the job at once.
Redirects are not followed: a moved endpoint is a configuration error to fix, not to chase.

The URL is someone else's choice, so the request goes through `service.netguard`: nothing on
Warren's own network (loopback, private, link-local, metadata addresses...) unless
`WARREN_ALLOWED_NETWORKS` allows it, checked on the address actually connected to; a refused
target fails the job at once (`ForbiddenAddress`) without a byte sent. Of any answer, only
the first EXCERPT_BYTES are kept, enough to tell what went wrong and too few to carry off
what a service answers.
"""

import codecs
import hashlib
import hmac
import json
import re
import time
from typing import Annotated, Any, Literal

import httpx
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    JsonValue,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel

from service import netguard
from service.errors import PermanentError
from service.registry import current_job, current_settings, enqueueing, job_type

RETRYABLE_STATUS = frozenset({408, 429})
EXCERPT_BYTES = 512  # of a response body, kept in the job's result or error
USER_AGENT = "warren-webhooks"
SIGNATURE_HEADER = "Warren-Signature"
JOB_ID_HEADER = "Warren-Job-Id"

# Headers Warren sets itself or that describe the body's framing, which httpx computes.
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "warren-job-id"}
    | {SIGNATURE_HEADER.lower()}
)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


Method = Annotated[Literal["GET", "POST", "PUT", "PATCH", "DELETE"], BeforeValidator(_upper)]


class WebhookDelivery(BaseModel):
    """The payload: where to send what. JSON fields are camelCase."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    url: HttpUrl
    method: Method = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    body: JsonValue = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: HttpUrl, info: ValidationInfo) -> HttpUrl:
        """At enqueue, refuse what needs no DNS lookup: credentials in the URL, a literal
        forbidden address (every spelling of one is normalized by the URL parser). A worker
        re-validating the payload skips this; its connection is checked, see `netguard`."""
        if (context := enqueueing(info)) is None:
            return url
        if url.username or url.password:
            raise ValueError("credentials in the URL (user:password@) are not allowed")
        if netguard.literal_address(url.host or "") is not None:
            guard = netguard.NetworkGuard.from_settings(context.current_settings())
            if (refusal := guard.url_refusal(str(url))) is not None:
                raise ValueError(refusal)
        return url

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _TOKEN.match(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by Warren and cannot be given")
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name!r} must not contain line breaks")
        return headers


class WebhookFailed(Exception):
    """A delivery that may succeed later (5xx, 408, 429, network error): the job retries."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The `Warren-Signature` header value for `body`: `t=<unix seconds>,v1=<hex digest>`."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_digest(secret, t, body)}"


def verify_signature(
    secret: str, header: str, body: bytes, tolerance: float = 300, now: float | None = None
) -> bool:
    """Whether `header` (a `Warren-Signature` value) signs `body` with `secret` and was made
    within `tolerance` seconds of `now`. The time check stops replays of an old request.
    Several `v1=` entries are allowed, so a receiver can accept while secrets rotate."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = _digest(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _job_id() -> str | None:
    try:
        return current_job().id
    except RuntimeError:
        return None


def _excerpt(response: httpx.Response) -> str:
    """The first EXCERPT_BYTES of the body as text, reading no more of a huge body than
    needed. Bounded in bytes, not characters, so that what is kept stays small whatever the
    encoding; a character cut in two at the end is left out."""
    data = bytearray()
    for chunk in response.iter_bytes():
        data += chunk[: EXCERPT_BYTES - len(data)]
        if len(data) >= EXCERPT_BYTES:
            break
    decoder = codecs.getincrementaldecoder(response.encoding or "utf-8")(errors="replace")
    return decoder.decode(bytes(data), final=False)


@job_type("webhook-delivery", payload=WebhookDelivery, max_attempts=8, timeout_seconds=360)
def deliver_webhook(payload: WebhookDelivery) -> dict[str, Any]:
    """Send the request; return `{"statusCode", "response"}` for a 2xx answer. Raises
    `netguard.ForbiddenAddress` (permanent) for a target Warren may not connect to."""
    settings = current_settings()
    url = str(payload.url)
    content = b""
    headers = {"User-Agent": USER_AGENT}
    if payload.body is not None:
        content = json.dumps(payload.body, separators=(",", ":"), ensure_ascii=False).encode()
        headers["Content-Type"] = "application/json"
    headers.update(payload.headers)  # the caller may pick its own Content-Type or User-Agent
    if (job_id := _job_id()) is not None:
        headers[JOB_ID_HEADER] = job_id
    if secret := settings.webhook_secret:
        headers[SIGNATURE_HEADER] = sign(secret, content)

    try:
        with (
            netguard.client(
                settings, timeout=payload.timeout_seconds, follow_redirects=False
            ) as client,
            client.stream(payload.method, url, content=content, headers=headers) as response,
        ):
            status, excerpt = response.status_code, _excerpt(response)
    except httpx.TimeoutException as exc:
        raise WebhookFailed(f"timed out after {payload.timeout_seconds:g}s: {url}") from exc
    except httpx.TransportError as exc:
        raise WebhookFailed(f"could not reach {url}: {exc or type(exc).__name__}") from exc

    if 200 <= status < 300:
        return {"statusCode": status, "response": excerpt}
    message = f"HTTP {status} from {url}: {excerpt}"
    if status >= 500 or status in RETRYABLE_STATUS:
        raise WebhookFailed(message, status_code=status)
    raise PermanentError(message)
