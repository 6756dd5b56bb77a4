"""The dashboard's Jinja2 templates: autoescaped, so no text a job, a payload or a visitor
brings is ever markup."""

import json
from datetime import UTC, datetime
from functools import cache
from typing import Any

import falcon
import jinja2

from api.views import timestamp


@cache
def environment() -> jinja2.Environment:
    """One environment per process, built on first use (not at import)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("api.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty"] = pretty
    env.filters["ago"] = ago
    env.filters["iso"] = timestamp
    env.filters["thousands"] = "{:,}".format
    return env


def render(resp: falcon.Response, template: str, code: str = falcon.HTTP_200, **context) -> None:
    """Answer with `template` rendered: HTML that no one may frame or sniff otherwise."""
    resp.status = code
    resp.content_type = falcon.MEDIA_HTML
    resp.set_header("X-Frame-Options", "DENY")
    resp.set_header("X-Content-Type-Options", "nosniff")
    resp.set_header("Referrer-Policy", "same-origin")
    resp.set_header("Cache-Control", "no-store")
    resp.set_header(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    )
    resp.text = environment().get_template(template).render(**context)


def pretty(value: Any) -> str:
    """JSON as people read it; the template escapes it like any text."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """`12s ago`, `5m ago`, `in 3h`: how far a time is from now, coarsely."""
    if value is None:
        return "—"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    past, seconds = seconds >= 0, abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            amount = f"{int(seconds // size)}{unit}"
            break
    else:
        amount = f"{int(seconds)}s"
    return f"{amount} ago" if past else f"in {amount}"
