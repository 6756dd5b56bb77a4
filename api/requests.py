"""Reading requests: JSON bodies declared as JSON and within the size limit, and query strings
that are text PostgreSQL can store."""

from typing import Any
from urllib.parse import unquote_to_bytes

import falcon
from gunicorn.http.errors import NoMoreData, ParseException

from api.errors import PayloadTooLarge, UnsupportedMediaType
from service import storable
from service.errors import BadRequest
from service.strict import json_value

JSON_MEDIA_TYPE = "application/json"


def read_json(req: falcon.Request, limit: int) -> Any:
    """The request's JSON body. Raises `UnsupportedMediaType`
    unless the body is declared `application/json` (a form or `text/plain` is what a browser
    may send cross-site without asking), `PayloadTooLarge` past `limit` bytes, `BadRequest`
    for a body that is not JSON. What it holds is checked where it is read (`enqueue.parse`,
    `deadletters.Selection.parse`, both through `service.storable`), once, for every caller."""
    _require_json(req)
    raw = read_body(req, limit, f"request body is over the {limit} byte limit")
    if not raw:
        raise BadRequest("request body is empty; expected JSON")
    return _parse(raw)


def _require_json(req: falcon.Request) -> None:
    media_type = (req.content_type or "").partition(";")[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType(
            f"the body must be JSON, sent with Content-Type: {JSON_MEDIA_TYPE}"
            f" (got {req.content_type or 'none'})"
        )


def _require_plain(req: falcon.Request) -> None:
    """A body is read as sent: one compressed (`Content-Encoding: gzip`, or a transfer coding
    besides chunked) would be read as its compressed bytes, so it is refused as such."""
    content = (req.get_header("Content-Encoding") or "identity").strip().lower()
    transfer = (req.get_header("Transfer-Encoding") or "").lower().replace(" ", "").split(",")
    if content != "identity" or set(transfer) - {"", "chunked", "identity"}:
        raise UnsupportedMediaType("the body must be sent uncompressed (no Content-Encoding)")


def read_body(req: falcon.Request, limit: int, too_large: str) -> bytes:
    """The whole body, at most `limit` bytes: `PayloadTooLarge` (saying `too_large`) past it,
    `BadRequest` for a body that ends before it is complete (fewer bytes than its
    Content-Length, or chunks cut off) or is malformed, so a cut-off body that happens to be
    valid JSON is not taken for the whole. A chunked body has no Content-Length, so Falcon's
    `bounded_stream` reads it as empty; the server's own input stream ends where the chunks
    end (gunicorn decodes them), so it is read instead, still only `limit + 1` bytes of it."""
    _require_plain(req)
    if req.content_length is not None and req.content_length > limit:
        raise PayloadTooLarge(too_large)
    chunked = "chunked" in (req.get_header("Transfer-Encoding") or "").lower()
    stream = req.stream if chunked and req.content_length is None else req.bounded_stream
    try:
        raw = stream.read(limit + 1)
    except ParseException as exc:
        raise BadRequest(f"the request body is malformed: {exc}") from None
    except NoMoreData:
        raise BadRequest("the request body ended before its last chunk") from None
    if len(raw) > limit:
        raise PayloadTooLarge(too_large)
    if req.content_length is not None and len(raw) < req.content_length:
        raise BadRequest(
            f"the request body ended after {len(raw)} of its {req.content_length} bytes"
        )
    return raw


def _parse(raw: bytes) -> Any:
    try:
        return json_value(raw)
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None


def query_params(req: falcon.Request) -> dict[str, str]:
    """The query string's parameters; one given twice is a `BadRequest`, not a list."""
    params = {}
    for name, value in req.params.items():
        if isinstance(value, list):
            raise BadRequest(f"filter {name!r} given more than once")
        params[name] = value
    return params


class StorableQuery:
    """Middleware: a query string must be UTF-8 text without NUL characters. Falcon replaces
    bytes that are not UTF-8 with U+FFFD, so a filter would silently match something else, and
    passes NUL on to PostgreSQL, which refuses it with an error."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not req.query_string:
            return
        try:
            unquote_to_bytes(req.query_string).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the query string is not UTF-8 text") from None
        storable.check_params(req.params)
