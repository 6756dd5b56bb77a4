"""The one place where errors become HTTP responses: `{success: false, error: {code, message,
details}}` with a stable code, and never a stack trace.

Warren's error types are in `service.errors`; the few that only HTTP has (a body too large or
not JSON, a missing token) are here, in the same hierarchy (`WarrenError`)."""

import logging

import falcon
import sqlalchemy as sa

from service import errors

log = logging.getLogger(__name__)


class PayloadTooLarge(errors.WarrenError):
    """A request body over `WARREN_MAX_PAYLOAD_BYTES`."""

    code = "payload_too_large"


class UnsupportedMediaType(errors.WarrenError):
    """A request body that does not say it is JSON (`Content-Type: application/json`)."""

    code = "unsupported_media_type"


class Unauthorized(errors.WarrenError):
    """A request without a valid bearer token while `WARREN_API_TOKENS` is set."""

    code = "unauthorized"


class Forbidden(errors.WarrenError):
    """A valid bearer token without the scope the route needs (see api/auth.py)."""

    code = "forbidden"


STATUS = {
    errors.BadRequest: falcon.HTTP_400,
    errors.ValidationFailed: falcon.HTTP_422,
    PayloadTooLarge: falcon.HTTP_413,
    UnsupportedMediaType: falcon.HTTP_415,
    errors.NotFound: falcon.HTTP_404,
    errors.Conflict: falcon.HTTP_409,
    Unauthorized: falcon.HTTP_401,
    Forbidden: falcon.HTTP_403,
    errors.UpstreamFailed: falcon.HTTP_502,
}

#: The code of an error raised as an HTTP status (by Falcon, or by gunicorn: see
#: api/gunicorn_errors.py) rather than as one of Warren's error types.
FALCON_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "bad_request",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}


def code_of(status: int) -> str:
    return FALCON_CODES.get(status, "bad_request" if status < 500 else "internal")


def body(code: str, message: str, details: list | None = None) -> dict:
    return {"success": False, "error": {"code": code, "message": message, "details": details or []}}


def status_of(exc: errors.WarrenError) -> str:
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return falcon.HTTP_500


def warren_error(req: falcon.Request, resp: falcon.Response, exc: errors.WarrenError, params):
    resp.status = status_of(exc)
    resp.media = body(exc.code, exc.message, exc.details)
    if isinstance(exc, Unauthorized):
        resp.set_header("WWW-Authenticate", "Bearer")


def http_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError, params):
    resp.status = exc.status
    code = code_of(exc.status_code)
    message = exc.title if not exc.description else f"{exc.title}: {exc.description}"
    resp.media = body(code, message)
    for name, value in (exc.headers or {}).items():
        resp.set_header(name, value)


def database_error(req: falcon.Request, resp: falcon.Response, exc: sa.exc.SQLAlchemyError, params):
    log.warning("database unavailable during %s %s: %s", req.method, req.path, exc)
    resp.status = falcon.HTTP_503
    resp.media = body("unavailable", "the database is unavailable; try again shortly")


def unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception, params):
    log.exception("unhandled error during %s %s", req.method, req.path)
    resp.status = falcon.HTTP_500
    resp.media = body("internal", "internal error; it has been logged")


def install(app: falcon.App) -> None:
    """Register the handlers; Falcon picks the most specific one for each exception."""
    app.add_error_handler(Exception, unexpected)
    app.add_error_handler(sa.exc.OperationalError, database_error)
    app.add_error_handler(sa.exc.InterfaceError, database_error)
    app.add_error_handler(falcon.HTTPError, http_error)
    app.add_error_handler(errors.WarrenError, warren_error)
