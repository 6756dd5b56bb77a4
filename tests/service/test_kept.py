"""A server's enqueues keep a connection per thread (`service.kept`): PostgreSQL closing that
connection costs at most the one enqueue that was using it, never the ones after."""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from falcon import testing

from api.app import create_app
from service import kept
from service.client import Warren

JOB = {"type": "test-record", "payload": {}}


@pytest.fixture
def api(settings, clean) -> Iterator[testing.TestClient]:
    server = Warren(settings, relayed=True)
    try:
        yield testing.TestClient(create_app(warren=server))
    finally:
        server.close()


def close_enqueue_connections(engine: sa.Engine) -> int:
    """What a PostgreSQL restart or an idle timeout does to the connections that enqueued."""
    with engine.connect() as conn:
        return conn.scalar(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND query LIKE '%INSERT INTO jobs%'"
            )
        )


def test_an_enqueue_after_a_pause_does_not_fail_on_a_connection_closed_meanwhile(
    api, engine, monkeypatch
):
    assert api.simulate_post("/jobs", json=JOB).status_code == 201
    assert close_enqueue_connections(engine) == 1
    monkeypatch.setattr(kept, "IDLE_CHECK_SECONDS", 0.0)  # as if a second had passed

    answer = api.simulate_post("/jobs", json=JOB)

    assert answer.status_code == 201
    assert api.simulate_get(f"/jobs/{answer.json['jobId']}").json["job"]["status"] == "pending"


def test_a_connection_closed_under_busy_enqueues_fails_one_of_them_and_is_replaced(api, engine):
    assert api.simulate_post("/jobs", json=JOB).status_code == 201
    assert close_enqueue_connections(engine) == 1

    first = api.simulate_post("/jobs", json=JOB)
    second = api.simulate_post("/jobs", json=JOB)

    assert first.status_code == 503
    assert first.json["error"]["code"] == "unavailable"
    assert second.status_code == 201


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


def test_a_connection_that_cannot_be_replaced_yet_costs_enqueues_only_until_it_can(
    api, engine, monkeypatch
):
    assert api.simulate_post("/jobs", json=JOB).status_code == 201
    monkeypatch.setattr(kept, "IDLE_CHECK_SECONDS", 0.0)
    with refusing_new_connections(engine):
        assert close_enqueue_connections(engine) == 1
        refused = api.simulate_post("/jobs", json=JOB)

    answer = api.simulate_post("/jobs", json=JOB)

    assert refused.status_code == 503
    assert answer.status_code == 201
