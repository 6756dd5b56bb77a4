"""Retry policies: the documented delay sequences (no services needed)."""

import random

import pytest
from pydantic import ValidationError

from service.retries import RetryPolicy


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("exponential", [2, 4, 8, 16, 32, 60, 60]),
        ("linear", [2, 4, 6, 8, 10, 12, 14]),
        ("fixed", [2, 2, 2, 2, 2, 2, 2]),
    ],
)
def test_each_strategy_produces_its_sequence_capped_at_max(strategy, expected):
    policy = RetryPolicy(strategy=strategy, base_seconds=2, max_seconds=60, jitter=0)
    assert [policy.delay(n) for n in range(1, 8)] == expected


def test_jitter_spreads_delays_within_its_fraction():
    policy = RetryPolicy(strategy="fixed", base_seconds=10, max_seconds=10, jitter=0.2)
    rng = random.Random(7)
    delays = [policy.delay(1, rng) for _ in range(500)]
    assert min(delays) >= 8 and max(delays) <= 12
    assert len({round(d, 3) for d in delays}) > 100


def test_huge_attempt_numbers_stay_capped():
    policy = RetryPolicy(base_seconds=1, max_seconds=3600, jitter=0)
    assert policy.delay(500) == 3600


def test_a_job_override_replaces_only_the_fields_it_sets():
    default = RetryPolicy(strategy="exponential", base_seconds=5, max_seconds=3600, jitter=0)
    merged = default.merged({"strategy": "linear"})
    assert (merged.strategy, merged.base_seconds, merged.max_seconds) == ("linear", 5, 3600)


def test_a_base_above_the_inherited_cap_raises_the_cap():
    default = RetryPolicy(base_seconds=1, max_seconds=2, jitter=0)
    assert default.merged({"strategy": "fixed", "baseSeconds": 30}).delay(1) == 30


def test_a_max_below_the_base_is_refused():
    with pytest.raises(ValidationError):
        RetryPolicy(base_seconds=10, max_seconds=5)
