"""`GET /health`: 200 when PostgreSQL and RabbitMQ answer, 503 naming the check that failed."""

from datetime import UTC, datetime

import falcon

from api.views import timestamp
from service.client import Warren


class Health:
    def __init__(self, warren: Warren) -> None:
        self.warren = warren

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks = self.warren.health()
        healthy = all(value == "ok" for value in checks.values())
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        resp.media = {
            "status": "ok" if healthy else "degraded",
            "service": "queue",
            "timestamp": timestamp(datetime.now(UTC)),
            "checks": checks,
        }
