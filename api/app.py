"""The HTTP API: `create_app()` is what gunicorn serves (`warren api`)."""

import logging
from typing import Any

import falcon
import falcon.inspect

from api import controls, errors, gunicorn_errors, requestids, ui
from api.auth import BearerTokens, Tokens
from api.deadletters import DeadLetters, Groups, Replay
from api.embeddings import Search
from api.health import Health
from api.jobs import Artifact, Attempts, Batch, Job, Jobs, Retry
from api.metrics import Metrics
from api.openapi import OpenApi
from api.requestids import RequestIds
from api.requests import StorableQuery
from api.schedules import Run, Schedule, Schedules
from api.stats import Stats
from service.client import Warren
from service.settings import Settings


class Router(falcon.routing.CompiledRouter):
    """Falcon's router, with HEAD answered wherever GET is (RFC 9110), as monitors probe
    `HEAD /health`: Falcon sends a HEAD response's headers, Content-Length included, and drops
    its body."""

    def map_http_methods(self, resource: object, **kwargs: Any) -> dict[str, Any]:
        methods = super().map_http_methods(resource, **kwargs)
        if "GET" in methods:
            methods.setdefault("HEAD", methods["GET"])
        return methods


# falcon.inspect (`falcon-inspect-app`, the OpenAPI test) reads it as the router it extends.
falcon.inspect.register_router(Router)(falcon.inspect.inspect_compiled_router)


def create_app(settings: Settings | None = None, warren: Warren | None = None) -> falcon.App:
    """Build the API on `warren` (or a client made from `settings`, or the environment)."""
    logging.getLogger("pika").setLevel(logging.WARNING)
    warren = warren or Warren(settings or Settings(), relayed=True)
    app = requestids.App(
        router=Router(),
        middleware=[
            RequestIds(),
            BearerTokens(Tokens.from_settings(warren.settings)),
            StorableQuery(),
        ],
    )
    app.req_options.keep_blank_qs_values = True
    app.req_options.strip_url_path_trailing_slash = True
    errors.install(app)
    gunicorn_errors.install()
    app.add_route("/jobs", Jobs(warren))
    app.add_route("/jobs/batch", Batch(warren))
    app.add_route("/jobs/{job_id:uuid}", Job(warren))
    app.add_route("/jobs/{job_id:uuid}/attempts", Attempts(warren))
    app.add_route("/jobs/{job_id:uuid}/retry", Retry(warren))
    app.add_route("/jobs/{job_id:uuid}/artifact", Artifact(warren))
    controls.install(app, warren)
    app.add_route("/dlq", DeadLetters(warren))
    app.add_route("/dlq/groups", Groups(warren))
    app.add_route("/dlq/replay", Replay(warren))
    app.add_route("/schedules", Schedules(warren))
    app.add_route("/schedules/{name}", Schedule(warren))
    app.add_route("/schedules/{name}/run", Run(warren))
    app.add_route("/embeddings/search", Search(warren))
    app.add_route("/stats", Stats(warren))
    app.add_route("/health", Health(warren))
    app.add_route("/openapi.json", OpenApi(warren.registry))
    app.add_route("/metrics", Metrics(warren))
    ui.install(app, warren)
    return app
