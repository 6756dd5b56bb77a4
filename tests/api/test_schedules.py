"""`/schedules` over HTTP: create, read, change, pause, fire now, delete; bad input is a 4xx
naming the field."""

import pytest

BODY = {
    "name": "nightly-report",
    "cron": "0 0 * * *",
    "timezone": "Europe/Berlin",
    "type": "test-noop",
    "payload": {"n": 1},
    "priority": "high",
}


def create(client, **fields):
    response = client.simulate_post("/schedules", json=BODY | fields)
    assert response.status_code == 201, response.json
    return response.json["schedule"]


def test_a_schedule_is_created_listed_and_read(client, warren):
    created = create(client)

    assert created["name"] == "nightly-report" and created["priority"] == 10
    assert created["enabled"] is True and created["catchUp"] == "latest"
    assert created["nextRunAt"].endswith(("T23:00:00.000Z", "T22:00:00.000Z"))  # Berlin midnight
    listed = client.simulate_get("/schedules").json["schedules"]
    assert [s["name"] for s in listed] == ["nightly-report"]
    one = client.simulate_get("/schedules/nightly-report").json["schedule"]
    assert one == created


def test_a_taken_name_is_a_409(client, warren):
    create(client)

    response = client.simulate_post("/schedules", json=BODY)

    assert response.status_code == 409 and response.json["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "@sometimes"}, "cron"),
        ({"cron": "* * * * * *"}, "cron"),  # seconds: cronsim would fire every second
        ({"cron": "0 0 * *"}, "cron"),
        ({"cron": "0 0 */30 2 5#5"}, "cron"),  # never fires: a 500 once (cronsim's StopIteration)
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "localtime"}, "timezone"),  # the server's zone, whatever it is
        ({"timezone": "posix/Europe/Berlin"}, "timezone"),
        ({"catchUp": "some"}, "catchUp"),
        ({"name": "no spaces please"}, "name"),
        ({"priority": 11}, "priority"),
        ({"payload": {"n": 1, "extra": True}}, "payload.extra"),
        ({"enabled": "yes"}, "enabled"),
    ],
)
def test_a_bad_schedule_is_a_422_naming_the_field(client, warren, fields, field):
    response = client.simulate_post("/schedules", json=BODY | fields)

    assert response.status_code == 422, response.json
    assert field in [d["field"] for d in response.json["error"]["details"]]
    assert client.simulate_get("/schedules").json["schedules"] == []


NOT_NULL = ["cron", "timezone", "type", "payload", "enabled", "catchUp"]


@pytest.mark.parametrize("field", NOT_NULL)
def test_a_null_schedule_field_is_a_422_on_create(client, warren, field):
    response = client.simulate_post("/schedules", json=BODY | {field: None})

    assert response.status_code == 422, response.json
    assert [d["field"] for d in response.json["error"]["details"]] == [field]
    assert client.simulate_get("/schedules").json["schedules"] == []


@pytest.mark.parametrize("field", NOT_NULL)
def test_a_null_schedule_field_is_a_422_on_change_and_changes_nothing(client, warren, field):
    created = create(client)

    response = client.simulate_patch("/schedules/nightly-report", json={field: None})

    assert response.status_code == 422, response.json
    assert [d["field"] for d in response.json["error"]["details"]] == [field]
    assert client.simulate_get("/schedules/nightly-report").json["schedule"] == created


def test_a_null_job_option_gives_it_back_to_the_job_type(client, warren):
    create(client)

    response = client.simulate_patch("/schedules/nightly-report", json={"priority": None})

    assert response.status_code == 200, response.json
    assert "priority" not in response.json["schedule"]
    job = client.simulate_post("/schedules/nightly-report/run").json["job"]
    assert job["priority"] == 5  # test-noop's own


def test_an_unknown_job_type_is_a_422_naming_the_type(client, warren):
    response = client.simulate_post("/schedules", json=BODY | {"type": "no-such-type"})

    assert response.status_code == 422
    assert [d["field"] for d in response.json["error"]["details"]] == ["type"]
    assert "known types" in response.json["error"]["message"]


def test_pause_change_and_delete(client, warren):
    create(client)

    paused = client.simulate_patch("/schedules/nightly-report", json={"enabled": False})
    assert paused.status_code == 200 and paused.json["schedule"]["enabled"] is False
    moved = client.simulate_patch(
        "/schedules/nightly-report", json={"cron": "@hourly", "timezone": "UTC"}
    )
    assert moved.json["schedule"]["cron"] == "@hourly"
    assert moved.json["schedule"]["nextRunAt"].endswith(":00:00.000Z")
    assert client.simulate_patch("/schedules/nightly-report", json={"cron": "x"}).status_code == 422
    never = client.simulate_patch("/schedules/nightly-report", json={"cron": "0 0 */30 2 5#5"})
    assert never.status_code == 422
    assert "never fires" in never.json["error"]["details"][0]["message"]

    assert client.simulate_delete("/schedules/nightly-report").status_code == 200
    assert client.simulate_get("/schedules/nightly-report").status_code == 404


def test_run_fires_now_and_jobs_list_by_schedule(client, warren):
    create(client)

    response = client.simulate_post("/schedules/nightly-report/run")

    assert response.status_code == 201, response.json
    job = response.json["job"]
    assert job["scheduleName"] == "nightly-report" and job["priority"] == 10
    listed = client.simulate_get("/jobs", params={"schedule": "nightly-report"}).json["jobs"]
    assert [j["id"] for j in listed] == [response.json["jobId"]]
    read = client.simulate_get("/schedules/nightly-report").json["schedule"]
    assert read["lastJobId"] == response.json["jobId"]


@pytest.mark.parametrize("name", ["missing", "a%00b", "..", "x" * 300])
def test_an_unknown_schedule_is_a_404(client, warren, name):
    assert client.simulate_get(f"/schedules/{name}").status_code == 404
    assert client.simulate_post(f"/schedules/{name}/run").status_code == 404
    assert client.simulate_delete(f"/schedules/{name}").status_code == 404
