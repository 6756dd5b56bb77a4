"""Hostile input (issue #10): whatever a client sends, the answer is the contract's 4xx with a
stable code, never a 500. NUL characters and lone surrogates that PostgreSQL cannot store,
numbers JSON cannot carry, nesting that exhausts Python's stack, times that overflow, bodies
that are not objects, integers past PostgreSQL's range and forged cursors are all refused
before they reach the database; bodies must say they are JSON; values are parsed strictly."""

import base64
import json

import pytest

WEBHOOK = "http://127.0.0.1:9/hook"


def post_raw(client, path: str, raw: str, method: str = "POST", **headers):
    """Send `raw` as it is: the JSON a client wrote by hand, escapes and all."""
    headers = {"Content-Type": "application/json", **headers}
    return client.simulate_request(method, path, body=raw.encode(), headers=headers)


def webhook(fields: str) -> str:
    """A webhook-delivery enqueue with `fields` (raw JSON text) in its payload."""
    return '{"type": "webhook-delivery", "payload": {"url": "' + WEBHOOK + '", ' + fields + "}}"


def assert_refused(response, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json["error"]
    assert response.json["success"] is False
    assert error["code"] == code
    assert error["message"]
    if field is not None:
        assert field in [d["field"] for d in error["details"]], error


# -- strings PostgreSQL cannot store --------------------------------------------------------------

NUL_BODIES = [
    ('{"type": "test-record", "payload": {"tag": "a\\u0000b"}}', "payload.tag"),
    (webhook('"body": {"deep": ["x\\u0000"]}'), "payload.body.deep[0]"),
    (webhook('"body": {"k\\u0000": 1}'), "payload.body"),
    (webhook('"headers": {"X-A": "a\\u0000"}'), "payload.headers.X-A"),
    ('{"type": "test-noop", "payload": {}, "idempotencyKey": "k\\u0000"}', "idempotencyKey"),
    ('{"type": "test-record", "payload": {"tag": "\\ud800"}}', "payload.tag"),
    ('{"type": "test-record", "payload": {"tag": "\\udfff x"}}', "payload.tag"),
]


@pytest.mark.parametrize(("raw", "field"), NUL_BODIES)
def test_a_nul_or_a_lone_surrogate_in_a_body_is_422_naming_the_field(client, job_count, raw, field):
    assert_refused(post_raw(client, "/jobs", raw), 422, "validation_error", field)
    assert job_count() == 0


def test_a_nul_in_a_batch_item_names_the_item(client, job_count):
    raw = '{"jobs": [{"type": "test-noop", "payload": {}}, {"type": "x\\u0000", "payload": {}}]}'
    assert_refused(post_raw(client, "/jobs/batch", raw), 422, "validation_error", "jobs[1].type")
    assert job_count() == 0


@pytest.mark.parametrize(
    "raw", ['{"fingerprint": "a\\u0000"}', '{"jobIds": ["\\ud800"]}', '{"fingerprint": "\\udc00"}']
)
def test_a_nul_or_a_lone_surrogate_in_a_dlq_selection_is_refused(client, raw):
    assert post_raw(client, "/dlq/replay", raw).status_code in (400, 422)
    assert post_raw(client, "/dlq", raw, method="DELETE").status_code in (400, 422)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/jobs", "type=a%00b"),
        ("/jobs", "payload.x=a%00b"),
        ("/jobs", "payload.a%00=1"),
        ("/jobs", "type=%ED%A0%80"),
        ("/jobs", "cursor=%00"),
        ("/dlq", "type=a%00b"),
        ("/dlq", "queue=a%00b"),
        ("/dlq", "fingerprint=a%00b"),
    ],
)
def test_a_nul_or_a_bad_utf8_sequence_in_a_query_is_400(client, path, query):
    assert_refused(client.simulate_get(path, query_string=query), 400, "bad_request")


# -- numbers JSON cannot carry ----------------------------------------------------------------


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(client, job_count, number):
    raw = '{"type": "test-record", "payload": {"seconds": ' + number + "}}"
    assert_refused(post_raw(client, "/jobs", raw), 400, "bad_request")
    assert job_count() == 0


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"type": "test-record", "payload": {"seconds": 1e400}}', "payload.seconds"),
        ('{"type": "test-noop", "payload": {}, "delaySeconds": 1e400}', "delaySeconds"),
        (
            '{"type": "test-noop", "payload": {}, "retry": {"baseSeconds": -1e400}}',
            "retry.baseSeconds",
        ),
    ],
)
def test_a_number_beyond_a_double_is_422_naming_the_field(client, job_count, raw, field):
    assert_refused(post_raw(client, "/jobs", raw), 422, "validation_error", field)
    assert job_count() == 0


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400", "nan"])
def test_a_payload_filter_that_reads_as_a_non_finite_number_matches_text(client, value):
    client.simulate_post("/jobs", json={"type": "test-record", "payload": {"tag": value}})

    response = client.simulate_get("/jobs", params={"payload.tag": value})

    assert response.status_code == 200, response.text
    assert response.json["count"] == 1


# -- structure ---------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [65, 1000, 10_000])
def test_json_nested_too_deep_is_400(client, job_count, depth):
    raw = '{"type": "test-noop", "payload": {"n": ' + "[" * depth + "]" * depth + "}}"
    assert_refused(post_raw(client, "/jobs", raw), 400, "bad_request")
    assert job_count() == 0


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/jobs", '{"type": "test-noop", "payload": {}, "type": "test-record"}'),
        ("/jobs", '{"type": "test-record", "payload": {"tag": "a", "tag": "b"}}'),
        ("/jobs/cancel", '{"filter": {"type": "nope"}, "dryRun": true, "filter": {}}'),
        ("/jobs/retry", '{"filter": {"type": "nope"}, "dryRun": true, "dryRun": false}'),
    ],
)
def test_a_key_given_twice_in_a_json_object_is_400(client, warren, job_count, path, raw):
    kept = warren.enqueue("test-noop", {}).id  # a cancel that read the last key took it

    response = post_raw(client, path, raw)

    assert_refused(response, 400, "bad_request")
    assert "given more than once" in response.json["error"]["message"]
    assert job_count() == 1 and warren.get(kept).status == "pending"


def test_json_nested_a_little_is_fine(client):
    nested = {"a": {"b": [[{"c": [1, 2, {"d": None}]}]]}}
    body = {"type": "webhook-delivery", "payload": {"url": WEBHOOK, "body": nested}}
    assert client.simulate_post("/jobs", json=body).status_code == 201


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_scheduled_at_that_overflows_in_utc_is_422(client, job_count, moment):
    response = client.simulate_post(
        "/jobs", json={"type": "test-noop", "payload": {}, "scheduledAt": moment}
    )
    assert_refused(response, 422, "validation_error", "scheduledAt")
    assert job_count() == 0


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_created_filter_at_the_edge_of_time_is_answered(client, moment):
    for name in ("createdAfter", "createdBefore"):
        response = client.simulate_get("/jobs", params={name: moment})
        assert response.status_code in (200, 400), response.text


@pytest.mark.parametrize("raw", ["null", "true", "42", '"x"', "[1]", "[]", "{}"])
@pytest.mark.parametrize(("method", "path"), [("POST", "/dlq/replay"), ("DELETE", "/dlq")])
def test_a_dlq_selection_that_is_not_an_object_is_400(client, method, path, raw):
    assert_refused(post_raw(client, path, raw, method=method), 400, "bad_request")


@pytest.mark.parametrize("before", ["9223372036854775808", "99999999999999999999999", "0"])
def test_dlq_before_past_postgres_bigint_is_400(client, before):
    assert_refused(client.simulate_get("/dlq", params={"before": before}), 400, "bad_request")


def _cursor(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor(["2026-01-01T00:00:00+00:00", 5]),
        _cursor(["2026-01-01T00:00:00+00:00", None]),
        _cursor(["2026-01-01T00:00:00+00:00", ["x"]]),
        _cursor(["2026-01-01T00:00:00", "550e8400-e29b-41d4-a716-446655440000"]),
        _cursor([5, "550e8400-e29b-41d4-a716-446655440000"]),
        _cursor(["9999-12-31T23:59:59-14:00", "550e8400-e29b-41d4-a716-446655440000"]),
        _cursor({"a": 1, "b": 2}),
        _cursor("ab"),
        _cursor(["a", "b", "c"]),
        _cursor(None),
        base64.urlsafe_b64encode(b"[" * 5000).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "%%%",
        "é",
    ],
)
def test_a_malformed_or_forged_cursor_is_400(client, cursor):
    response = client.simulate_get("/jobs", params={"cursor": cursor})
    assert_refused(response, 400, "bad_request")


def test_a_cursor_the_api_returned_still_pages(client):
    for n in range(3):
        client.simulate_post("/jobs", json={"type": "test-noop", "payload": {"n": n}})
    first = client.simulate_get("/jobs", params={"limit": "2"}).json
    second = client.simulate_get("/jobs", params={"limit": "2", "cursor": first["nextCursor"]})
    assert [j["payload"]["n"] for j in first["jobs"] + second.json["jobs"]] == [2, 1, 0]


# -- JSON bodies say they are JSON --------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/jobs", {"type": "test-noop", "payload": {}}),
        ("POST", "/jobs/batch", {"jobs": [{"type": "test-noop", "payload": {}}]}),
        ("POST", "/dlq/replay", {"all": True}),
        ("DELETE", "/dlq", {"all": True}),
    ],
)
def test_a_body_that_is_not_declared_json_is_415(
    client, job_count, content_type, method, path, body
):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.simulate_request(method, path, body=json.dumps(body), headers=headers)
    assert_refused(response, 415, "unsupported_media_type")
    assert job_count() == 0


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_a_json_body_with_its_media_type_is_accepted(client, content_type):
    body = json.dumps({"type": "test-noop", "payload": {}})
    response = client.simulate_post("/jobs", body=body, headers={"Content-Type": content_type})
    assert response.status_code == 201, response.text


# -- strict parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"delaySeconds": "10"}, "delaySeconds"),
        ({"delaySeconds": True}, "delaySeconds"),
        ({"scheduledAt": 0}, "scheduledAt"),
        ({"scheduledAt": 1767225600}, "scheduledAt"),
        ({"scheduledAt": "1767225600"}, "scheduledAt"),
        ({"scheduledAt": True}, "scheduledAt"),
        ({"retry": {"baseSeconds": "5"}}, "retry.baseSeconds"),
        ({"retry": {"jitter": False}}, "retry.jitter"),
    ],
)
def test_options_of_the_wrong_json_type_are_422(client, job_count, options, field):
    response = client.simulate_post("/jobs", json={"type": "test-noop", "payload": {}, **options})
    assert_refused(response, 422, "validation_error", field)
    assert job_count() == 0


@pytest.mark.parametrize("options", [{"delaySeconds": 10}, {"delaySeconds": 0.5}])
def test_numbers_of_the_right_json_type_are_accepted(client, options):
    response = client.simulate_post("/jobs", json={"type": "test-noop", "payload": {}, **options})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("name", ["limit", "offset", "priority"])
@pytest.mark.parametrize("value", ["5_0", "+5", "\u0665", " 5", "5 ", "0x5", "5.0", "-0"])
def test_list_integers_are_ascii_digits_only(client, name, value):
    response = client.simulate_get("/jobs", params={name: value})
    assert_refused(response, 400, "bad_request")


@pytest.mark.parametrize("name", ["limit", "before"])
@pytest.mark.parametrize("value", ["5_0", "+5", "\u0665"])
def test_dlq_integers_are_ascii_digits_only(client, name, value):
    assert_refused(client.simulate_get("/dlq", params={name: value}), 400, "bad_request")


@pytest.mark.parametrize("value", ["5_0", "+5", "\u0665", " 5", "5.0"])
def test_search_k_is_ascii_digits_only(client, value):
    params = {"namespace": "docs", "text": "hi", "k": value}  # `+5` reached the search

    response = client.simulate_get("/embeddings/search", params=params)

    assert_refused(response, 400, "bad_request")
    assert "k" in response.json["error"]["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Encoding": "gzip"},  # read as JSON, or as "not valid JSON" once compressed
        {"Content-Encoding": "br"},
        {"Transfer-Encoding": "gzip, chunked"},
    ],
)
def test_a_compressed_body_is_415(client, job_count, headers):
    body = json.dumps({"type": "test-noop", "payload": {}})
    headers = {"Content-Type": "application/json", **headers}

    response = client.simulate_post("/jobs", body=body, headers=headers)

    assert_refused(response, 415, "unsupported_media_type")
    assert job_count() == 0


@pytest.mark.parametrize("path", ["/health", "/jobs", "/stats", "/openapi.json", "/schedules"])
def test_head_answers_wherever_get_does_without_a_body(client, path):
    got = client.simulate_get(path)

    head = client.simulate_head(path)  # a monitor's HEAD /health was a 405

    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    refused = client.simulate_request("PUT", path)
    assert refused.status_code == 405 and "HEAD" in refused.headers["Allow"]
