"""`GET /stats`: counts by status and type, rates, and the tier queues' depths."""

import falcon

from service.client import Warren


class Stats:
    def __init__(self, warren: Warren) -> None:
        self.warren = warren

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"success": True, "stats": self.warren.stats()}
