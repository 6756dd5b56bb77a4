"""Strict parsing of client-written values, as pydantic `BeforeValidator`s.

Python and pydantic are generous readers: `int()` takes `+5`, `5_0`, ` 5 ` and Arabic-Indic
digits; pydantic's lax mode reads `"10"` and `true` as numbers and `0` or `"1767225600"` as a
time. A client that sends those has made a mistake, and guessing what it meant hides the
mistake, so Warren refuses them: a whole number is ASCII digits, a number is a JSON number, a
time is ISO 8601 text with a time zone that still is a time once converted to UTC, and JSON is
RFC 8259's.
"""

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from pydantic import BeforeValidator


def whole_number(value: Any) -> Any:
    """Text of ASCII digits as an int (query strings); an int stays one (Python callers)."""
    if isinstance(value, bool):
        raise ValueError("must be a whole number")
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            raise ValueError("must be a whole number written with the digits 0-9")
        return int(value)
    return value


#: A whole number as a query string or a client writes it: `Annotated[int, ..., Whole]`.
Whole = BeforeValidator(whole_number)


def moment(value: Any) -> Any:
    """ISO 8601 text with a time zone as an aware datetime; a datetime passes (Python callers).
    Numbers (Unix times, which pydantic would guess at) are refused, as are times that lie
    outside the years 1-9999 once in UTC (`0001-01-01T00:00:00+14:00`)."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be an ISO 8601 time, e.g. 2026-01-31T12:00:00Z") from None
    else:
        raise ValueError("must be an ISO 8601 time as text, e.g. 2026-01-31T12:00:00Z")
    if parsed.tzinfo is None:
        raise ValueError("must carry a time zone, e.g. a trailing Z")
    try:
        parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the years 1 to 9999 in UTC") from None
    return parsed


def json_value(raw: str | bytes) -> Any:
    """Strict JSON (RFC 8259): `NaN` and `Infinity` are not JSON, and an object names each
    key once (a proxy that reads the first of two `"dryRun"` keys and Warren, which would read
    the last, would see two different requests). Raises `ValueError` saying why for anything
    else Python's parser refuses, whatever the exception it raised: nesting deeper than its
    recursion limit, an integer of more than 4,300 digits, bytes not UTF-8."""
    try:
        return json.loads(raw, parse_constant=_not_json, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ValueError("it nests too deeply") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) < len(pairs):
        counts = Counter(key for key, _ in pairs)
        twice = next(key for key, count in counts.items() if count > 1)
        raise ValueError(f"the key {twice!r} is given more than once")
    return value


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")
