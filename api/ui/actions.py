"""The dashboard's buttons: each is a form POST that does what one API route does, with that
route's scope, after the CSRF check, and then sends the browser back to the page (303) with a
notice."""

import uuid
from typing import Any, Literal
from urllib.parse import urlencode

import falcon

from api.ui.access import Access, Visitor
from api.ui.forms import read_form
from api.ui.pages import job_filters, redirect, show_error
from api.ui.templating import render
from service.client import Warren
from service.errors import BadRequest, WarrenError


class Action:
    """One button. `needs` is the API route it mirrors; `act()` does it and returns where the
    browser goes next."""

    needs = ("POST", "")

    def __init__(self, warren: Warren, access: Access) -> None:
        self.warren = warren
        self.access = access

    def on_post(self, req: falcon.Request, resp: falcon.Response, **params: Any) -> None:
        visitor = self.access.visitor(req, resp)
        try:
            form = read_form(req)
            self.access.check_csrf(req, visitor, form)
            self.access.require(visitor, *self.needs)
            self.answer(resp, visitor, form, **params)
        except WarrenError as exc:
            show_error(resp, visitor, exc)

    def answer(
        self, resp: falcon.Response, visitor: Visitor, form: dict[str, str], **params: Any
    ) -> None:
        """Do it, and send the browser on; an action that asks first renders instead."""
        redirect(resp, self.act(form, **params))

    def act(self, form: dict[str, str], **params: Any) -> str:
        raise NotImplementedError


class RetryJob(Action):
    needs = ("POST", "/jobs/{}/retry")

    def act(self, form: dict[str, str], job_id: uuid.UUID) -> str:
        self.warren.retry(job_id)
        return f"/ui/jobs/{job_id}?notice=retried"


class CancelJob(Action):
    needs = ("DELETE", "/jobs/{}")

    def act(self, form: dict[str, str], job_id: uuid.UUID) -> str:
        self.warren.cancel(job_id)
        return f"/ui/jobs/{job_id}?notice=cancelled"


def _fingerprint(form: dict[str, str]) -> dict[str, str]:
    fingerprint = form.get("fingerprint", "")
    if not fingerprint:
        raise BadRequest("which dead letters: the form names no fingerprint")
    return {"fingerprint": fingerprint}


class ReplayGroup(Action):
    needs = ("POST", "/dlq/replay")

    def act(self, form: dict[str, str]) -> str:
        self.warren.dlq.replay(_fingerprint(form))
        return "/ui/dlq?notice=replayed"


class PurgeGroup(Action):
    needs = ("DELETE", "/dlq")

    def act(self, form: dict[str, str]) -> str:
        self.warren.dlq.purge(_fingerprint(form))
        return "/ui/dlq?notice=purged"


class PauseSchedule(Action):
    needs = ("PATCH", "/schedules/{}")

    def act(self, form: dict[str, str], name: str) -> str:
        self.warren.schedules.update(name, {"enabled": False})
        return "/ui/schedules?notice=paused"


class ResumeSchedule(Action):
    needs = ("PATCH", "/schedules/{}")

    def act(self, form: dict[str, str], name: str) -> str:
        self.warren.schedules.update(name, {"enabled": True})
        return "/ui/schedules?notice=resumed"


class RunSchedule(Action):
    needs = ("POST", "/schedules/{}/run")

    def act(self, form: dict[str, str], name: str) -> str:
        job = self.warren.schedules.run(name)
        return f"/ui/jobs/{job.id}?notice=ran"


class Pausing(Action):
    """Pause or resume a tier (`/ui/queues/{tier}/pause`) or a job type
    (`/ui/types/{type}/resume`): workers start none of its jobs until it is resumed."""

    def __init__(
        self, warren: Warren, access: Access, kind: Literal["tier", "type"], verb: str
    ) -> None:
        super().__init__(warren, access)
        self.kind, self.verb = kind, verb
        collection = "queues" if kind == "tier" else "types"
        self.needs = ("POST", f"/{collection}/{{}}/{verb}")

    def act(self, form: dict[str, str], name: str) -> str:
        if self.verb == "pause":
            self.warren.pause(self.kind, name)
        else:
            self.warren.resume(self.kind, name)
        return f"/ui?notice={self.verb}d"


class BulkJobs(Action):
    """Cancel or retry every job the jobs page's filters select. The first press only counts
    (a dry run) and asks to confirm; the confirming press does it, in batches, and goes back
    to the jobs page with what changed."""

    def __init__(self, warren: Warren, access: Access, verb: str) -> None:
        super().__init__(warren, access)
        self.verb = verb
        self.needs = ("POST", f"/jobs/{verb}")

    def answer(
        self, resp: falcon.Response, visitor: Visitor, form: dict[str, str], **params: Any
    ) -> None:
        fields = {k: v for k, v in form.items() if k not in ("csrf", "confirm")}
        filters = job_filters(fields)
        run = self.warren.cancel_where if self.verb == "cancel" else self.warren.retry_where
        outcome = run(filters, dry_run=form.get("confirm") != "yes")
        if not outcome.dry_run:
            done = "bulk-cancelled" if self.verb == "cancel" else "bulk-retried"
            query = urlencode({**fields, "notice": done, "n": outcome.changed})
            redirect(resp, f"/ui/jobs?{query}")
            return
        render(
            resp,
            "bulk.html",
            visitor=visitor,
            notice=None,
            nav="jobs",
            verb=self.verb,
            fields=fields,
            outcome=outcome,
            back="/ui/jobs?" + urlencode(fields),
        )
