"""HTTP fixtures: the real Falcon app on the test run's database and broker."""

import pytest
import sqlalchemy as sa
from falcon import testing

from api.app import create_app


@pytest.fixture
def client(warren) -> testing.TestClient:
    return testing.TestClient(create_app(warren=warren))


@pytest.fixture
def job_count(engine: sa.Engine):
    def count() -> int:
        with engine.connect() as conn:
            return conn.scalar(sa.text("SELECT count(*) FROM jobs"))

    return count
