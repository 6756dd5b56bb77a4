"""Reading request bodies: JSON only, within the size limit."""

import json
from typing import Any

import falcon

from service.errors import BadRequest, PayloadTooLarge


def read_json(req: falcon.Request, limit: int) -> Any:
    """The request's JSON body. Raises `PayloadTooLarge` past `limit` bytes and `BadRequest`
    for a body that is not JSON."""
    too_large = PayloadTooLarge(f"request body is over the {limit} byte limit")
    if req.content_length is not None and req.content_length > limit:
        raise too_large
    raw = req.bounded_stream.read(limit + 1)
    if len(raw) > limit:
        raise too_large
    if not raw:
        raise BadRequest("request body is empty; expected JSON")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
