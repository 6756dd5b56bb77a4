"""The dashboard's routes in /openapi.json: pages answer HTML, buttons are urlencoded form
POSTs answered by a 303 back to a page. Described so that the schemathesis test fuzzes them
like every other route: an answer is HTML for what the dashboard renders itself, and the
API's JSON error for what is refused before it (a malformed id, a query string that is not
UTF-8 text)."""

from typing import Any

from api.ui.forms import FORM_MEDIA_TYPE

HTML = "text/html"
ERROR = {"$ref": "#/components/schemas/Error"}
#: The statuses a page or a button answers with an HTML page of its own.
HTML_ERRORS = ("400", "401", "403", "404", "409", "413", "415", "422")
CSRF = {"type": "string", "description": "the CSRF token of the page the form came from"}
#: What any other status answers with: the API's JSON error.
DEFAULT_ANSWER = {
    "description": "an error, in the one shape every error has",
    "content": {"application/json": {"schema": ERROR}},
}
#: No bearer token: the dashboard signs in with its own cookie (see api.ui.access).
COOKIE = {"security": []}


def paths(
    job_parameters: list[dict[str, Any]], job_id: dict[str, Any], name: dict[str, Any]
) -> dict[str, Any]:
    """The `paths` entries of the dashboard; `job_parameters` are `GET /jobs`'s query
    parameters, which the jobs page takes too, and `job_id` and `name` the API's path
    parameters of a job and a schedule."""
    payload = {"name": "payload", "in": "query", "required": False, "schema": {"type": "string"}}
    fingerprint = {"fingerprint": {"type": "string"}}
    return {
        "/ui": _page("The dashboard's overview: counts, throughput, queues, workers"),
        "/ui/jobs": _page("Jobs, filtered as GET /jobs, paged", [*job_parameters, payload]),
        "/ui/jobs/{job_id}": {"parameters": [job_id], **_page("One job and its attempts")},
        "/ui/jobs/{job_id}/retry": {"parameters": [job_id], **_button("Retry a job")},
        "/ui/jobs/{job_id}/cancel": {"parameters": [job_id], **_button("Cancel a job")},
        "/ui/dlq": _page("Dead letters by fingerprint"),
        "/ui/dlq/replay": _button("Replay a group of dead letters", fingerprint),
        "/ui/dlq/purge": _button("Purge a group of dead letters", fingerprint),
        "/ui/schedules": _page("Schedules"),
        "/ui/schedules/{name}/pause": {"parameters": [name], **_button("Pause a schedule")},
        "/ui/schedules/{name}/resume": {"parameters": [name], **_button("Resume a schedule")},
        "/ui/schedules/{name}/run": {"parameters": [name], **_button("Fire a schedule now")},
        "/ui/jobs/cancel": _button("Cancel the jobs of a filter; the first press counts"),
        "/ui/jobs/retry": _button("Retry the jobs of a filter; the first press counts"),
        **{
            f"/ui/{collection}/{{name}}/{verb}": {
                "parameters": [name],
                **_button(f"{verb.capitalize()} a {what}"),
            }
            for collection, what in (("queues", "tier"), ("types", "job type"))
            for verb in ("pause", "resume")
        },
        "/ui/signin": {
            **_page("The sign-in form"),
            **_button("Sign in with a token", {"token": {"type": "string"}}),
        },
        "/ui/signout": _button("Sign out"),
        "/ui/static/{name}": {"parameters": [name], **_static()},
    }


def _answers(**extra: Any) -> dict[str, Any]:
    either = {HTML: {"schema": {"type": "string"}}, "application/json": {"schema": ERROR}}
    answers = {
        status: {"description": "an error page", "content": either} for status in HTML_ERRORS
    }
    answers["default"] = DEFAULT_ANSWER
    return {**extra, **answers}


def _page(summary: str, parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A page: 200 HTML, or 303 to the sign-in form when the dashboard needs a token."""
    answers = _answers(
        **{
            "200": {"description": "the page", "content": {HTML: {"schema": {"type": "string"}}}},
            "303": {"description": "sign in first"},
        }
    )
    get = {"summary": summary, "responses": answers, **COOKIE}
    if parameters:
        get["parameters"] = parameters
    return {"get": get}


def _static() -> dict[str, Any]:
    """The dashboard's stylesheet and script: open to all, GET and HEAD only."""
    answers = {
        "200": {"description": "the file, typed by its extension"},
        "404": {"description": "no such file", "content": {"application/json": {"schema": ERROR}}},
        "default": DEFAULT_ANSWER,
    }
    operation = {"summary": "A static file of the dashboard", "responses": answers, **COOKIE}
    return {"get": operation, "head": operation}


def _button(summary: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """A form POST: 303 back to a page when done, an HTML error page when refused."""
    schema = {"type": "object", "properties": {"csrf": CSRF, **(fields or {})}}
    post = {
        "summary": summary,
        "requestBody": {"required": True, "content": {FORM_MEDIA_TYPE: {"schema": schema}}},
        "responses": _answers(
            **{
                "303": {"description": "done: back to the page"},
                "200": {"description": "a form to confirm", "content": {HTML: {}}},
            }
        ),
        **COOKIE,
    }
    return {"post": post}
