"""Each page of the dashboard, as an operator uses it in Chromium: the overview refreshes by
itself, the jobs page filters and pages, a job's page shows its attempts and retries it, the
dead letters replay by group, the schedules pause and run."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.helpers import wait_for

FAST = {"strategy": "fixed", "baseSeconds": 0.1}


def enqueue(warren, type_="test-noop", payload=None, **options):
    return warren.enqueue(type_, payload or {}, **options).id


def test_the_overview_counts_jobs_and_refreshes_by_itself(app, warren, page: Page):
    for n in range(3):
        enqueue(warren, payload={"n": n}, delay_seconds=3600)
    page.goto(app.url("/ui"))

    expect(page.locator(".count.pending span")).to_have_text("3")
    expect(page.locator("svg rect.completed")).to_have_count(60)
    expect(page.locator("tr[data-queue$='.high.XQ']")).to_be_visible()
    expect(page.locator(".bytype")).to_contain_text("test-noop")

    enqueue(warren, payload={"n": 4}, delay_seconds=3600)  # no reload: htmx polls the counts
    expect(page.locator(".count.pending span")).to_have_text("4")


def test_the_chart_and_the_processes_show_what_ran_and_who_is_alive(
    app, warren, worker, scheduler, page: Page
):
    scheduler()  # its fold of the kept counts keeps the chart's minutes
    warren.submit([{"type": "test-noop", "payload": {"n": n}} for n in range(5)])
    wait_for(lambda: sum(m.completed for m in warren.per_minute()) == 5, what="5 jobs counted")
    slow = enqueue(warren, "test-record", {"seconds": 30})
    wait_for(lambda: warren.get(slow).status == "processing", what="a running job")
    page.goto(app.url("/ui"))

    expect(page.locator(".chart figcaption")).to_contain_text("completed 5")
    busy = page.locator("table.workers tr[data-kind=worker]", has_text=warren.get(slow).worker)
    expect(busy.locator("td.n")).to_have_text("1")
    expect(page.locator("table.workers tr[data-kind=scheduler]")).to_have_count(1)
    warren.cancel(slow)


def test_jobs_are_filtered_and_paged_by_cursor(app, warren, page: Page):
    for n in range(3):
        enqueue(warren, payload={"n": n})
    marked = enqueue(warren, "test-record", {"tag": "needle"}, delay_seconds=3600)
    page.goto(app.url("/ui/jobs"))
    expect(page.locator("table.jobs tbody tr")).to_have_count(4)

    page.select_option("select[name=type]", "test-record")
    page.click("text=Filter")
    expect(page.locator("table.jobs tbody tr")).to_have_count(1)
    expect(page.locator(f"tr[data-job='{marked}']")).to_be_visible()

    page.goto(app.url("/ui/jobs"))
    page.fill("input[name=payload]", "tag=needle")
    page.click("text=Filter")
    expect(page.locator("table.jobs tbody tr")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"payload=tag%3Dneedle"))

    page.goto(app.url("/ui/jobs?type=test-noop&limit=2"))
    first = page.locator("table.jobs tbody tr").all_inner_texts()
    assert len(first) == 2
    page.click("a[rel=next]")
    expect(page.locator("table.jobs tbody tr")).to_have_count(1)
    assert page.locator("table.jobs tbody tr").inner_text() not in first


def test_a_bad_filter_is_said_on_the_page(app, page: Page):
    response = page.goto(app.url("/ui/jobs?status=exploded"))

    assert response.status == 400
    expect(page.locator("p.error")).to_contain_text("status must be one of")
    expect(page.locator("form.filters")).to_be_visible()


def test_a_failed_job_shows_its_traceback_and_runs_again_on_retry(app, warren, worker, page: Page):
    job_id = enqueue(warren, "test-record", {"failRuns": 1}, max_attempts=1)
    wait_for(lambda: warren.get(job_id).status == "failed", what="the job to fail")
    page.goto(app.url("/ui/jobs?status=failed"))
    page.click(f"tr[data-job='{job_id}'] a")

    expect(page.locator("#job-status")).to_have_text("failed")
    expect(page.locator("pre.traceback").first).to_contain_text("RuntimeError")
    expect(page.locator(".error").first).to_contain_text("attempt 1 failed on purpose")
    page.click("button:text('Retry')")

    expect(page.locator(".notice")).to_contain_text("Retry queued")
    expect(page.locator("#job-status")).to_have_text("completed")  # polled, no reload
    expect(page.locator("details.attempt")).to_have_count(2)
    expect(page.locator("pre.json").first).to_contain_text('"attempt": 1')


def test_a_running_job_shows_its_progress_and_is_cancelled_from_its_page(
    app, warren, worker, page: Page
):
    job_id = enqueue(warren, "test-progress", {"steps": 10, "seconds": 60})
    page.goto(app.url(f"/ui/jobs/{job_id}"))

    expect(page.locator("#job-status")).to_have_text("processing")  # polled, no reload
    expect(page.locator("progress")).to_have_attribute("value", "3")
    expect(page.locator("#live")).to_contain_text("three done")
    page.click("button:text('Cancel')")

    expect(page.locator("#job-status")).to_have_text("cancelled")
    expect(page.locator("details.attempt .status").first).to_have_text("cancelled")


def test_a_pending_job_is_cancelled_from_its_page(app, warren, page: Page):
    job_id = enqueue(warren, delay_seconds=3600)
    page.goto(app.url(f"/ui/jobs/{job_id}"))
    page.click("button:text('Cancel')")

    expect(page.locator("#job-status")).to_have_text("cancelled")
    assert warren.get(job_id).status == "cancelled"
    expect(page.locator("button:text('Retry')")).to_be_visible()


def test_a_payload_s_secret_fields_stay_redacted_and_its_text_is_not_markup(
    app, warren, page: Page
):
    job_id = enqueue(warren, "test-record", {"tag": "<img src=x onerror=alert(1)>"})
    page.goto(app.url(f"/ui/jobs/{job_id}"))

    expect(page.locator("pre.json").first).to_contain_text("<img src=x onerror=alert(1)>")
    assert page.locator("main img").count() == 0


@pytest.fixture
def pipeline(worker, scheduler):
    """What a deployment runs: a worker, and the scheduler that drains dead letters."""
    scheduler()


def test_a_dead_letter_group_is_replayed_and_leaves(app, warren, pipeline, page: Page):
    dead = [
        enqueue(warren, "test-record", {"failRuns": 1, "tag": str(n)}, max_attempts=1)
        for n in range(2)
    ]
    wait_for(lambda: len(warren.dlq.list()) == 2, what="two dead letters")
    page.goto(app.url("/ui/dlq"))
    group = page.locator("table.dlq tbody tr[data-fingerprint]")
    expect(group).to_have_count(1)
    expect(group.locator("td.n")).to_have_text("2")

    group.locator("button:text('Replay')").click()

    expect(page.locator(".notice")).to_contain_text("replayed")
    expect(page.locator("table.dlq tbody tr[data-fingerprint]")).to_have_count(0)
    wait_for(lambda: all(warren.get(i).status == "completed" for i in dead), what="replays")


def test_a_dead_letter_group_is_purged(app, warren, pipeline, page: Page):
    job_id = enqueue(warren, "test-record", {"failRuns": 1}, max_attempts=1)
    wait_for(lambda: warren.dlq.list(), what="a dead letter")
    page.goto(app.url("/ui/dlq"))
    page.click("button:text('Purge')")

    expect(page.locator("table.dlq")).to_contain_text("The dead-letter queue is empty.")
    assert warren.get(job_id).status == "failed"


def test_a_schedule_is_paused_resumed_and_run_now(app, warren, page: Page):
    warren.schedules.create(
        {"name": "nightly", "cron": "0 3 * * *", "type": "test-noop", "payload": {"n": 7}}
    )
    page.goto(app.url("/ui/schedules"))
    row = page.locator("tr[data-schedule=nightly]")
    expect(row.locator(".status")).to_have_text("enabled")

    row.locator("button:text('Pause')").click()
    expect(page.locator("tr[data-schedule=nightly] .status")).to_have_text("paused")
    assert warren.schedules.get("nightly").enabled is False
    page.locator("tr[data-schedule=nightly] button:text('Resume')").click()
    expect(page.locator("tr[data-schedule=nightly] .status")).to_have_text("enabled")

    page.locator("tr[data-schedule=nightly] button:text('Run now')").click()
    expect(page.locator(".notice")).to_contain_text("enqueued from the schedule")
    expect(page.locator("pre.json").last).to_contain_text('"n": 7')
    [job] = warren.list({"schedule": "nightly"}).jobs
    assert page.url.endswith(f"/ui/jobs/{job.id}?notice=ran")
