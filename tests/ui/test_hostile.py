"""Hostile requests to the dashboard get a 4xx or a clean page, never a 5xx, and change
nothing. Over Falcon's test client: no browser sends these."""

import hashlib
import hmac
import html

import pytest
from falcon import testing

from api.app import create_app

PAGES = ["/ui", "/ui/jobs", "/ui/dlq", "/ui/schedules", "/ui/signin"]
QUERIES = [
    "status=%00",
    "status=%ff%fe",
    "type=a&type=b",
    "limit=-1",
    "limit=99999999999999999999",
    "priority=NaN",
    "createdAfter=10000-01-01T00:00:00Z",
    "cursor=eyJ4IjogMX0",
    "cursor=%22%3E%3Cscript%3E",
    "payload=noequals",
    "payload=%3D1",
    "payload.to=%00",
    "payload.a%00=1",
    "offset=1&cursor=abc",
    "notice=%3Cscript%3Ealert(1)%3C/script%3E",
    "colour=red",
]


@pytest.fixture
def client(warren) -> testing.TestClient:
    return testing.TestClient(create_app(warren=warren))


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("query", QUERIES)
def test_hostile_query_strings_get_a_4xx_or_a_clean_page(client, path, query):
    response = client.simulate_get(path, query_string=query)

    assert response.status_code < 500
    assert "<script>alert" not in response.text


def test_a_job_page_for_an_unknown_or_malformed_id_is_404(client):
    unknown = client.simulate_get("/ui/jobs/6f1c8f9e-3b1a-4c55-9a57-9d6f7f0a2b11")
    malformed = client.simulate_get("/ui/jobs/not-a-uuid")

    assert unknown.status_code == 404
    assert "not found" in unknown.text
    assert malformed.status_code == 404


def session(client) -> tuple[dict[str, str], str]:
    """The cookies and the CSRF token a browser holds after opening a page."""
    page = client.simulate_get("/ui")
    csrf = page.text.split('"X-CSRF-Token": "', 1)[1].split('"', 1)[0]
    return {name: cookie.value for name, cookie in page.cookies.items()}, csrf


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("fingerprint=x&fingerprint=y", "application/x-www-form-urlencoded", 400),
        ("fingerprint=%ff", "application/x-www-form-urlencoded", 400),
        ("fingerprint=%00", "application/x-www-form-urlencoded", 400),
        ("fingerprint=" + "x" * 9000, "application/x-www-form-urlencoded", 413),
        ('{"fingerprint": "x"}', "application/json", 415),
        ("&".join(f"f{n}=1" for n in range(40)), "application/x-www-form-urlencoded", 400),
        ("", "application/x-www-form-urlencoded", 400),
    ],
)
def test_hostile_forms_get_a_4xx(client, body, content_type, status):
    cookies, csrf = session(client)
    response = client.simulate_post(
        "/ui/dlq/replay",
        body=body,
        headers={"Content-Type": content_type, "X-CSRF-Token": csrf},
        cookies=cookies,
    )

    assert response.status_code == status, response.text


def test_a_post_from_another_session_is_refused(client, warren):
    job_id = warren.enqueue("test-noop", {}, delay_seconds=3600).id
    _, their_csrf = session(client)
    my_cookies, _ = session(client)

    response = client.simulate_post(
        f"/ui/jobs/{job_id}/cancel",
        body=f"csrf={their_csrf}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        cookies=my_cookies,
    )

    assert response.status_code == 403
    assert warren.get(job_id).status == "pending"


def test_the_older_link_of_an_offset_page_opens(client, warren):
    """`?offset=1&limit=2` is a page of `GET /jobs`; its "older" link goes on by cursor, and
    carrying the offset along would make it a 400."""
    for _ in range(5):
        warren.enqueue("test-noop", {}, delay_seconds=3600)
    first = client.simulate_get("/ui/jobs", query_string="offset=1&limit=2")
    older = first.text.split('rel="next" href="/ui/jobs?', 1)[1].split('"', 1)[0]

    second = client.simulate_get("/ui/jobs", query_string=html.unescape(older))

    assert (first.status_code, second.status_code) == (200, 200)
    assert "offset" not in older and second.text.count('href="/ui/jobs/') == 2


def test_with_no_secret_configured_nobody_can_compute_a_csrf_token(client, warren):
    """An attacker who plants a session cookie (from a sibling subdomain, say) knows the
    cookie; the key must still be unknown. It used to be a constant of the source code."""
    job_id = warren.enqueue("test-noop", {}, delay_seconds=3600).id
    planted = "A" * 43
    public_key = hashlib.sha256(b"warren-ui-csrf\0").digest()
    forged = hmac.new(public_key, planted.encode(), hashlib.sha256).hexdigest()

    response = client.simulate_post(
        f"/ui/jobs/{job_id}/cancel",
        body=f"csrf={forged}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        cookies={"warren_ui_session": planted},
    )

    assert response.status_code == 403
    assert warren.get(job_id).status == "pending"


def test_the_session_cookie_is_http_only_strict_and_secure_over_https(client):
    plain = client.simulate_get("/ui").cookies["warren_ui_session"]
    https = client.simulate_get("/ui", headers={"X-Forwarded-Proto": "https"})

    assert (plain.http_only, plain.same_site, plain.path) == (True, "Strict", "/ui")
    assert plain.secure is False
    assert https.cookies["warren_ui_session"].secure is True


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_static_file_answers_only_get_and_head(client, method):
    response = client.simulate_request(method, "/ui/static/warren.css")

    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, OPTIONS"
    assert response.json["error"]["code"] == "bad_request"


def test_static_files_are_served_and_paths_outside_them_are_404(client):
    served = client.simulate_get("/ui/static/warren.css")
    head = client.simulate_head("/ui/static/htmx.min.js")
    escaped = client.simulate_get("/ui/static/..%2F__init__.py")
    missing = client.simulate_get("/ui/static/nothing.js")

    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/css")
    assert head.status_code == 200
    assert escaped.status_code == 404
    assert missing.status_code == 404
