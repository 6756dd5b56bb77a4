"""The worker middleware that keeps each job's row true while Dramatiq runs it.

Before a message runs, its job is claimed by a conditional UPDATE; after it runs, the outcome is
written fenced by the attempt. A success is handed to the group commit without waiting, and
the message's ack waits for it instead (`service.acks`). Retries are decided here from
the durable row (attempts, `maxAttempts`, the job's retry policy), not from message headers:
a retry due within the delay horizon is a delayed message, a later one waits as a row for the
scheduler. A job that fails for good has its message nacked into the `.XQ` dead-letter queue.

What the worker holds (jobs claimed at delivery that wait for a thread, and running ones) is
kept in `service.holdings`, where a heartbeat thread per worker process (`service.heartbeat`)
finds them to renew their leases and to stop the ones cancelled or taken over.
"""

import contextlib
import json
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from dramatiq import Middleware
from dramatiq.middleware import SkipMessage
from dramatiq.middleware.time_limit import TimeLimitExceeded
from sqlalchemy.engine import Connection, Engine

from service import logs, metrics, storable
from service.acks import CLAIMED, Recorded, ack_after
from service.broker import Dispatch, Publisher, PublishErrors, life_of
from service.db import UNREACHABLE
from service.errors import (
    BadRequest,
    DatabaseUnavailable,
    JobCancelled,
    LeaseLost,
    PermanentError,
    RetryLater,
    ValidationFailed,
)
from service.groupcommit import GroupCommit, Pump
from service.heartbeat import Heartbeat
from service.holdings import Holdings
from service.models import JobStatus
from service.registry import Registry, RunningJob, set_current
from service.retries import RetryPolicy
from service.settings import Settings
from service.store import attempts, publishing
from service.store.attempts import Claim

log = logging.getLogger(__name__)
T = TypeVar("T")


def _never(message: Any) -> bool:
    return False


class Lifecycle(Middleware):
    """Claims, records and retries jobs around each Dramatiq message. Add it first."""

    def __init__(
        self,
        engine: Engine,
        publisher: Publisher,
        registry: Registry,
        settings: Settings,
        *,
        db_patience: float = 120.0,
        held: Callable[[Any], bool] | None = None,
    ) -> None:
        self.engine = engine
        self.held = held or _never
        self.publisher = publisher
        self.registry = registry
        self.settings = settings
        self.db_patience = db_patience
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        self.default_retry = RetryPolicy.from_settings(settings)
        self._local = threading.local()
        self.holdings = Holdings()
        self._heartbeat: Heartbeat | None = None
        self.group = GroupCommit(engine, self.worker_name, settings.lease_seconds)

    # -- worker boot and shutdown -------------------------------------------------------------

    def after_worker_boot(self, broker, worker) -> None:
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        self.group = GroupCommit(self.engine, self.worker_name, self.settings.lease_seconds)
        self._heartbeat = Heartbeat(self.holdings, self.engine, self.settings, self.worker_name)
        self._heartbeat.start()

    def after_worker_shutdown(self, broker, worker) -> None:
        """The worker threads have finished their jobs: only now may the heartbeat stop. A job
        still running after a stop was asked for (SIGTERM) keeps its lease renewed until it
        ends, so the scheduler never takes it over and runs it a second time. A job claimed at
        delivery that no thread started is given back first."""
        self._give_back([waiting.claim for waiting in self.holdings.waiting().values()])
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat.join(timeout=5)
        self.group.close()
        self.engine.dispose()

    # -- at delivery: claim a burst at once -----------------------------------------------------

    def claim_delivered(self, messages: Sequence[Any], pump: Pump | None = None) -> None:
        """Claim the jobs of a burst of deliveries in one batch, from the consumer's thread,
        before they wait for a worker thread (`service.acks`). One claim per burst where each
        thread claimed its own; a job whose claim fails here (not due, ended, another life,
        PostgreSQL away) is claimed by its thread as before. Delayed messages, those of an
        unknown type and those of paused tiers and types are left to their thread.

        A claimed job waits for a thread as `processing`: the heartbeat renews its lease, a
        cancel or a lost lease stops it before it starts, and a worker that stops gives it
        back unspent (`release_unstarted`)."""
        wanted = []
        for message in messages:
            delayed = message.options.get("eta") is not None
            if delayed or message.actor_name not in self.registry or self.held(message):
                continue  # a delayed message waits, and one no actor takes is dead-lettered
            try:
                wanted.append((message, uuid.UUID(message.message_id), life_of(message)))
            except ValueError:
                continue
        if not wanted:
            return
        claims = self.group.claim_many([(job_id, life) for _, job_id, life in wanted], pump)
        held = []
        for (message, _, _), claim in zip(wanted, claims, strict=True):
            if claim is not None:
                setattr(message, CLAIMED, claim)
                held.append(claim)
        self.holdings.hold(held)

    def release_unstarted(self, messages: Iterable[Any]) -> None:
        """Give back the jobs of these messages that were claimed at delivery and that no
        thread started: the worker stops, or its consumer lets them go. Their messages go
        back to RabbitMQ unacked."""
        claims = [getattr(message, CLAIMED, None) for message in messages]
        self._give_back(self.holdings.let_go(claim for claim in claims if claim is not None))

    def _give_back(self, claims: list[Claim]) -> None:
        if not claims:
            return
        try:
            with self.engine.begin() as conn:
                attempts.unclaim(conn, claims)
        except UNREACHABLE as exc:
            log.error(
                "%d jobs claimed but not started could not be given back (%s); their leases"
                " will expire and they will run again",
                len(claims),
                exc.__class__.__name__,
            )

    def _start_delivered(self, message, claim: Claim) -> None:
        """Start a job claimed at delivery, unless it was doomed while it waited. Its start
        mark goes to the group commit first (`_mark_started`): from its commit on, the
        attempt is spent even if the job kills its worker, while the other jobs the worker
        held are given back unspent (`attempts.release_expired`)."""
        doomed = self.holdings.doomed(claim.attempt_id)
        if doomed is None:
            doomed = self._mark_started(message, claim)
        self.holdings.unwait(claim.attempt_id)
        if doomed is None:
            self._start(claim)
            metrics.job_started(claim, message)
            return
        if doomed is JobCancelled:
            with contextlib.suppress(DatabaseUnavailable):
                cancel = partial(attempts.cancelled, claim=claim, started=False)
                if self._retrying(lambda: self._in_tx(cancel)):
                    metrics.job_cancelled(claim)
        raise SkipMessage(f"job {claim.job_id}: {doomed.__name__} before it started")

    def _mark_started(self, message, claim: Claim) -> type[BaseException] | None:
        """Mark a claim made at delivery started; what dooms it if it cannot be marked.

        The mark rides in the group commit's next batch without a wait, so a job that kills
        its worker within the millisecond or two before that commit comes back unspent, once:
        a job a dead worker held unmarked before is marked and waited for, while the heartbeat
        keeps renewing its lease. A poison job thus kills at most one worker more than its
        attempts, and a worker's death never spends the attempts of the jobs it only held."""
        if not claim.unstarted_losses:
            self.group.start_later(claim)
            return None
        try:
            if self._retrying(lambda: self.group.start(claim)):
                return None
        except DatabaseUnavailable:
            # Its claim's lease runs out before the message comes back; if the message is
            # lost too, the scheduler publishes the job again once it takes the claim back.
            with contextlib.suppress(*PublishErrors):
                self._redeliver(message, 5.0)
        return LeaseLost

    # -- before: claim ------------------------------------------------------------------------

    def before_process_message(self, broker, message) -> None:
        self._local.claim = None
        claimed = getattr(message, CLAIMED, None)
        if claimed is not None:  # claimed at delivery: its id was read there
            self._start_delivered(message, claimed)
            return
        try:
            job_id = uuid.UUID(message.message_id)
        except ValueError:
            log.error("message %s is not a Warren job; dead-lettering it", message.message_id)
            message.fail()
            raise SkipMessage("not a Warren job") from None

        life = life_of(message)
        try:
            outcome = self._retrying(lambda: self._claim(job_id, life))
        except DatabaseUnavailable:
            self._redeliver(message, 5.0)
            raise SkipMessage("database unavailable; message deferred") from None
        except Exception:
            # Dramatiq would log a middleware's failure and run the actor all the same: a job
            # must never run without its claim.
            log.exception(
                "job %s could not be claimed; its message is deferred",
                job_id,
                extra=logs.about(job_id, message.actor_name, worker=self.worker_name),
            )
            self._redeliver(message, 5.0)
            raise SkipMessage("claim failed; message deferred") from None

        if isinstance(outcome, Claim):
            self._start(outcome)
            metrics.job_started(outcome, message)
            return
        action, seconds = outcome
        if action == "defer":
            self._redeliver(message, seconds)
        elif action == "dead":
            message.fail()
        raise SkipMessage(f"job {job_id}: {action}")

    def _claim(self, job_id: uuid.UUID, life: int) -> Claim | tuple[str, float]:
        """Claim the job for this message, or say what to do with the message instead:
        skip it (the job ended, or moved on to a newer life than the message's), note that it
        came early, defer it while another worker's lease lives, or take the job over."""
        claim = self.group.claim(job_id, life)
        if claim is not None:
            return claim
        lease = self.settings.lease_seconds
        with self.engine.begin() as conn:
            state = attempts.state(conn, job_id)
            if state is None or state.status.is_final or state.life != life:
                return ("skip", 0.0)
            if state.status == JobStatus.PENDING:
                attempts.forget_publication(conn, job_id, life)
                return ("early", 0.0)
            if state.lease_left is not None and state.lease_left > 0:
                return ("defer", state.lease_left + 0.5)
            taken = attempts.release_expired(conn, job_id, state.attempt_id)
            status = taken.job.status if taken is not None else None
            if status == JobStatus.PENDING:
                claim = attempts.claim(conn, job_id, life, self.worker_name, lease)
                if claim is not None:
                    return claim
            return ("dead", 0.0) if status == JobStatus.FAILED else ("skip", 0.0)

    def _start(self, claim: Claim) -> None:
        running = RunningJob(
            id=str(claim.job_id),
            attempt=claim.number,
            max_attempts=claim.max_attempts,
            attempt_id=claim.attempt_id,
            settings=self.settings,
            type=claim.type,
        )
        self._local.claim = claim
        self._local.running = running
        self.holdings.run(claim.attempt_id, running)
        set_current(running)
        logs.job_started(claim.job_id, claim.type, claim.number, self.worker_name)

    # -- after: record ------------------------------------------------------------------------

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        claim: Claim | None = getattr(self._local, "claim", None)
        if claim is None:
            return
        running: RunningJob = self._local.running
        metrics.job_ran(claim)
        try:
            self._record(message, claim, running, exception)
        except (JobCancelled, LeaseLost) as interrupt:
            # The heartbeat's interrupt landed while the outcome was being written. It comes
            # at most once per attempt, and writes are fenced: recording again is safe.
            self._record(message, claim, running, type(interrupt)())
        finally:
            self._local.claim = None
            set_current(None)
            logs.job_ended()

    def _record(
        self, message, claim: Claim, running: RunningJob, exc: BaseException | None
    ) -> None:
        self.holdings.done(claim.attempt_id)
        try:
            if exc is None:
                exc = self._record_success(message, claim, running.result)
            if exc is not None:
                self._record_failure(message, claim, running, exc)
        except DatabaseUnavailable:
            log.error(
                "job %s: could not record its outcome; its lease will expire and it will run again",
                claim.job_id,
            )
        except Exception as failure:
            # An outcome Warren cannot record (a bug, or a value no check foresaw) must not
            # leave the job `processing` until its lease runs out and it runs again: it fails,
            # once, saying why.
            log.exception("job %s: its outcome could not be recorded", claim.job_id)
            unrecorded = PermanentError(
                f"Warren could not record this attempt's outcome: {_text_of(failure)}"
            )
            self._record_failure(message, claim, running, unrecorded)

    def after_skip_message(self, broker, message) -> None:
        self._local.claim = None

    def _record_success(self, message, claim: Claim, result: Any) -> BaseException | None:
        """Hand the success to the group commit and return without waiting: the message's ack
        waits for the commit instead (see `service.acks`), so this thread's next claim can
        share the completion's transaction."""
        try:
            encoded = None if result is None else json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as exc:
            return PermanentError(f"the handler's result is not JSON: {exc}")
        if encoded is not None and len(encoded) > self.settings.max_result_bytes:
            return PermanentError(
                f"the handler's result is {len(encoded):,} bytes of JSON, more than"
                f" WARREN_MAX_RESULT_BYTES ({self.settings.max_result_bytes:,}): keep it"
                " elsewhere (a file, a table) and return where"
            )
        try:
            storable.check(result, "result")
        except (ValidationFailed, BadRequest) as exc:
            where = "; ".join(f"{d['field']} {d['message']}" for d in exc.details) or str(exc)
            return PermanentError(f"the handler's result cannot be stored: {where}")
        recorded = Recorded()
        self.group.complete_later(
            claim, encoded, lambda outcome: self._recorded(outcome, claim, encoded, recorded)
        )
        ack_after(message, recorded)
        return None

    def _recorded(self, outcome: Any, claim: Claim, encoded: str | None, done: Recorded) -> None:
        """In the writer's thread, once the success's batch is committed or failed (`outcome`
        is then the error): release the ack, or, while PostgreSQL is unreachable, keep trying
        from a thread of its own."""
        if isinstance(outcome, UNREACHABLE):
            threading.Thread(
                target=self._record_patiently, args=(claim, encoded, done), daemon=True
            ).start()
            return
        if isinstance(outcome, BaseException):
            log.error(
                "job %s: its success was not recorded (%s)",
                claim.job_id,
                outcome,
                extra=self._about(claim),
            )
        elif outcome:
            metrics.job_completed(claim)
        done.done()

    def _record_patiently(self, claim: Claim, encoded: str | None, done: Recorded) -> None:
        try:
            if self._retrying(lambda: self.group.complete(claim, encoded)):
                metrics.job_completed(claim)
        except DatabaseUnavailable:
            log.error(
                "job %s: could not record its outcome; its lease will expire and it will run again",
                claim.job_id,
                extra=self._about(claim),
            )
        except Exception:
            log.exception(
                "job %s: its success was not recorded", claim.job_id, extra=self._about(claim)
            )
        finally:
            done.done()

    def _record_failure(
        self, message, claim: Claim, running: RunningJob, exc: BaseException
    ) -> None:
        if isinstance(exc, JobCancelled) or (running.is_cancelled() and _is_interrupt(exc)):
            if self._retrying(lambda: self._in_tx(lambda c: attempts.cancelled(c, claim))):
                metrics.job_cancelled(claim)
            return
        error = describe(exc, self._retryable(claim, exc))
        trace = storable.clean("".join(traceback.format_exception(exc)))
        if error["retryable"] and claim.number < claim.max_attempts:
            delay = self._policy(claim).delay(claim.number)
            if isinstance(exc, RetryLater):
                delay = max(delay, exc.seconds)
            retry_at = datetime.now(UTC) + timedelta(seconds=delay)
            status = self._retrying(
                lambda: self._in_tx(lambda c: attempts.fail(c, claim, error, trace, retry_at))
            )
            metrics.job_failed(claim, status, retryable=True)
            if status == JobStatus.PENDING and delay <= self.settings.delay_horizon_seconds:
                self._publish_retry(claim, message.kwargs, retry_at)
            return
        status = self._retrying(
            lambda: self._in_tx(lambda c: attempts.fail(c, claim, error, trace, None))
        )
        metrics.job_failed(claim, status, retryable=error["retryable"])
        if status == JobStatus.FAILED:
            message.fail()  # dead-lettered; a job that moved on leaves no dead letter

    def _publish_retry(self, claim: Claim, payload: dict[str, Any], retry_at: datetime) -> None:
        dispatch = Dispatch(
            claim.job_id,
            claim.type,
            payload,
            claim.priority,
            claim.timeout_seconds,
            retry_at,
            life=claim.life,
            attempts=claim.number,
        )
        try:
            self.publisher.publish(dispatch)
        except PublishErrors as exc:
            log.warning(
                "job %s: retry not published (%s); the scheduler will",
                claim.job_id,
                exc,
                extra=self._about(claim),
            )
            return
        # If this fails the scheduler publishes it again; a duplicate message is harmless.
        with contextlib.suppress(DatabaseUnavailable):
            self._retrying(lambda: self._in_tx(lambda c: publishing.mark_published(c, [dispatch])))

    def _retryable(self, claim: Claim, exc: BaseException) -> bool:
        if isinstance(exc, PermanentError):
            return False
        permanent = self.registry.get(claim.type).permanent if claim.type in self.registry else ()
        return not (permanent and isinstance(exc, permanent))

    def _policy(self, claim: Claim) -> RetryPolicy:
        policy = self.default_retry
        if claim.type in self.registry and self.registry.get(claim.type).retry is not None:
            policy = self.registry.get(claim.type).retry
        return policy.merged(claim.retry)

    # -- plumbing -----------------------------------------------------------------------------

    def _about(self, claim: Claim) -> dict[str, Any]:
        """The job fields of a line about `claim` logged outside its run (`logs.about`)."""
        return logs.about(claim.job_id, claim.type, claim.number, self.worker_name)

    def _in_tx(self, fn: Callable[[Connection], T]) -> T:
        with self.engine.begin() as conn:
            return fn(conn)

    def _retrying(self, fn: Callable[[], T]) -> T:
        """Run `fn`, retrying while PostgreSQL is unreachable, for up to `db_patience` seconds.
        A job's outcome is worth waiting for: giving up means running it again later."""
        deadline = time.monotonic() + self.db_patience
        pause = 0.2
        while True:
            try:
                return fn()
            except UNREACHABLE as exc:
                if time.monotonic() >= deadline:
                    raise DatabaseUnavailable(str(exc)) from exc
                log.warning("database unavailable (%s); retrying", exc.__class__.__name__)
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def _redeliver(self, message, seconds: float) -> None:
        try:
            self.publisher.redeliver(message, int(seconds * 1000))
        except PublishErrors as exc:
            log.error("message %s could not be deferred: %s", message.message_id, exc)
            raise


def describe(exc: BaseException, retryable: bool) -> dict[str, Any]:
    """The stored `error` of a failed attempt: `{type, message, retryable}`."""
    name = "TimeoutError" if isinstance(exc, TimeLimitExceeded) else type(exc).__name__
    message = _text_of(exc) or name
    if isinstance(exc, TimeLimitExceeded):
        message = "the attempt ran past its timeoutSeconds"
    return {"type": name, "message": storable.clean(message[:2000]), "retryable": retryable}


def _text_of(exc: BaseException) -> str:
    """`str(exc)`, or what `traceback` says of an exception whose `__str__` fails."""
    try:
        return str(exc)
    except Exception:
        return f"<exception str() failed: {type(exc).__name__}>"


def _is_interrupt(exc: BaseException) -> bool:
    return not isinstance(exc, Exception)
