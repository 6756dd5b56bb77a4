"""Request ids and access lines: every API request gets an id, answered in `X-Request-ID` and
carried by every line logged while the request is served, and one access line when it ends.

A client (or the proxy in front) may send its own `X-Request-ID` to follow a request across
services; it is taken only when it is a short token of safe characters (`ACCEPTED`), since it
is echoed in a response header and written to logs. Anything else is replaced by a new id,
never cleaned up and used: an id is either the client's exactly or Warren's own.
"""

import logging
import re
import time
import uuid

import falcon

from service import logs

HEADER = "X-Request-ID"
#: What an incoming id may be: 1 to 128 letters, digits and `-_.:@+=/`, as in a UUID, a
#: ULID, a trace id or an AWS-style `Root=1-...` id; nothing that could break a header or a
#: log line (spaces, quotes, control characters, non-ASCII).
ACCEPTED = re.compile(r"[A-Za-z0-9\-_.:@+=/]{1,128}")

access_log = logging.getLogger("warren.access")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def printable(path: str) -> str:
    """`path` with its control characters escaped (`\\x0a`): a request's path is the
    client's text, and a raw line break in it would forge a second line in a text log."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", path)


def request_id(incoming: str | None) -> str:
    """The client's id if it is acceptable, else a new one (32 hex digits)."""
    if incoming is not None and ACCEPTED.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIds:
    """Falcon middleware; put it first, so that every other middleware's lines carry the id.
    `req.context.request_id` is the id, for handlers that want it."""

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
        status = resp.status_code if isinstance(resp.status_code, int) else 500
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        path = printable(req.path)
        access_log.info(
            "%s %s %s %.2f ms",
            req.method,
            path,
            status,
            duration_ms,
            extra={
                "method": req.method,
                "path": path,
                "status": status,
                "duration_ms": duration_ms,
                "request_id": req.context.request_id,
            },
        )
        logs.request_ended()
