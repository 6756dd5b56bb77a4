"""Group commit: the claims, start marks and completions of a worker's threads, written
together.

A no-op job costs two transactions, its claim and its completion; at hundreds of jobs a second
those commits, not the jobs, are the work. Worker threads hand their claims and completions to
one writer thread and block until they are committed (a start mark and, through
`service.acks`, a success are handed in without a wait). The writer takes every request waiting
and writes them in one statement, so one transaction and one round trip, on a connection of
its own (see `attempts.work`). Under load a batch holds about as many
requests as there are worker threads; a lone request still costs one transaction, with no
added wait.

The writer is a thread of its own so that an interrupt raised in a worker thread (a cancelled
job, a lost lease) can never land in the middle of a batch that holds other threads' writes.
"""

import contextlib
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from service.batches import take_batch
from service.db import UNREACHABLE
from service.store import attempts
from service.store.attempts import Claim

log = logging.getLogger(__name__)

MAX_BATCH = 256


#: Called by the writer with a request's answer, or with the exception its batch raised.
Answer = Callable[[Any], object]


@dataclass(slots=True)
class _Request:
    job_id: uuid.UUID
    answer: Answer
    life: int = 0  # for a claim: the life the message asks to run
    start: bool = True  # for a claim: it starts at once (False: claimed at delivery)
    claim: Claim | None = None  # set for a start mark and a completion
    mark: bool = False  # with `claim`: a start mark, not a completion
    result: str | None = None  # the completion's result as JSON text


class Pump(Protocol):
    """What a thread that must not sit idle does while it waits for its claims (the
    consumer's: its connection's acks and deliveries)."""

    def wait(self) -> None:
        """Work until woken, or for a while."""

    def wake(self) -> None:
        """Make `wait` return; called from the writer's thread."""


def _ignore(answer: Any) -> None:
    """A start mark handed in without waiting: its job runs on either way, and a claim that
    lost its job finds out through the heartbeat's lease renewal."""


def _answer_nth(
    replies: queue.SimpleQueue, total: int, pump: Pump | None, n: int, answer: Any
) -> None:
    replies.put((n, answer))
    if pump is not None and replies.qsize() == total:
        pump.wake()


class GroupCommit:
    """Claims and completions of many threads in shared transactions.

    `claim()` and `complete()` block until their write is committed and answer as
    `attempts.work` would; a database error reaches every caller of the
    failed batch, as if each had run its own transaction. A blocked thread waits on a reply
    queue of its own, kept for its life: no lock or future is made per request."""

    def __init__(self, engine: Engine, worker: str, lease: float) -> None:
        self.engine = engine
        self.worker = worker
        self.lease = lease
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._connection: sa.Connection | None = None
        self._local = threading.local()

    def claim(self, job_id: uuid.UUID, life: int) -> Claim | None:
        """Take a due pending job in this life for this worker and start it; None if it was
        not claimable."""
        return self._wait(lambda answer: _Request(job_id, answer, life))

    def start(self, claim: Claim) -> bool:
        """Mark a job claimed at delivery as started, once a thread takes it: from this commit
        on its attempt is spent. False if the claim no longer holds the job."""
        return self._wait(lambda answer: _Request(claim.job_id, answer, claim=claim, mark=True))

    def start_later(self, claim: Claim) -> None:
        """Hand in a start mark without waiting: it rides in the next batch, with the other
        threads' completions, or is dropped when the job's own completion shares its batch
        (a completion marks the start too)."""
        self._submit(_Request(claim.job_id, _ignore, claim=claim, mark=True))

    def claim_many(
        self, wanted: Sequence[tuple[uuid.UUID, int]], pump: Pump | None = None
    ) -> list[Claim | None]:
        """Claim several jobs at once, as `claim` does each (`(job id, life)` pairs), to wait
        for a thread: each is marked started by `start` or `start_later`. Their requests go in
        together, so they usually share one batch. Answers in order; a job whose batch failed
        (PostgreSQL away) answers None, as one not claimable, so that the claims of another
        batch are never lost to its error. With a `pump`, the caller's thread works through it
        until every answer is in, instead of blocking."""
        replies: queue.SimpleQueue = queue.SimpleQueue()
        for n, (job_id, life) in enumerate(wanted):
            self._submit(
                _Request(
                    job_id, partial(_answer_nth, replies, len(wanted), pump, n), life, start=False
                )
            )
        if pump is not None:
            while replies.qsize() < len(wanted):
                pump.wait()
        answers: list[Claim | None] = [None] * len(wanted)
        failed: BaseException | None = None
        for _ in wanted:
            n, answer = replies.get()
            if isinstance(answer, BaseException):
                failed = answer
            else:
                answers[n] = answer
        if failed is not None:
            log.warning("claims of a burst failed (%s); their threads claim them", failed)
        return answers

    def complete(self, claim: Claim, result: str | None) -> bool:
        """Record an attempt's success; False if the attempt no longer held its job."""
        return self._wait(lambda answer: _Request(claim.job_id, answer, claim=claim, result=result))

    def complete_later(self, claim: Claim, result: str | None, answer: Answer) -> None:
        """Hand in an attempt's success without waiting: once the batch that holds it is
        committed, the writer's thread calls `answer` as `complete` would return (or with the
        exception it would raise)."""
        self._submit(_Request(claim.job_id, answer, claim=claim, result=result))

    def close(self) -> None:
        """Stop the writer once the requests already handed in are written (or after 30 s,
        when PostgreSQL does not answer: the leases of what was not written expire)."""
        with self._start_lock:
            if self._writer is not None:
                self._requests.put(None)
                self._writer.join(timeout=30)
                self._writer = None

    def _wait(self, request: Callable[[Answer], _Request]) -> Any:
        replies = getattr(self._local, "replies", None)
        if replies is None:
            replies = self._local.replies = queue.SimpleQueue()
        token = object()
        self._submit(request(lambda answer: replies.put((token, answer))))
        while True:
            # An answer to a wait that an interrupt cut short is left behind: skip it.
            answered, answer = replies.get()
            if answered is token:
                break
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _submit(self, request: _Request) -> None:
        self._ensure_writer()
        self._requests.put(request)

    def _ensure_writer(self) -> None:
        # Started on first use, in the process that uses it: Dramatiq builds the broker and
        # its middleware before it forks worker processes.
        if self._writer is None:
            with self._start_lock:
                if self._writer is None:
                    self._writer = threading.Thread(
                        target=self._run, name="warren-group-commit", daemon=True
                    )
                    self._writer.start()

    def _run(self) -> None:
        stop = False
        try:
            while not stop:
                batch, stop = take_batch(self._requests, MAX_BATCH)
                if batch:
                    self._write(batch)
        finally:
            self._release_connection()

    def _writer_connection(self) -> sa.Connection:
        """The writer's own connection, taken from the pool, and again after one was lost.

        It is in autocommit mode: a batch is one statement, so one transaction. It keeps the
        generic plans of its prepared statements, where every other connection plans each
        execution (see `db.make_engine`): its statements bound each plan to their batch's keys
        (`store.sql`), so no plan cached while the table was small can walk the table when it
        is large. Planning was about 40 % of PostgreSQL's time per job."""
        if self._connection is None:
            connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._connection = connection
            connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
            connection.exec_driver_sql("SET enable_seqscan = off")
        return self._connection

    def _release_connection(self) -> None:
        """Close the connection for good: its settings are not for the pool's other users."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                connection.invalidate()
            connection.close()

    def _discard_connection_if_lost(self, exc: sa.exc.DBAPIError) -> None:
        connection = self._connection
        if connection is None:
            return
        if isinstance(exc, UNREACHABLE) or exc.connection_invalidated or connection.invalidated:
            self._release_connection()

    def _write(self, batch: Sequence[_Request]) -> None:
        claims = [r for r in batch if r.claim is None]
        completions = [r for r in batch if r.claim is not None and not r.mark]
        # One statement cannot update a row twice: a completion marks its own start.
        done = {r.claim.attempt_id for r in completions}
        marks = [r for r in batch if r.mark and r.claim and r.claim.attempt_id not in done]
        try:
            worked = attempts.work(
                self._writer_connection(),
                [(r.job_id, r.life, r.start) for r in claims],
                [r.claim for r in marks],
                [(r.claim, r.result) for r in completions],
                self.worker,
                self.lease,
            )
        except sa.exc.DBAPIError as exc:
            self._discard_connection_if_lost(exc)
            if len(batch) > 1 and not isinstance(exc, UNREACHABLE):
                # One request's data was refused (say a result PostgreSQL cannot store): write
                # each on its own so the error reaches only the thread it belongs to.
                for request in batch:
                    self._write([request])
                return
            self._fail(batch, exc)
            return
        except BaseException as exc:
            self._fail(batch, exc)
            return
        for request in claims:
            # Two deliveries of one job in one batch: only the first runs it.
            request.answer(worked.claimed.pop(request.job_id, None))
        for request in marks:
            request.answer(request.claim.attempt_id in worked.started)
        for request in completions:
            request.answer(request.claim.attempt_id in worked.recorded)

    @staticmethod
    def _fail(batch: Sequence[_Request], exc: BaseException) -> None:
        for request in batch:
            request.answer(exc)
