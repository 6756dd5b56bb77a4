"""Settings a deployment could get wrong are refused when a process starts, naming the
variable; a NaN or an infinity never reaches a timer."""

import pytest
from pydantic import ValidationError

from service.settings import Settings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LEASE_SECONDS", "nan"),  # the heartbeat renewed in a busy loop
        ("LEASE_SECONDS", "0.001"),
        ("DISPATCH_INTERVAL_SECONDS", "1e308"),  # the scheduler's first wait overflowed
        ("DISPATCH_INTERVAL_SECONDS", "0"),
        ("DELAY_HORIZON_SECONDS", "-1"),
        ("STRANDED_AFTER_SECONDS", "inf"),
        ("REPUBLISH_AFTER_SECONDS", "0"),
        ("PRUNE_INTERVAL_SECONDS", "nan"),
        ("RETRY_BASE_SECONDS", "-5"),
        ("RETRY_MAX_SECONDS", "1e9"),
        ("RETRY_JITTER", "2"),
        ("MAX_PAYLOAD_BYTES", "-1"),
        ("API_PORT", "70000"),
        ("API_WORKERS", "0"),
        ("WORKER_THREADS", "100000"),
    ],
)
def test_a_setting_out_of_bounds_is_refused_naming_it(monkeypatch, name, value):
    monkeypatch.setenv(f"WARREN_{name}", value)

    with pytest.raises(ValidationError, match=name.lower()):
        Settings()


def test_the_defaults_are_within_bounds():
    Settings()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("garbage", "not a database URL"),
        ("mysql://root@127.0.0.1/warren", "PostgreSQL"),  # was a ModuleNotFoundError
        ("sqlite:///warren.db", "PostgreSQL"),  # was a TypeError
        ("postgresql+psycopg2://postgres@127.0.0.1/warren", "psycopg 3"),
    ],
)
def test_a_database_url_warren_cannot_use_is_refused_saying_why(monkeypatch, value, says):
    monkeypatch.setenv("WARREN_DATABASE_URL", value)

    with pytest.raises(ValidationError, match=says):
        Settings()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_plain_postgresql_url_is_driven_by_psycopg(monkeypatch, scheme):
    monkeypatch.setenv("WARREN_DATABASE_URL", f"{scheme}://app:p%40ss@db.internal:6432/jobs")

    assert Settings().database_url == "postgresql+psycopg://app:p%40ss@db.internal:6432/jobs"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("garbage", "not an amqp:// or amqps:// URL"),  # was an IndexError
        ("http://127.0.0.1:15672/", "not an amqp:// or amqps:// URL"),
        ("amqp://guest:guest@127.0.0.1:x/", "Port could not be cast"),
        ("amqp://guest:guest@127.0.0.1/?heartbeats=30", "Unknown URL parameter"),
    ],
)
def test_a_broker_url_pika_cannot_use_is_refused_saying_why(monkeypatch, value, says):
    monkeypatch.setenv("WARREN_BROKER_URL", value)

    with pytest.raises(ValidationError, match=says) as raised:
        Settings()
    assert "guest:guest" not in str(raised.value)  # a URL may hold a password: never quoted
