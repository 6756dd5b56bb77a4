"""A server's enqueues keep a connection per thread (`service.kept`): PostgreSQL closing that
connection costs at most the one enqueue that was using it, never the ones after."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from falcon import testing

from api.app import create_app
from service.client import Warren
from tests.helpers import wait_for

JOB = {"type": "test-record", "payload": {}}


@pytest.fixture
def api(settings, clean) -> Iterator[testing.TestClient]:
    server = Warren(settings, relayed=True)
    try:
        yield testing.TestClient(create_app(warren=server))
    finally:
        server.close()


def close_enqueue_connections(engine: sa.Engine) -> int:
    """What a PostgreSQL restart or an idle timeout does to the connections that enqueued;
    returns once their backends have exited."""
    with engine.connect() as conn:
        return conn.scalar(
            sa.text(
                "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND query LIKE '%INSERT INTO jobs%'"
            )
        )


def test_an_enqueue_on_a_connection_the_server_closed_meanwhile_does_not_fail(api, engine):
    assert api.simulate_post("/jobs", json=JOB).status_code == 201
    assert close_enqueue_connections(engine) == 1

    answer = api.simulate_post("/jobs", json=JOB)

    assert answer.status_code == 201
    assert api.simulate_get(f"/jobs/{answer.json['jobId']}").json["job"]["status"] == "pending"


def test_a_connection_closed_under_an_enqueue_fails_that_one_and_is_replaced(api, engine):
    with ThreadPoolExecutor(max_workers=1) as thread:  # one API thread: one kept connection
        assert thread.submit(api.simulate_post, "/jobs", json=JOB).result().status_code == 201
        with engine.connect() as locker:
            locker.execute(sa.text("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE"))  # inserts wait
            waiting = thread.submit(api.simulate_post, "/jobs", json=JOB)
            wait_for(lambda: insert_waits_for_a_lock(engine), timeout=10, what="the insert to wait")
            assert close_enqueue_connections(engine) == 1
            locker.rollback()

        first = waiting.result(timeout=10)
        second = thread.submit(api.simulate_post, "/jobs", json=JOB).result(timeout=10)

    assert first.status_code == 503
    assert first.json["error"]["code"] == "unavailable"
    assert second.status_code == 201


def insert_waits_for_a_lock(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO jobs%'"
                )
            )
        )


@contextmanager
def refusing_new_connections(engine: sa.Engine) -> Iterator[None]:
    """The database refuses new connections, as a restarting server does, until the end."""
    name = engine.url.database
    admin = sa.create_engine(engine.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            try:
                yield
            finally:
                conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
    finally:
        admin.dispose()


def test_a_connection_that_cannot_be_replaced_yet_costs_enqueues_only_until_it_can(api, engine):
    assert api.simulate_post("/jobs", json=JOB).status_code == 201
    with refusing_new_connections(engine):
        assert close_enqueue_connections(engine) == 1
        refused = api.simulate_post("/jobs", json=JOB)

    answer = api.simulate_post("/jobs", json=JOB)

    assert refused.status_code == 503
    assert answer.status_code == 201
