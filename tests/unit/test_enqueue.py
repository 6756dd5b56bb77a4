"""Validating an enqueue request (no services needed)."""

import time
import uuid

import pytest
from pydantic import BaseModel

from service.enqueue import build_row, parse
from service.errors import UnknownJobType, ValidationFailed
from service.registry import JobType, Registry


def fields(body):
    with pytest.raises(ValidationFailed) as caught:
        parse(body)
    return [d["field"] for d in caught.value.details]


def test_only_type_and_payload_are_required():
    request = parse({"type": "x", "payload": {}})
    assert request.priority is None and request.max_attempts is None


def test_priority_names_map_to_numbers():
    assert [
        parse({"type": "x", "payload": {}, "priority": p}).priority
        for p in ("high", "normal", "low", 3)
    ] == [10, 5, 1, 3]


def test_priority_must_be_a_whole_number_or_a_name():
    assert fields({"type": "x", "payload": {}, "priority": "5"}) == ["priority"]
    assert fields({"type": "x", "payload": {}, "priority": 5.5}) == ["priority"]
    assert fields({"type": "x", "payload": {}, "priority": True}) == ["priority"]


def test_errors_name_each_bad_field_as_the_caller_spelled_it():
    body = {"type": "x", "payload": {}, "maxAttempts": 0, "timeoutSeconds": -1, "colour": 1}
    assert sorted(fields(body)) == ["colour", "maxAttempts", "timeoutSeconds"]


def test_retry_overrides_are_validated():
    assert fields({"type": "x", "payload": {}, "retry": {"strategy": "random"}}) == [
        "retry.strategy"
    ]
    assert fields({"type": "x", "payload": {}, "retry": {"baseSeconds": 10, "maxSeconds": 5}}) == [
        "retry"
    ]


def test_a_scheduled_time_needs_a_time_zone():
    assert fields({"type": "x", "payload": {}, "scheduledAt": "2030-01-01T00:00:00"}) == [
        "scheduledAt"
    ]


def test_an_unknown_type_names_its_field_and_the_known_types():
    registry = Registry()
    registry.add(JobType(name="greet", payload=BaseModel, handler=lambda payload: None))
    request = parse({"type": "nope", "payload": {}}, "jobs[2]")

    with pytest.raises(UnknownJobType) as caught:
        build_row(request, registry, "jobs[2]")

    message = "unknown job type 'nope'; known types: greet"
    assert caught.value.message == message
    assert caught.value.details == [{"field": "jobs[2].type", "message": message}]


class Greeting(BaseModel):
    pass


def new_ids(count: int) -> list[uuid.UUID]:
    """The ids of `count` jobs enqueued one after another."""
    registry = Registry()
    registry.add(JobType(name="greet", payload=Greeting, handler=lambda payload: None))
    request = parse({"type": "greet", "payload": {}})
    return [build_row(request, registry)["id"] for _ in range(count)]


def test_job_ids_are_uuid7_in_enqueue_order():
    """Ids begin with their time, so they sort as the jobs were enqueued and land at the right
    edge of the primary key's index."""
    ids = new_ids(50)

    assert {type(job_id) for job_id in ids} == {uuid.UUID}
    assert {job_id.version for job_id in ids} == {7}
    assert ids == sorted(ids) and len(set(ids)) == 50


def test_job_ids_made_in_a_burst_keep_the_time_they_were_made():
    """Many ids in one millisecond do not push their time ahead of the clock (a library that
    added a millisecond per id would be seconds ahead after a batch)."""
    ids = new_ids(3000)
    made_ms = time.time() * 1000

    assert ids == sorted(ids)
    assert abs((ids[-1].int >> 80) - made_ms) < 1000
