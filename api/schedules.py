"""`/schedules`: cron schedules, created, read, changed, deleted and fired now over HTTP."""

import falcon

from api.requests import read_json
from api.views import job_json, schedule_json
from service.client import Warren


class Schedules:
    def __init__(self, warren: Warren) -> None:
        self.warren = warren

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req, self.warren.settings.max_payload_bytes)
        schedule = self.warren.schedules.create(body)
        resp.status = falcon.HTTP_201
        resp.media = {"success": True, "schedule": schedule_json(schedule)}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        every = self.warren.schedules.list()
        resp.media = {"success": True, "schedules": [schedule_json(s) for s in every]}


class Schedule:
    def __init__(self, warren: Warren) -> None:
        self.warren = warren

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        resp.media = {"success": True, "schedule": schedule_json(self.warren.schedules.get(name))}

    def on_patch(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        body = read_json(req, self.warren.settings.max_payload_bytes)
        schedule = self.warren.schedules.update(name, body)
        resp.media = {"success": True, "schedule": schedule_json(schedule)}

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self.warren.schedules.delete(name)
        resp.media = {"success": True, "message": "Schedule deleted"}


class Run:
    def __init__(self, warren: Warren) -> None:
        self.warren = warren

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        job = self.warren.schedules.run(name)
        resp.status = falcon.HTTP_201
        resp.media = {"success": True, "jobId": str(job.id), "job": job_json(job)}
