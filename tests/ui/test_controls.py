"""Operator controls on the dashboard: pausing a tier or a job type from the overview, and
cancelling or retrying every job of the jobs page's filter after a dry-run count."""

import sqlalchemy as sa
from playwright.sync_api import Page, expect

from service.enqueue import build_row, parse
from service.store import jobs
from tests.helpers import wait_for


def test_a_paused_job_type_starts_nothing_until_resumed(app, warren, worker, scheduler, page: Page):
    scheduler()  # publishes the jobs a pause held, once it ends
    page.goto(app.url("/ui"))
    row = page.locator("tr[data-type=test-noop]")
    row.locator("button:text('Pause')").click()
    expect(page.locator(".notice")).to_contain_text("Paused")
    expect(page.locator("tr[data-type=test-noop] .status.paused")).to_be_visible()

    held = warren.enqueue("test-noop", {"n": 1}).id
    other = warren.enqueue("test-record", {}).id
    wait_for(lambda: warren.get(other).status == "completed", what="an unpaused type to run")
    assert warren.get(held).status == "pending"

    page.locator("tr[data-type=test-noop] button:text('Resume')").click()
    expect(page.locator(".notice")).to_contain_text("Resumed")
    expect(page.locator("tr[data-type=test-noop] .status.paused")).to_have_count(0)
    wait_for(lambda: warren.get(held).status == "completed", timeout=30, what="the held job")


def test_a_tier_is_paused_and_resumed_from_the_overview(app, warren, page: Page):
    page.goto(app.url("/ui"))
    page.locator("th[data-tier=high] button:text('Pause')").click()

    expect(page.locator("th[data-tier=high] .status.paused")).to_be_visible()
    assert "high" in warren.paused().tiers
    page.locator("th[data-tier=high] button:text('Resume')").click()
    expect(page.locator("th[data-tier=high] .status.paused")).to_have_count(0)
    assert "high" not in warren.paused().tiers


def test_a_paused_type_a_deploy_removed_is_shown_and_resumed(app, warren, engine, page: Page):
    """A type paused, then dropped from the code: its pause still holds its jobs, so the
    overview shows it with a Resume button. A type known only from its old jobs has no Pause
    button, which could only answer 404."""
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO pauses (kind, name) VALUES ('type', 'retired-type')"))
        row = build_row(parse({"type": "test-noop", "payload": {}}), warren.registry)
        jobs.insert(conn, [{**row, "type": "gone-type"}])
    page.goto(app.url("/ui"))

    expect(page.locator("tr[data-type=retired-type] .status.paused")).to_be_visible()
    expect(page.locator("tr[data-type=gone-type]")).to_be_visible()
    expect(page.locator("tr[data-type=gone-type] button")).to_have_count(0)
    page.locator("tr[data-type=retired-type] button:text('Resume')").click()
    expect(page.locator(".notice")).to_contain_text("Resumed")
    assert "retired-type" not in warren.paused().types


def test_bulk_cancel_counts_first_then_cancels_the_filter_s_jobs(app, warren, page: Page):
    chosen = [warren.enqueue("test-noop", {"n": n}, delay_seconds=3600).id for n in range(3)]
    spared = warren.enqueue("test-record", {}, delay_seconds=3600).id
    page.goto(app.url("/ui/jobs?type=test-noop"))
    page.click("button:text('Cancel all matching…')")

    expect(page.locator("#bulk-count")).to_contain_text("3 jobs match; 3 of them would be")
    assert {warren.get(i).status for i in chosen} == {"pending"}  # a dry run changed nothing
    page.click("button:text('Cancel 3 jobs')")

    expect(page.locator(".notice")).to_have_text("Cancelled 3 jobs.")
    expect(page.locator("span.status.cancelled")).to_have_count(3)
    assert {warren.get(i).status for i in chosen} == {"cancelled"}
    assert warren.get(spared).status == "pending"


def test_bulk_retry_runs_the_filter_s_failed_jobs_again(app, warren, worker, page: Page):
    failed = [
        warren.enqueue("test-record", {"failRuns": 1, "tag": str(n)}, max_attempts=1).id
        for n in range(2)
    ]
    wait_for(lambda: all(warren.get(i).status == "failed" for i in failed), what="2 failures")
    page.goto(app.url("/ui/jobs?status=failed"))
    page.click("button:text('Retry all matching…')")
    expect(page.locator("#bulk-count")).to_contain_text("2 jobs match; 2 of them")
    page.click("button:text('Retry 2 jobs')")

    expect(page.locator(".notice")).to_have_text("Queued 2 jobs to run again.")
    wait_for(lambda: all(warren.get(i).status == "completed" for i in failed), what="reruns")
