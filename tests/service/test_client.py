"""`service.client.Warren`, the Python API: what a script's call may rely on."""

from types import MappingProxyType

import pytest
import sqlalchemy as sa

from service.errors import BadRequest, NotFound, ValidationFailed


@pytest.mark.parametrize("payload", ["to=a@example.com", [["to", "a@example.com"]], None, 5])
def test_a_payload_that_is_not_a_mapping_is_a_validation_error_and_stores_nothing(
    warren, engine, payload
):
    with pytest.raises(ValidationFailed) as refused:
        warren.enqueue("test-noop", payload)

    assert [d["field"] for d in refused.value.details] == ["payload"]
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM jobs")) == 0


def test_any_mapping_is_a_payload(warren):
    outcome = warren.enqueue("test-record", MappingProxyType({"tag": "x"}))

    assert warren.get(outcome.id).payload["tag"] == "x"


def test_a_job_id_that_is_not_a_uuid_names_no_job_and_one_of_another_type_is_a_type_error(
    warren,
):
    with pytest.raises(NotFound):
        warren.get("abc")
    with pytest.raises(TypeError, match="a job id is a UUID or its text, not int"):
        warren.get(5)
    with pytest.raises(TypeError, match="not NoneType"):
        warren.retry(None)


def test_a_bulk_filter_of_another_type_is_a_type_error_and_changes_nothing(warren):
    job = warren.enqueue("test-record", {}, delay_seconds=600)

    for verb in (warren.cancel_where, warren.retry_where):
        with pytest.raises(TypeError, match=r"a filter is a mapping .* not NoneType"):
            verb(None)

    assert warren.get(job.id).status == "pending"


@pytest.mark.parametrize(
    ("item", "field", "says"),
    [
        (("before\x00after",), "payload.items[0][0]", "NUL"),  # reached PostgreSQL: DataError
        ({"k": b"\x00"}, "payload.items[0].k", "NUL"),  # bytes become text only when dumped
        ({"k": b"\xff"}, "payload", "can't decode"),  # a bare UnicodeDecodeError
        (object(), "payload", "Unable to serialize"),  # pydantic's error, naming no field
        (10**5000, "payload.items[0]", "more than 4,300 digits"),  # Python's own ValueError
    ],
    ids=["tuple", "bytes-nul", "bytes-not-utf8", "object", "huge-int"],
)
def test_a_python_value_that_becomes_unstorable_json_is_refused_naming_it(
    warren, engine, item, field, says
):
    with pytest.raises(ValidationFailed) as refused:
        warren.enqueue("batch-import", {"namespace": "ns", "items": [item]})

    [detail] = refused.value.details
    assert detail["field"] == field and says in detail["message"]
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM jobs")) == 0


@pytest.mark.parametrize(
    "arguments",
    [{"limit": -1}, {"limit": 2**70}, {"before": 2**63}, {"type": 5}, {"queue": 5}],
)
def test_a_dlq_listing_gets_the_checks_of_get_dlq(warren, arguments):
    with pytest.raises(BadRequest):  # each reached PostgreSQL, or failed in Python
        warren.dlq.list(**arguments)


@pytest.mark.parametrize("filters", [{1: "x"}, "status=failed", [("status", "failed")]])
def test_a_filter_that_is_not_a_mapping_of_names_is_a_type_error(warren, filters):
    for verb in (warren.list, warren.cancel_where):  # each an AttributeError
        with pytest.raises(TypeError):
            verb(filters)


def test_a_listing_s_filters_may_be_numbers_as_a_bulk_verb_s_may(warren):
    job = warren.enqueue("test-noop", {"n": 3})

    assert [j.id for j in warren.list({"payload.n": 3, "limit": 5}).jobs] == [job.id]


def test_a_session_that_is_not_one_is_a_type_error_and_stores_nothing(warren, engine):
    with pytest.raises(TypeError, match="not str"):  # an AttributeError
        warren.enqueue("test-noop", {}, session="the session")

    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM jobs")) == 0
