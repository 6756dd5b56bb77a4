"""GET /stats: how many jobs are in each status, rates, per type, and the tier queues."""

from tests.helpers import wait_for


def test_stats_count_jobs_by_status_and_type(client, warren):
    for n in range(3):
        warren.enqueue("test-noop", {"n": n}, delay_seconds=3600)
    cancelled = warren.enqueue("test-noop", {}, delay_seconds=3600).id
    warren.cancel(cancelled)

    response = client.simulate_get("/stats")

    assert response.status_code == 200
    stats = response.json["stats"]
    assert stats["total"] == 4
    assert (stats["pending"], stats["cancelled"], stats["completed"]) == (3, 1, 0)
    assert stats["completionRate"] == "0.00%"
    assert stats["failureRate"] == "0.00%"
    assert stats["byType"]["test-noop"]["total"] == 4
    assert stats["byType"]["test-noop"]["pending"] == 3
    prefix = warren.settings.queue_prefix
    assert {f"{prefix}.high", f"{prefix}.normal", f"{prefix}.low"} <= set(stats["queues"])


def test_rates_are_percentages_of_all_jobs(client, warren, worker):
    ok = warren.enqueue("test-record", {}).id
    bad = warren.enqueue("test-record", {"failTimes": 1, "permanent": True}).id
    wait_for(lambda: warren.get(ok).status == "completed" and warren.get(bad).status == "failed")

    stats = client.simulate_get("/stats").json["stats"]

    assert stats["completionRate"] == "50.00%"
    assert stats["failureRate"] == "50.00%"
