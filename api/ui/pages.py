"""The dashboard's pages: overview, jobs, one job, dead letters, schedules.

Every page reads through the `Warren` facade, never a whole table: counts are the kept
counts, job lists are `GET /jobs`'s cursor pages. An error (a bad filter, an unknown job) is
a page with the error's status and message, never a 5xx.
"""

import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import falcon

from api.errors import status_of
from api.requests import query_params
from api.ui import chart
from api.ui.access import Access, SignInRequired, Visitor
from api.ui.templating import render
from api.views import attempt_json, job_json
from service import queries
from service.broker import TIERS, queue_family
from service.client import Warren
from service.errors import BadRequest, WarrenError
from service.models import STATUSES

#: What an action's redirect may announce (`?notice=<key>`): fixed text, never the visitor's.
NOTICES = {
    "retried": "Retry queued: the job runs again with fresh attempts.",
    "cancelled": "Cancel requested.",
    "replayed": "Dead letters replayed: their jobs run again.",
    "purged": "Dead letters purged; their jobs stay failed.",
    "paused": "Paused.",
    "resumed": "Resumed.",
    "ran": "Job enqueued from the schedule.",
    "signed-out": "Signed out.",
    "bulk-cancelled": "Cancelled {n} jobs.",
    "bulk-retried": "Queued {n} jobs to run again.",
}
#: The query parameters of a notice, which no page reads as a filter.
NOTICE_PARAMS = ("notice", "n")


class Page:
    """A GET page: `show()` renders; a `WarrenError` becomes an error page with its status,
    and a visitor who must sign in is sent to the sign-in form."""

    template = ""
    nav = ""  # which link of the top bar is this page
    needs = ("GET", "/jobs")  # the API route whose scope reading this page needs

    def __init__(self, warren: Warren, access: Access) -> None:
        self.warren = warren
        self.access = access

    def on_get(self, req: falcon.Request, resp: falcon.Response, **params: Any) -> None:
        visitor = self.access.visitor(req, resp)
        try:
            self.access.require(visitor, *self.needs)
            context = self.show(req, **params)
        except SignInRequired:
            if req.get_header("HX-Request"):  # a refresh: htmx takes the whole page there
                resp.set_header("HX-Redirect", "/ui/signin")
            else:
                redirect(resp, "/ui/signin")
            return
        except WarrenError as exc:
            show_error(resp, visitor, exc)
            return
        notice = notice_of(req)
        render(
            resp,
            self.template,
            context.pop("code", falcon.HTTP_200),
            visitor=visitor,
            notice=notice,
            nav=self.nav,
            here=req.relative_uri,
            **context,
        )

    def show(self, req: falcon.Request, **params: Any) -> dict[str, Any]:
        """The template's context; `code` in it, if there, is the answer's status."""
        raise NotImplementedError


def notice_of(req: falcon.Request) -> str | None:
    """The notice a redirect asked for, with its count (`n`, digits only) if it has one."""
    notice = NOTICES.get(req.get_param("notice") or "")
    count = req.get_param("n") or ""
    if notice and "{n}" in notice:
        return notice.format(n=count) if re.fullmatch(r"[0-9]{1,15}", count) else None
    return notice


def show_error(resp: falcon.Response, visitor: Visitor, exc: WarrenError) -> None:
    status = status_of(exc)
    render(
        resp, "error.html", status, visitor=visitor, notice=None, nav="", error=exc, status=status
    )


class Overview(Page):
    """Counts, the chart of the last hour, queues, workers and pauses. Each part refreshes on
    its own (htmx names it in `HX-Target`), and only what that part shows is read: the counts
    every 3 s are the kept counts, the chart's hour of finished jobs only every 15 s."""

    template = "overview.html"
    nav = "overview"
    PARTS = frozenset({"counts", "chart", "state"})

    def show(self, req: falcon.Request) -> dict[str, Any]:
        target = req.get_header("HX-Target")
        parts = {target} if target in self.PARTS else self.PARTS
        context: dict[str, Any] = {"parts": parts, "statuses": STATUSES}
        if parts & {"counts", "state"}:
            context["stats"] = self.warren.stats()
        if "chart" in parts:
            context["chart"] = chart.throughput(self.warren.per_minute())
        if "state" in parts:
            queues = context["stats"]["queues"]
            context["tiers"] = [
                {"tier": tier, "queues": [(name, queues.get(name)) for name in family]}
                for tier, family in ((t, queue_family(self.warren.settings, t)) for t in TIERS)
            ]
            context["workers"] = self.warren.workers()
            context["paused"] = self.warren.paused()
            # A type no longer registered still shows while it has jobs or a pause to resume;
            # only a registered one can be paused.
            context["registered"] = set(self.warren.registry.names())
            paused_types = context["paused"].types
            context["job_types"] = sorted(
                {*context["registered"], *context["stats"]["byType"], *paused_types}
            )
        return context


class Jobs(Page):
    """`GET /jobs` as a page: the same filters (blank form fields are left out; the form's
    `payload` field is `<field>=<value>`, short for `payload.<field>=<value>`), newest first,
    paged by cursor."""

    template = "jobs.html"
    nav = "jobs"

    def show(self, req: falcon.Request) -> dict[str, Any]:
        shown = {k: v for k, v in query_params(req).items() if v != "" and k not in NOTICE_PARAMS}
        params = job_filters(shown)
        form = {k: v for k, v in shown.items() if k not in ("cursor", "offset")}
        context = {
            "form": form,
            "filters": {k: v for k, v in form.items() if k not in queries.PAGING},
            "job_types": self.warren.registry.names(),
            "statuses": STATUSES,
            "error": None,
            "jobs": [],
            "next_page": None,
            "paged": "cursor" in params,
        }
        try:
            page = self.warren.list(queries.Filters.parse(params))
        except BadRequest as exc:
            return {**context, "error": exc.message, "code": falcon.HTTP_400}
        next_page = _query({**form, "cursor": page.next_cursor}) if page.next_cursor else None
        return {**context, "jobs": [job_json(job) for job in page.jobs], "next_page": next_page}


def job_filters(fields: Mapping[str, str]) -> dict[str, str]:
    """The parameters of `GET /jobs` from the jobs page's fields: blank ones left out, and
    `payload=<field>=<value>` spelled `payload.<field>=<value>`. Raises `BadRequest` for a
    `payload` field without `=`."""
    params = {name: value for name, value in fields.items() if value != ""}
    if "payload" in params:
        field, equals, value = params.pop("payload").partition("=")
        if not equals or not field.strip():
            raise BadRequest("the payload filter is <field>=<value>, e.g. to=a@example.com")
        params[f"payload.{field.strip()}"] = value
    return params


class Job(Page):
    template = "job.html"
    nav = "jobs"

    def show(self, req: falcon.Request, job_id: uuid.UUID) -> dict[str, Any]:
        job = self.warren.get(job_id)
        return {
            "job": job_json(job),
            "attempts": [attempt_json(a) for a in reversed(self.warren.attempts(job_id))],
            "final": job.status in ("completed", "failed", "cancelled"),
        }


class DeadLetters(Page):
    template = "dlq.html"
    nav = "dlq"
    needs = ("GET", "/dlq/groups")

    def show(self, req: falcon.Request) -> dict[str, Any]:
        return {"groups": self.warren.dlq.groups()}


class Schedules(Page):
    template = "schedules.html"
    nav = "schedules"
    needs = ("GET", "/schedules")

    def show(self, req: falcon.Request) -> dict[str, Any]:
        return {"schedules": self.warren.schedules.list()}


def redirect(resp: falcon.Response, location: str) -> None:
    """303 See Other: after a form, the browser GETs the page it goes back to."""
    resp.status = falcon.HTTP_303
    resp.location = location


def _query(params: Mapping[str, str]) -> str:
    return "?" + urlencode(params)
