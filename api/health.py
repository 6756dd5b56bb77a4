"""`GET /health`: 200 when PostgreSQL and RabbitMQ answer, 503 naming the check that failed;
and what is paused (`{"tiers": [...], "types": [...]}`, null when the database cannot say),
since a paused tier looks like a stalled one from outside."""

from datetime import UTC, datetime

import falcon
import sqlalchemy as sa

from api.views import timestamp
from service import controls
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
            "paused": self._paused() if checks.get("database") == "ok" else None,
        }

    def _paused(self) -> dict[str, list[str]] | None:
        """What is paused (`service.controls`); None when PostgreSQL cannot say."""
        try:
            return controls.paused_json(self.warren.paused())
        except sa.exc.SQLAlchemyError:
            return None
