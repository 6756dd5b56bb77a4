"""`GET /metrics`: Warren's metrics in Prometheus's text format.

What every process counted (`service.metrics`) — summed over the API's and the workers'
processes in prometheus-client's multiprocess mode when `PROMETHEUS_MULTIPROC_DIR` is set, as
`warren api`, `worker` and `run` set it — and the gauges read at scrape time
(`service.gauges`). Needs a `read` token when tokens are set, as every other GET route.
"""

import os

import falcon
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from service.client import Warren
from service.gauges import JobGauges
from service.metrics import MULTIPROC_ENV


class Metrics:
    def __init__(self, warren: Warren) -> None:
        self.gauges = JobGauges(warren.engine, warren.broker_view)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(self._registry())

    def _registry(self) -> CollectorRegistry:
        """A registry of this scrape: every process's files in multiprocess mode (a fresh
        registry each time, as prometheus-client's multiprocess docs ask), else this
        process's own metrics."""
        registry = CollectorRegistry()
        if os.environ.get(MULTIPROC_ENV):
            MultiProcessCollector(registry)
        else:
            registry.register(_Process())
        registry.register(self.gauges)
        return registry


class _Process:
    """This process's own metrics (the default registry), when no multiprocess directory
    is set: a test client, or an app served some other way."""

    def collect(self):
        return REGISTRY.collect()
