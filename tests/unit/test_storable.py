"""`service.storable`: what PostgreSQL cannot store is refused before it gets there, for every
caller of enqueue, not only HTTP (tests/api/test_hostile_input.py covers the API)."""

import pytest

from service import storable
from service.deadletters import DeadLetterQuery
from service.enqueue import parse
from service.errors import BadRequest, ValidationFailed
from service.queries import Filters


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"tag": "a\x00b"}, "jobs[2].payload.tag"),
        ({"deep": [{"x": "\ud800"}]}, "jobs[2].payload.deep[0].x"),
        ({"n": float("inf")}, "jobs[2].payload.n"),
        ({"k\x00": 1}, "jobs[2].payload"),
        ({"inner": {1: "one"}}, "jobs[2].payload.inner"),  # a Python caller's dict
    ],
)
def test_enqueue_refuses_what_postgres_cannot_store_naming_the_field(payload, field):
    with pytest.raises(ValidationFailed) as refused:
        parse({"type": "test-record", "payload": payload}, prefix="jobs[2]")
    assert [d["field"] for d in refused.value.details] == [field]


@pytest.mark.parametrize(
    ("number", "message"),
    [(float("nan"), "is not a number (NaN)"), (-float("inf"), "beyond the range of a double")],
)
def test_a_non_finite_number_is_refused_saying_which_kind(number, message):
    with pytest.raises(ValidationFailed) as refused:
        storable.check({"n": number})
    assert message in refused.value.details[0]["message"]


def test_nesting_past_the_limit_is_a_bad_request():
    value: object = 1
    for _ in range(storable.MAX_DEPTH + 1):
        value = [value]
    with pytest.raises(BadRequest):
        storable.check(value)


def test_ordinary_text_and_numbers_pass():
    storable.check({"text": "é 漢字 \U0001f600 \t\n", "n": 1e308, "big": 10**40, "deep": [[{}]]})


@pytest.mark.parametrize(
    "params", [{"type": "a\x00b"}, {"payload.tag": "\ud800"}, {"status\x00": "failed"}]
)
def test_job_filters_refuse_what_postgres_cannot_store_for_every_caller(params):
    with pytest.raises(BadRequest, match="query parameter"):
        Filters.parse(params)  # what the API, `warren.list()` and `warren jobs list` read


def test_dead_letter_filters_refuse_a_nul():
    with pytest.raises(BadRequest, match="'type'"):
        DeadLetterQuery.parse({"type": "a\x00b"})
