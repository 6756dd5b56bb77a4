"""generate-report: what the jobs of a period did, per type, written as the job's artifact and
served by `GET /jobs/{id}/artifact`."""

import csv
import io
import json

import pytest
from falcon import testing

from api.app import create_app
from service import artifacts
from service.errors import ValidationFailed
from tests.helpers import wait_for


def finished(warren, job_id) -> bool:
    return warren.get(job_id).status in ("completed", "failed", "cancelled")


@pytest.fixture
def client(warren):
    return testing.TestClient(create_app(warren=warren))


@pytest.fixture
def history(warren, worker):
    """Two test-record jobs that completed and one that failed for good."""
    ids = [warren.enqueue("test-record", {}).id for _ in range(2)]
    ids.append(warren.enqueue("test-record", {"failTimes": 1, "permanent": True}).id)
    wait_for(lambda: all(finished(warren, i) for i in ids))
    return ids


def report(warren, payload) -> str:
    job_id = warren.enqueue("generate-report", payload).id
    wait_for(lambda: warren.get(job_id).status == "completed", what="the report")
    return str(job_id)


def test_a_csv_report_counts_each_type_and_is_served_as_the_artifact(warren, client, history):
    job_id = report(warren, {"format": "csv"})

    answer = client.simulate_get(f"/jobs/{job_id}/artifact")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    rows = {row["type"]: row for row in csv.DictReader(io.StringIO(answer.text))}
    record = rows["test-record"]
    assert (record["total"], record["completed"], record["failed"]) == ("3", "2", "1")
    assert record["failureRate"] == "0.3333"
    assert float(record["p50Seconds"]) >= 0 and float(record["p95Seconds"]) >= 0
    result = warren.get(job_id).result
    assert result["format"] == "csv" and answer.headers["content-disposition"].endswith(
        f'filename="{result["artifact"]}"'
    )
    assert result["artifact"].startswith(job_id) and result["artifact"].endswith(".csv")


def test_a_file_a_stale_attempt_writes_later_does_not_replace_the_report(warren, client, history):
    job_id = report(warren, {"format": "csv"})
    artifacts.write(warren.settings, job_id, "csv", b"a worker that lost its lease\n")

    answer = client.simulate_get(f"/jobs/{job_id}/artifact")

    assert answer.text.startswith("type,total,")


def test_a_json_report_of_a_period_before_the_jobs_is_empty(warren, client, history):
    job_id = report(warren, {"from": "2020-01-01T00:00:00Z", "to": "2020-01-08T00:00:00Z"})

    answer = client.simulate_get(f"/jobs/{job_id}/artifact")

    assert answer.headers["content-type"] == "application/json"
    assert json.loads(answer.text)["types"] == []


def test_a_job_without_a_file_is_a_404(warren, client, history):
    assert client.simulate_get(f"/jobs/{history[0]}/artifact").status_code == 404
    unknown = "5b0c7f3e-7d7e-4d0e-9a55-3f1c2b1f0a11"
    assert client.simulate_get(f"/jobs/{unknown}/artifact").status_code == 404


@pytest.mark.parametrize(
    "payload",
    [{"format": "pdf"}, {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
     {"from": "yesterday"}, {"path": "/etc/passwd"},
     {"to": "0001-01-02T00:00:00Z"},  # its default start would be before the year 1
     {"from": "9999-01-01T00:00:00Z"}],  # after its default end: now
)  # fmt: skip
def test_a_bad_report_request_is_refused(warren, payload):
    with pytest.raises(ValidationFailed):
        warren.enqueue("generate-report", payload)
