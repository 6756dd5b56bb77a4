"""`/jobs`: enqueue (one or a batch), read, list, retry and cancel."""

import uuid

import falcon

from api.requests import query_params, read_json
from api.views import attempt_json, job_json
from service.client import Warren
from service.errors import ValidationFailed


class Jobs:
    def __init__(self, warren: Warren) -> None:
        self.warren = warren

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Enqueue one job: 201 with its id, or 200 with the first job's id when its
        idempotency key was seen before."""
        body = read_json(req, self.warren.settings.max_payload_bytes)
        [outcome] = self.warren.submit([body], batch=False)
        resp.status = falcon.HTTP_201 if outcome.created else falcon.HTTP_200
        resp.media = {
            "success": True,
            "jobId": str(outcome.id),
            "message": "Job enqueued successfully"
            if outcome.created
            else "Job already enqueued with this idempotencyKey",
        }

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = self.warren.list(query_params(req))
        resp.media = {
            "success": True,
            "count": len(page.jobs),
            "jobs": [job_json(job) for job in page.jobs],
            "nextCursor": page.next_cursor,
        }


class Batch:
    def __init__(self, warren: Warren) -> None:
        self.warren = warren

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Enqueue up to 1,000 jobs, all or nothing."""
        body = read_json(req, self.warren.settings.max_payload_bytes)
        items = body.get("jobs") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items or set(body) != {"jobs"}:
            raise ValidationFailed(
                'a batch is {"jobs": [...]} with 1 to 1000 enqueue requests',
                [{"field": "jobs", "message": "expected a non-empty list and no other field"}],
            )
        outcomes = self.warren.submit(items)
        resp.status = falcon.HTTP_201
        resp.media = {"success": True, "jobIds": [str(o.id) for o in outcomes]}


class Job:
    def __init__(self, warren: Warren) -> None:
        self.warren = warren

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: uuid.UUID) -> None:
        resp.media = {"success": True, "job": job_json(self.warren.get(job_id))}

    def on_patch(self, req: falcon.Request, resp: falcon.Response, job_id: uuid.UUID) -> None:
        """Reschedule a pending job: a new time and/or priority."""
        body = read_json(req, self.warren.settings.max_payload_bytes)
        resp.media = {"success": True, "job": job_json(self.warren.reschedule(job_id, body))}

    def on_delete(self, req: falcon.Request, resp: falcon.Response, job_id: uuid.UUID) -> None:
        """Cancel: a pending job never starts; a processing one is asked to stop."""
        self.warren.cancel(job_id)
        resp.media = {"success": True, "message": "Job cancelled"}


class Attempts:
    def __init__(self, warren: Warren) -> None:
        self.warren = warren

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: uuid.UUID) -> None:
        attempts = self.warren.attempts(job_id)
        resp.media = {"success": True, "attempts": [attempt_json(a) for a in attempts]}


class Artifact:
    def __init__(self, warren: Warren) -> None:
        self.warren = warren

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: uuid.UUID) -> None:
        """The file the job wrote, with its media type."""
        path, media_type = self.warren.artifact(job_id)
        resp.content_type = media_type
        resp.stream = path.open("rb")
        resp.content_length = path.stat().st_size
        resp.downloadable_as = path.name


class Retry:
    def __init__(self, warren: Warren) -> None:
        self.warren = warren

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: uuid.UUID) -> None:
        self.warren.retry(job_id)
        resp.status = falcon.HTTP_202
        resp.media = {"success": True, "message": "Job retry queued"}
