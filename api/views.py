"""The public JSON shapes of CONTRACT.md: camelCase fields, UTC times with a `Z`. The API
answers with them, and `warren ... --json` (cli/) prints the same. Only `service` is imported
here, so the command line loads no web framework to use them."""

from datetime import UTC, datetime
from typing import Any

from service import sealing
from service.controls import Bulk
from service.models import DeadLetter, Job, JobAttempt, Schedule


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_json(job: Job) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "type": job.type,
        "status": job.status,
        "priority": job.priority,
        "payload": sealing.redacted(job.payload),
        "result": job.result,
        "error": job.error,
        "attempts": job.attempts,
        "life": job.life,
        "maxAttempts": job.max_attempts,
        "timeoutSeconds": job.timeout_seconds,
        "retry": job.retry,
        "idempotencyKey": job.idempotency_key,
        "createdAt": timestamp(job.created_at),
        "updatedAt": timestamp(job.updated_at),
        "scheduledAt": timestamp(job.scheduled_at),
        "startedAt": timestamp(job.started_at),
        "completedAt": timestamp(job.completed_at),
        "nextAttemptAt": timestamp(job.next_attempt_at),
        "cancelRequestedAt": timestamp(job.cancel_requested_at),
        "progress": job.progress,
        "scheduleName": job.schedule_name,
        "scheduledFor": timestamp(job.scheduled_for),
    }


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    return {
        "name": schedule.name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "type": schedule.type,
        "payload": schedule.payload,
        **schedule.options,
        "enabled": schedule.enabled,
        "catchUp": schedule.catch_up,
        "declaredInCode": schedule.declared_in_code,
        "nextRunAt": timestamp(schedule.next_run_at),
        "lastRunAt": timestamp(schedule.last_run_at),
        "lastJobId": str(schedule.last_job_id) if schedule.last_job_id else None,
        "createdAt": timestamp(schedule.created_at),
        "updatedAt": timestamp(schedule.updated_at),
    }


def attempt_json(attempt: JobAttempt) -> dict[str, Any]:
    duration = None
    if attempt.finished_at is not None:
        duration = round((attempt.finished_at - attempt.started_at).total_seconds() * 1000)
    return {
        "number": attempt.number,
        "life": attempt.life,
        "status": attempt.status,
        "startedAt": timestamp(attempt.started_at),
        "finishedAt": timestamp(attempt.finished_at),
        "durationMs": duration,
        "worker": attempt.worker,
        "error": attempt.error,
        "traceback": attempt.traceback,
    }


def dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    message = letter.message or {}
    return {
        "id": letter.id,
        "jobId": str(letter.job_id) if letter.job_id else None,
        "type": letter.type,
        "queue": letter.queue,
        "error": letter.error,
        "fingerprint": letter.fingerprint,
        "deadAt": timestamp(letter.dead_at),
        "payload": sealing.redacted(message.get("kwargs")),
        "xDeath": letter.x_death,
    }


def dead_letter_group_json(group: dict[str, Any]) -> dict[str, Any]:
    return {
        "fingerprint": group["fingerprint"],
        "count": group["count"],
        "sampleError": group["sample"],
        "types": group["types"] or [],
        "firstDeadAt": timestamp(group["first"]),
        "lastDeadAt": timestamp(group["last"]),
    }


def bulk_json(outcome: Bulk) -> dict[str, Any]:
    """What `POST /jobs/cancel` and `/jobs/retry` answer (and `warren cancel --json` prints
    without its `success`)."""
    return {
        "success": True,
        "matched": outcome.matched,
        "changed": outcome.changed,
        "dryRun": outcome.dry_run,
    }
