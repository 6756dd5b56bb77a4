"""The dashboard's buttons: each is a form POST that does what one API route does, with that
route's scope, after the CSRF check, and then sends the browser back to the page (303) with a
notice."""

import uuid
from typing import Any

import falcon

from api.ui.access import Access
from api.ui.forms import read_form
from api.ui.pages import redirect, show_error
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
            location = self.act(form, **params)
        except WarrenError as exc:
            show_error(resp, visitor, exc)
            return
        redirect(resp, location)

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
