"""Operator controls over HTTP: pause and resume a tier (`/queues/{tier}/pause|resume`) or a
job type (`/types/{type}/pause|resume`), and cancel or retry every job a filter selects
(`POST /jobs/cancel`, `POST /jobs/retry`). What they do is in `service.controls`."""

from collections.abc import Callable
from typing import Any

import falcon

from api.requests import read_json
from api.shapes import PausedAnswer, PausedSet
from api.views import bulk_json
from service import controls
from service.client import Warren
from service.store.pauses import Kind, Paused


def install(app: falcon.App, warren: Warren) -> None:
    """Add the routes of operator controls to `app`."""
    for path, kind in (("/queues/{tier}", "tier"), ("/types/{type}", "type")):
        pausing = Pausing(warren, kind)
        app.add_route(f"{path}/pause", pausing, suffix="pause")
        app.add_route(f"{path}/resume", pausing, suffix="resume")
    app.add_route("/jobs/cancel", Bulk(warren, warren.cancel_where))
    app.add_route("/jobs/retry", Bulk(warren, warren.retry_where))


def paused_answer(paused: Paused) -> dict[str, Any]:
    answer = PausedAnswer(success=True, paused=PausedSet(**controls.paused_json(paused)))
    return answer.model_dump(by_alias=True)


class Pausing:
    """Pause or resume one tier or one job type; the answer says everything paused now. The
    path's one parameter (`tier` or `type`) names it."""

    def __init__(self, warren: Warren, kind: Kind) -> None:
        self.warren = warren
        self.kind = kind

    def on_post_pause(self, req: falcon.Request, resp: falcon.Response, **name: str) -> None:
        resp.media = paused_answer(self.warren.pause(self.kind, name[self.kind]))

    def on_post_resume(self, req: falcon.Request, resp: falcon.Response, **name: str) -> None:
        resp.media = paused_answer(self.warren.resume(self.kind, name[self.kind]))


class Bulk:
    """`{"filter": {<GET /jobs filters>}, "dryRun": false}`: apply `verb` (the client's
    `cancel_where` or `retry_where`) to what the filter selects, in batches; 202 with how
    many jobs matched and how many changed."""

    def __init__(self, warren: Warren, verb: Callable[..., controls.Bulk]) -> None:
        self.warren = warren
        self.verb = verb

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        request = controls.parse_bulk(read_json(req, self.warren.settings.max_payload_bytes))
        resp.status = falcon.HTTP_202
        resp.media = bulk_json(self.verb(request.filter, dry_run=request.dry_run))
