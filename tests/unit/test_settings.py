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
