"""Job type "webhook-delivery": send one JSON HTTP request to a URL someone gave us.

Receivers see the same request again after a retry, so every request carries `Warren-Job-Id`
as an idempotency key.

Requests are signed per Standard Webhooks (https://www.standardwebhooks.com/): `webhook-id`
(the job id), `webhook-timestamp` (unix seconds) and `webhook-signature` (`v1,<base64
HMAC-SHA256 of "<id>.<timestamp>.<body>">`), which any Standard Webhooks library verifies, as
does `verify` here. Whoever may enqueue chooses the URL and the body, so one secret shared by
every receiver would let a caller have Warren sign a body of its choosing, sent to itself, and
replay that to another receiver. So secrets are per destination (`secret_for`):

1. a payload's `secretRef: "name"` uses the secret `name@<the URL's host>` of
   `WARREN_WEBHOOK_SECRETS`; enqueue refuses a name with no secret for that host (422), so a
   named secret never signs for another host;
2. else the secret of the URL's host in `WARREN_WEBHOOK_SECRETS`;
3. else `WARREN_WEBHOOK_SECRET`, shared by every destination without its own;
4. else the request goes unsigned.

The signature covers the job id and the time, so a receiver that keeps the ids it has seen and
refuses old timestamps also refuses a replay of its own requests. The older
`Warren-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` header is still
sent, with the same secret, and `verify_signature` still checks it: deprecated, for one release.
No payload header can replace or repeat these headers: names starting `webhook-` or `warren-`
are refused at enqueue, and Warren's own are set last.

Only failures that may pass on their own are retried (5xx, 408, 429, network errors,
timeouts); any other answer means the request itself is wrong and fails the job at once.
Redirects are not followed: a moved endpoint is a configuration error to fix, not to chase.

The URL is someone else's choice, so the request goes through `service.netguard`: nothing on
Warren's own network (loopback, private, link-local, metadata addresses...) unless
`WARREN_ALLOWED_NETWORKS` allows it, checked on the address actually connected to; a refused
target fails the job at once (`ForbiddenAddress`) without a byte sent. Of any answer, only
the first EXCERPT_BYTES are kept, enough to tell what went wrong and too few to carry off
what a service answers.

The request runs through `service.interruptible`, so that a cancel stops the job within a
second even while the receiver holds its answer.
"""

import base64
import binascii
import codecs
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Mapping
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

from service import bodies, interruptible, netguard, storable
from service.errors import PermanentError
from service.registry import current_job, current_settings, enqueueing, job_type
from service.settings import Settings

RETRYABLE_STATUS = frozenset({408, 429})
EXCERPT_BYTES = 512  # of a response body, kept in the job's result or error
USER_AGENT = "warren-webhooks"
SIGNATURE_HEADER = "Warren-Signature"  # deprecated: the Standard Webhooks headers replace it
JOB_ID_HEADER = "Warren-Job-Id"
WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"
SIGNATURE_TOLERANCE_SECONDS = 300  # Standard Webhooks' default: five minutes either way

# Headers that describe the body's framing, which httpx computes; and the prefixes of the
# headers Warren sets itself (and may set in a later release).
_FRAMING_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_RESERVED_PREFIXES = ("webhook-", "warren-")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# What httpx can send as a header value: visible ASCII, spaces and tabs. Anything else is
# refused at enqueue rather than failing every attempt (or, for CR LF, adding a header).
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
_SECRET_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


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
    secret_ref: str | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: HttpUrl, info: ValidationInfo) -> HttpUrl:
        """At enqueue, refuse what needs no DNS lookup: credentials in the URL, a literal
        forbidden address (every spelling of one is normalized by the URL parser). A worker
        re-validating the payload skips this; its connection is checked, see `netguard`."""
        if (context := enqueueing(info)) is not None:
            netguard.refuse_at_enqueue(url, context.current_settings())
        return url

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            if _reserved(name):
                raise ValueError(f"header {name!r} is set by Warren and cannot be given")
            if not _HEADER_VALUE.fullmatch(value):
                raise ValueError(
                    f"header {name!r} must hold printable ASCII only (no line breaks or "
                    "control characters)"
                )
        return headers

    @field_validator("secret_ref")
    @classmethod
    def _check_secret_ref(cls, ref: str | None, info: ValidationInfo) -> str | None:
        """At enqueue, the named secret must exist for the URL's host: a caller must not get
        a body signed with one receiver's secret sent to another host (its own)."""
        if ref is None:
            return None
        if not _SECRET_REF.fullmatch(ref):
            raise ValueError("must be a name of letters, digits, '.', '_' and '-'")
        ref = ref.lower()
        context, url = enqueueing(info), info.data.get("url")
        if context is not None and url is not None:
            try:
                secret_for(context.current_settings(), url.host or "", ref)
            except MissingSecret as exc:
                raise ValueError(str(exc)) from None
        return ref


def _reserved(name: str) -> bool:
    name = name.lower()
    return name in _FRAMING_HEADERS or name.startswith(_RESERVED_PREFIXES)


class WebhookFailed(Exception):
    """A delivery that may succeed later (5xx, 408, 429, network error): the job retries."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class MissingSecret(PermanentError):
    """A `secretRef` that names no secret of the URL's host. Refused at enqueue; at delivery
    (the worker's configuration lost it since) the job fails at once with nothing sent."""


def secret_for(settings: Settings, host: str, secret_ref: str | None = None) -> str | None:
    """The secret that signs a request to `host`, None for none (see the module docstring
    for the order). Raises `MissingSecret` for a `secret_ref` with no secret for `host`."""
    host = host.rstrip(".").lower()
    if secret_ref is not None:
        secret = settings.webhook_secrets.get(f"{secret_ref.lower()}@{host}")
        if secret is None:
            raise MissingSecret(
                f"no secret {secret_ref!r} for {host} in WARREN_WEBHOOK_SECRETS "
                f"(a secretRef names the entry {secret_ref}@<the URL's host>)"
            )
        return secret
    return settings.webhook_secrets.get(host) or settings.webhook_secret


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: the decoded bytes of `whsec_<base64>` (Standard Webhooks),
    else the secret's UTF-8 bytes (a plain secret of an older configuration)."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            pass  # settings refuse such a secret; a receiver's typo then simply never verifies
    return secret.encode()


def signature_headers(
    secret: str, message_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers that sign `body` as message `message_id`."""
    t = int(time.time()) if timestamp is None else timestamp
    return {
        WEBHOOK_ID: message_id,
        WEBHOOK_TIMESTAMP: str(t),
        WEBHOOK_SIGNATURE: f"v1,{_standard_digest(secret, message_id, t, body)}",
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: float = SIGNATURE_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """For receivers: whether `headers` (any case) sign `body` with `secret` per Standard
    Webhooks, made within `tolerance` seconds of `now`. Several `v1,` signatures may be given
    (space-separated) while secrets rotate; one matching is enough. Never raises on malformed
    headers. Keep the `webhook-id`s seen to refuse a replay within the tolerance as well."""
    found = {name.lower(): value for name, value in headers.items()}
    message_id, timestamp = found.get(WEBHOOK_ID), found.get(WEBHOOK_TIMESTAMP, "")
    signatures = found.get(WEBHOOK_SIGNATURE, "").split()
    if not (message_id and timestamp.isascii() and timestamp.isdigit() and signatures):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    expected = _standard_digest(secret, message_id, int(timestamp), body).encode()
    return any(
        hmac.compare_digest(expected, value.encode())
        for version, _, value in (entry.partition(",") for entry in signatures)
        if version == "v1"
    )


def _standard_digest(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The deprecated `Warren-Signature` header value for `body`: `t=<unix seconds>,v1=<hex
    digest>`. It binds neither the job id nor the receiver; sent for one more release."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_digest(secret, t, body)}"


def verify_signature(
    secret: str, header: str, body: bytes, tolerance: float = 300, now: float | None = None
) -> bool:
    """Deprecated, use `verify`: whether `header` (a `Warren-Signature` value) signs `body`
    with `secret` and was made within `tolerance` seconds of `now`. The time check stops
    replays of an old request. Several `v1=` entries are allowed, so a receiver can accept
    while secrets rotate."""
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
    encoding; a character cut in two at the end is left out, and what PostgreSQL cannot store
    (a NUL) is replaced."""
    decoder = codecs.getincrementaldecoder(response.encoding or "utf-8")(errors="replace")
    return storable.clean(decoder.decode(bodies.head(response, EXCERPT_BYTES), final=False))


def _request_headers(
    payload: WebhookDelivery, content: bytes, secret: str | None, job_id: str | None
) -> httpx.Headers:
    """The request's headers: the payload's, then Warren's own, which replace any of the
    same name in any case (a payload that skipped validation still cannot forge them)."""
    headers = httpx.Headers({"User-Agent": USER_AGENT})
    if payload.body is not None:
        headers["Content-Type"] = "application/json"
    for name, value in payload.headers.items():  # the caller may pick its own Content-Type
        if not _reserved(name):
            headers[name] = value
    if job_id is not None:
        headers[JOB_ID_HEADER] = job_id
    if secret is not None:
        timestamp = int(time.time())
        message_id = job_id or f"msg_{uuid.uuid4().hex}"
        headers.update(signature_headers(secret, message_id, content, timestamp))
        headers[SIGNATURE_HEADER] = sign(secret, content, timestamp)
    return headers


def _send(
    client: httpx.Client, payload: WebhookDelivery, content: bytes, headers: httpx.Headers
) -> tuple[int, str]:
    with client.stream(payload.method, str(payload.url), content=content, headers=headers) as r:
        return r.status_code, _excerpt(r)


@job_type(
    "webhook-delivery",
    payload=WebhookDelivery,
    max_attempts=8,
    timeout_seconds=360,
    secret=("headers",),  # an Authorization header is a credential
)
def deliver_webhook(payload: WebhookDelivery) -> dict[str, Any]:
    """Send the request; return `{"statusCode", "response"}` for a 2xx answer. Raises
    `netguard.ForbiddenAddress` (permanent) for a target Warren may not connect to, and
    `MissingSecret` (permanent) for a `secretRef` the worker has no secret for."""
    settings = current_settings()
    url = str(payload.url)
    content = b""
    if payload.body is not None:
        content = json.dumps(payload.body, separators=(",", ":"), ensure_ascii=False).encode()
    secret = secret_for(settings, payload.url.host or "", payload.secret_ref)
    headers = _request_headers(payload, content, secret, _job_id())

    client = netguard.client(settings, timeout=payload.timeout_seconds, follow_redirects=False)
    try:
        with client:
            # Closing the client on a cancel releases its connection; see service.interruptible.
            # `timeoutSeconds` bounds the whole exchange; httpx's bounds each read alone.
            status, excerpt = interruptible.call(
                lambda: _send(client, payload, content, headers),
                abort=client.close,
                timeout=payload.timeout_seconds,
            )
    except (httpx.TimeoutException, TimeoutError) as exc:
        raise WebhookFailed(f"timed out after {payload.timeout_seconds:g}s: {url}") from exc
    except httpx.TransportError as exc:
        raise WebhookFailed(f"could not reach {url}: {exc or type(exc).__name__}") from exc

    if 200 <= status < 300:
        return {"statusCode": status, "response": excerpt}
    message = f"HTTP {status} from {url}: {excerpt}"
    if status >= 500 or status in RETRYABLE_STATUS:
        raise WebhookFailed(message, status_code=status)
    raise PermanentError(message)
