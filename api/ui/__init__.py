"""The dashboard at `/ui`: server-rendered pages (Jinja2) that refresh themselves with htmx
(vendored in `static/`, no build step, nothing from a CDN), on the same `Warren` facade as the
API. `install(app, warren)` adds its routes to the API's Falcon app; docs/dashboard.md says
what each page shows and how it stays cheap at a million jobs."""

from functools import partial
from pathlib import Path

import falcon

from api.ui import actions, pages, signin
from api.ui.access import Access
from service.client import Warren

STATIC = Path(__file__).resolve().parent / "static"

#: Each page and button: its path under /ui and its resource class.
PAGES = {
    "/ui": pages.Overview,
    "/ui/jobs": pages.Jobs,
    "/ui/jobs/{job_id:uuid}": pages.Job,
    "/ui/dlq": pages.DeadLetters,
    "/ui/schedules": pages.Schedules,
}
ACTIONS = {
    "/ui/jobs/{job_id:uuid}/retry": actions.RetryJob,
    "/ui/jobs/{job_id:uuid}/cancel": actions.CancelJob,
    "/ui/dlq/replay": actions.ReplayGroup,
    "/ui/dlq/purge": actions.PurgeGroup,
    "/ui/schedules/{name}/pause": actions.PauseSchedule,
    "/ui/schedules/{name}/resume": actions.ResumeSchedule,
    "/ui/schedules/{name}/run": actions.RunSchedule,
    "/ui/jobs/cancel": partial(actions.BulkJobs, verb="cancel"),
    "/ui/jobs/retry": partial(actions.BulkJobs, verb="retry"),
    **{
        f"/ui/{collection}/{{name}}/{verb}": partial(actions.Pausing, kind=kind, verb=verb)
        for collection, kind in (("queues", "tier"), ("types", "type"))
        for verb in ("pause", "resume")
    },
}


def install(app: falcon.App, warren: Warren) -> None:
    """Add the dashboard's routes and its static files to `app`."""
    access = Access(warren.settings)
    for path, resource in (PAGES | ACTIONS).items():
        app.add_route(path, resource(warren, access))
    app.add_route("/ui/signin", signin.SignIn(access))
    app.add_route("/ui/signout", signin.SignOut(access))
    app.add_route("/ui/static/{name}", StaticFiles())


class StaticFiles:
    """The dashboard's stylesheet and script, for GET and HEAD only. Falcon's own static
    route answers every method with the file; as a resource, any other method gets the API's
    405 and its `Allow` header, as every other path does."""

    def __init__(self) -> None:
        self.files = falcon.routing.StaticRoute("/ui/static/", str(STATIC))

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self.files(req, resp)

    on_head = on_get
