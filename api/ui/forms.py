"""Reading the dashboard's forms: small urlencoded bodies of UTF-8 text, each field once."""

from urllib.parse import parse_qsl

import falcon

from api.errors import UnsupportedMediaType
from api.requests import read_body
from service import storable
from service.errors import BadRequest

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
#: The dashboard's largest form is a sign-in: a token and a CSRF token.
MAX_FORM_BYTES = 8192
MAX_FIELDS = 32


def read_form(req: falcon.Request) -> dict[str, str]:
    """The fields of a urlencoded body. Raises `UnsupportedMediaType` for another body,
    `PayloadTooLarge` past `MAX_FORM_BYTES`, `BadRequest` for a body cut short, a field given
    twice, too many fields, or text that is not UTF-8; `storable.check_params` refuses NUL
    characters."""
    media_type = (req.content_type or "").partition(";")[0].strip().lower()
    if req.content_length and media_type != FORM_MEDIA_TYPE:
        raise UnsupportedMediaType(f"a form is sent as {FORM_MEDIA_TYPE}")
    raw = read_body(req, MAX_FORM_BYTES, f"a form is at most {MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(
            raw.decode("ascii"), keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the form is not urlencoded UTF-8 text") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise BadRequest(f"form field {name!r} given more than once")
        fields[name] = value
    storable.check_params(fields)
    return fields
