"""JSON values PostgreSQL can store, checked before they reach it.

Python's `json` module accepts what PostgreSQL refuses: a NUL character (`\\u0000`) in a
string or key (neither `text` nor `jsonb` holds one), a lone UTF-16 surrogate (`"\\ud800"`,
which cannot be encoded as UTF-8 at all), and numbers past a double (`1e400` reads as
infinity, which `jsonb` has no spelling for). Each of these used to fail inside the database
driver, after validation, as a 500. Here they are found first, in one walk over the value, and
named by their path (`jobs[1].payload.body.deep[0]`) so the caller can fix them.

The walk is iterative and refuses nesting deeper than `MAX_DEPTH`: a 2 KB body of brackets
would otherwise exhaust Python's stack in whatever recursive code reads it next (pydantic,
`json.dumps`, PostgreSQL's own parser).
"""

import math
import re
from collections.abc import Mapping
from typing import Any

from service.errors import BadRequest, ValidationFailed

#: How deeply a JSON value may nest: far more than any job payload needs, far less than any
#: recursive reader of it can take.
MAX_DEPTH = 64

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
#: The smallest integer Python will not write as JSON (`sys.get_int_max_str_digits()`).
_TOO_LONG_INT = 10**4300


def text_problem(text: str) -> str | None:
    """Why PostgreSQL cannot store `text`, or None when it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character (\\u0000)"
    return "contains a lone UTF-16 surrogate, which is not text"


def clean(text: str) -> str:
    """`text` with what PostgreSQL cannot store (a NUL, a lone surrogate) replaced by U+FFFD:
    for text Warren keeps as it came from outside, a server's answer or an exception's
    message, where refusing it would lose the rest of what it says."""
    return _UNSTORABLE.sub("\ufffd", text)


def check_params(params: Mapping[str, Any]) -> None:
    """Raise `BadRequest` naming the first query parameter whose name or value (or one of its
    values) PostgreSQL cannot store. For every reader of filters: the API, the Python client
    and the CLI alike."""
    for name, values in params.items():
        for text in (name, *(values if isinstance(values, list) else [values])):
            if isinstance(text, str) and (problem := text_problem(text)):
                raise BadRequest(f"query parameter {name!r} {problem}")


def check(value: Any, prefix: str = "") -> None:
    """Raise `ValidationFailed` naming every string, key or number in `value` that PostgreSQL
    cannot store, or `BadRequest` when `value` nests deeper than `MAX_DEPTH`."""
    details = []
    for path, problem in _problems(value, prefix):
        details.append({"field": path or "(body)", "message": problem})
    if details:
        raise ValidationFailed("the request holds values that cannot be stored", details)


def _problems(value: Any, prefix: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    stack: list[tuple[Any, str, int]] = [(value, prefix, 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadRequest(f"the JSON nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            if problem := text_problem(item):
                found.append((path, problem))
        elif isinstance(item, float):
            if math.isnan(item):
                found.append((path, "is not a number (NaN)"))
            elif math.isinf(item):
                found.append((path, "is a number beyond the range of a double"))
        elif isinstance(item, int) and abs(item) >= _TOO_LONG_INT:  # a Python caller's
            found.append((path, "is an integer of more than 4,300 digits"))
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):  # a Python caller's; JSON's keys are text
                    found.append((path, f"a key is {type(key).__name__}, not text: {key!r:.40}"))
                    continue
                if problem := text_problem(key):
                    found.append((path, f"a key {problem}"))
                    continue
                stack.append((child, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(item, list | tuple):  # `json.dumps` writes a tuple as a list
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
    return sorted(found)
