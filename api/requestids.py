"""Request ids and access lines: every API request gets an id, answered in `X-Request-ID` and
carried by every line logged while the request is served, and one access line when it ends.

The access line is written once the response is sent (`App`), as gunicorn writes its own: a
client does not wait for the line to be formatted and written.

A client (or the proxy in front) may send its own `X-Request-ID` to follow a request across
services; it is taken only when it is a short token of safe characters (`ACCEPTED`), since it
is echoed in a response header and written to logs. Anything else is replaced by a new id,
never cleaned up and used: an id is either the client's exactly or Warren's own.
"""

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import falcon

from service import logs
from service.printable import printable

HEADER = "X-Request-ID"
#: What an incoming id may be: 1 to 128 letters, digits and `-_.:@+=/`, as in a UUID, a
#: ULID, a trace id or an AWS-style `Root=1-...` id; nothing that could break a header or a
#: log line (spaces, quotes, control characters, non-ASCII).
ACCEPTED = re.compile(r"[A-Za-z0-9\-_.:@+=/]{1,128}")

access_log = logging.getLogger("warren.access")
_LINE = "warren.access_line"  # the environ key under which a request's line waits


def request_id(incoming: str | None) -> str:
    """The client's id if it is acceptable, else a new one (32 hex digits)."""
    if incoming is not None and ACCEPTED.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIds:
    """Falcon middleware; put it first, so that every other middleware's lines carry the id.
    `req.context.request_id` is the id, for handlers that want it. The request's access line
    is written by `App`, once the response is sent."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.request_id = request_id(req.get_header(HEADER))
        req.context.started = time.perf_counter()
        logs.request_started(req.context.request_id)
        resp.set_header(HEADER, req.context.request_id)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool
    ) -> None:
        started = getattr(req.context, "started", None)
        if started is None:  # the request never reached process_request
            return
        resp.set_header(HEADER, req.context.request_id)  # an error handler may have reset it
        logs.request_ended()
        if access_log.isEnabledFor(logging.INFO):  # off with WARREN_ACCESS_LOG=false
            req.env[_LINE] = _line_fields(req, resp, started)


def _line_fields(req: falcon.Request, resp: falcon.Response, started: float) -> dict[str, Any]:
    """What the request's access line says; built only when the line is written."""
    status = resp.status_code if isinstance(resp.status_code, int) else 500
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    return {
        "method": req.method,
        "path": printable(req.path),
        "status": status,
        "duration_ms": duration_ms,
        "request_id": req.context.request_id,
    }


class App(falcon.App):
    """Falcon's app, writing each request's access line (`RequestIds`) once the response is
    sent: a server calls the body's `close()` then (PEP 3333). A body that is not a list (a
    file, which the server may send with `sendfile`) is left as it is; its line is written
    before it is sent."""

    def __call__(self, env: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        try:
            body = super().__call__(env, start_response)
        except BaseException:
            _write_line(env)
            raise
        if isinstance(body, list):
            return _LoggedBody(body, env)
        _write_line(env)
        return body


class _LoggedBody(list):
    def __init__(self, body: list[bytes], env: dict[str, Any]) -> None:
        super().__init__(body)
        self.env = env

    def close(self) -> None:
        _write_line(self.env)


def _write_line(env: dict[str, Any]) -> None:
    fields = env.pop(_LINE, None)
    if fields is not None:
        access_log.info(
            "%s %s %s %.2f ms",
            fields["method"],
            fields["path"],
            fields["status"],
            fields["duration_ms"],
            extra=fields,
        )
