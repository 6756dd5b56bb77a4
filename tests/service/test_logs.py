"""Log lines a job causes carry its job_id, type, attempt and worker, on a real in-process
worker; lines of other threads and of other jobs do not get them."""

import contextlib
import io
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pika
import pytest
import sqlalchemy as sa

from service import logs
from service.broker import Dispatch, Publisher, build_broker, queue_name
from service.client import Warren
from service.store import attempts
from tests.helpers import ready_messages, wait_for


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the root logger writes in Warren's JSON format, as `logs.configure` sets it up."""
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logs.formatter("json"))
    handler.addFilter(logs.ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield sink
    root.removeHandler(handler)


def parsed(sink: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in sink.getvalue().splitlines() if line]


def test_the_lines_a_failing_job_causes_carry_its_context(warren: Warren, worker, json_lines):
    job = warren.enqueue("test-record", {"failTimes": 1})
    wait_for(lambda: warren.get(job.id).status == "completed", timeout=30)

    about_job = [line for line in parsed(json_lines) if line.get("job_id") == str(job.id)]
    # Dramatiq logs the failed attempt from the worker thread, while the job runs.
    [failure] = [line for line in about_job if "unhandled exception" in line["message"]]
    assert failure["type"] == "test-record"
    assert failure["attempt"] == 1
    assert failure["worker"].endswith(f":{os.getpid()}")  # host:pid, as the job's row says
    assert warren.get(job.id).worker == failure["worker"]
    assert failure["level"] in ("WARNING", "ERROR")
    assert "exc_info" in failure  # the traceback travels in the same JSON line


def test_a_line_about_a_job_from_another_thread_carries_its_fields_too(
    warren: Warren, worker, engine, json_lines
):
    job_id = warren.enqueue("test-record", {"seconds": 30}).id
    wait_for(lambda: warren.get(job_id).status == "processing")
    with engine.begin() as conn:  # taken over: the heartbeat says so, from its own thread
        conn.execute(
            sa.text("UPDATE jobs SET lease_until = now() - interval '1 minute' WHERE id = :id"),
            {"id": job_id},
        )
        [(_, attempt_id)] = attempts.expired_leases(conn, grace=0)
        attempts.release_expired(conn, job_id, attempt_id)

    def taken_over() -> list[dict]:
        return [line for line in parsed(json_lines) if "taken over" in line["message"]]

    [line] = wait_for(taken_over, timeout=10, what="the heartbeat's line")
    assert (line["job_id"], line["type"], line["attempt"]) == (str(job_id), "test-record", 1)
    assert line["worker"] == warren.attempts(job_id)[0].worker


def test_a_job_s_context_ends_with_it_and_stays_in_its_thread(json_lines):
    log = logging.getLogger("tests.logs")
    elsewhere = threading.Thread(target=lambda: log.warning("another thread"))

    logs.job_started("4f1c", "send-email", 2, "host:1")
    try:
        log.warning("inside")
        elsewhere.start()
        elsewhere.join()
    finally:
        logs.job_ended()
    log.warning("after")

    inside, other, after = parsed(json_lines)
    assert (inside["job_id"], inside["type"], inside["attempt"], inside["worker"]) == (
        "4f1c",
        "send-email",
        2,
        "host:1",
    )
    assert "job_id" not in other
    assert "job_id" not in after


def test_text_lines_append_the_context():
    record = logging.LogRecord("warren", logging.INFO, __file__, 1, "ran %s", ("it",), None)
    logs.request_started("abc123")
    try:
        logs.ContextFilter().filter(record)
    finally:
        logs.request_ended()

    line = logs.formatter("text").format(record)

    assert line.endswith("INFO warren: ran it [request_id=abc123]")


def test_the_format_is_text_on_a_terminal_and_json_otherwise():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.resolve(None, Terminal()) == "text"
    assert logs.resolve(None, io.StringIO()) == "json"
    assert logs.resolve("text", io.StringIO()) == "text"


def close_from_rabbitmq(connection: pika.BlockingConnection) -> None:
    """Have RabbitMQ close `connection`, as it closes one idle past its heartbeat."""
    port = connection._impl._transport._sock.getsockname()[1]
    name = f"127.0.0.1:{port} -> 127.0.0.1:5672"
    url = f"http://127.0.0.1:15672/api/connections/{quote(name, safe='')}"
    # The management API lists a connection a few seconds after it opened.
    wait_for(
        lambda: httpx.delete(url, auth=("guest", "guest")).status_code == 204,
        timeout=30,
        what=f"RabbitMQ closing {name}",
    )
    wait_for(lambda: not connection.is_open or _polled(connection), what="the close")


def _polled(connection: pika.BlockingConnection) -> bool:
    with contextlib.suppress(pika.exceptions.AMQPError):
        connection.process_data_events(0)
    return not connection.is_open


def test_a_connection_rabbitmq_closed_is_replaced_without_an_error_line(warren, json_lines):
    publisher = Publisher(build_broker(warren.settings), warren.settings)
    queue = queue_name(warren.settings, "normal")
    jobs = [Dispatch(uuid.uuid4(), "echo", {}, 5, 60) for _ in range(4)]
    try:
        publisher.publish(jobs[0])
        assert publisher.publish_many(jobs[1:2]) == jobs[1:2]

        close_from_rabbitmq(publisher.broker.connection)
        close_from_rabbitmq(publisher._local.connection)
        publisher.publish(jobs[2])
        assert publisher.publish_many(jobs[3:]) == jobs[3:]

        wait_for(lambda: ready_messages(warren.settings, queue) == 4, what="four messages")
        errors = [line for line in parsed(json_lines) if line["level"] in ("ERROR", "CRITICAL")]
        assert errors == []
    finally:
        publisher.close()
