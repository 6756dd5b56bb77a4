"""Secret payload fields: sealed when a job is enqueued, opened only for its handler.

A job type names the payload fields that hold secrets (`job_type(..., secret=("headers",))`):
a webhook's `Authorization` header, an API key. Everyone with a token may read jobs, their
dead letters and their messages in RabbitMQ, so such a field is stored as
`{"$secret": {"fernet": <token>}}`, encrypted with `WARREN_SECRET_KEY` (Fernet: AES-128-CBC
with an HMAC, from `cryptography`). The API, the CLI and the DLQ show `"[secret]"` in its
place; the worker opens it just before the handler runs. A token is bound to its job and
field: copied into another job's payload, it does not open.

Without `WARREN_SECRET_KEY` a secret field is stored as `{"$secret": {"clear": <value>}}`:
still never shown by Warren, but readable in the database and in RabbitMQ. Set the key (the
same on API and worker processes) to keep it encrypted at rest.
"""

import json
from collections.abc import Iterable
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from service.errors import PermanentError

MARK = "$secret"
REDACTED = "[secret]"


def new_key() -> str:
    """A fresh value for `WARREN_SECRET_KEY`."""
    return Fernet.generate_key().decode()


def seal(
    payload: dict[str, Any], fields: Iterable[str], key: str | None, job_id: str
) -> dict[str, Any]:
    """`payload` with each secret field that holds a value sealed for job `job_id`."""
    sealed = dict(payload)
    for name in fields:
        if sealed.get(name) is not None:
            sealed[name] = {MARK: _sealed(sealed[name], key, f"{job_id}/{name}")}
    return sealed


def _sealed(value: Any, key: str | None, owner: str) -> dict[str, Any]:
    if key is None:
        return {"clear": value}
    plain = json.dumps({"owner": owner, "value": value}).encode()
    return {"fernet": Fernet(key.encode()).encrypt(plain).decode()}


def unseal(
    payload: dict[str, Any], fields: Iterable[str], key: str | None, job_id: str
) -> dict[str, Any]:
    """`payload` as it was enqueued for job `job_id`. Only the secret fields are opened.
    Raises `PermanentError` for one this process cannot open (sealed with another key, or for
    another job): retrying cannot make it readable."""
    opened = dict(payload)
    for name in fields:
        if _is_sealed(opened.get(name)):
            opened[name] = _opened(opened[name][MARK], key, f"{job_id}/{name}")
    return opened


def _opened(box: dict[str, Any], key: str | None, owner: str) -> Any:
    if "clear" in box:
        return box["clear"]
    if key is None:
        raise PermanentError("a secret payload field is encrypted, but WARREN_SECRET_KEY is unset")
    try:
        plain = json.loads(Fernet(key.encode()).decrypt(str(box.get("fernet")).encode()))
    except (InvalidToken, ValueError):
        plain = None
    if not isinstance(plain, dict) or plain.get("owner") != owner:
        raise PermanentError(
            "a secret payload field cannot be opened: sealed with another WARREN_SECRET_KEY,"
            " or for another job"
        )
    return plain["value"]


def redacted(payload: Any) -> Any:
    """`payload` as Warren shows it: each sealed field is `"[secret]"`."""
    if not isinstance(payload, dict):
        return payload
    return {name: REDACTED if _is_sealed(value) else value for name, value in payload.items()}


def _is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {MARK} and isinstance(value[MARK], dict)
