"""Signing in to the dashboard with a token, what each scope may press, and forms that did
not come from the dashboard."""

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.helpers import wait_for

TOKENS = ["ops:admin-secret:admin", "viewer:read-secret:read"]


@pytest.fixture
def guarded(serve):
    return serve(api_tokens=TOKENS)


def sign_in(page: Page, guarded, token: str) -> None:
    page.goto(guarded.url("/ui"))
    page.fill("input[name=token]", token)
    page.click("button:text('Sign in')")


def test_the_dashboard_asks_for_a_token_and_keeps_it_in_a_strict_cookie(
    guarded, warren, page: Page, context: BrowserContext
):
    warren.enqueue("test-noop", {}, delay_seconds=3600)
    page.goto(guarded.url("/ui/jobs"))
    expect(page).to_have_url(guarded.url("/ui/signin"))

    page.fill("input[name=token]", "not-a-token")
    page.click("button:text('Sign in')")
    expect(page.locator("p.error")).to_contain_text("not one this deployment knows")

    page.fill("input[name=token]", "admin-secret")
    page.click("button:text('Sign in')")
    expect(page.locator(".count.pending span")).to_have_text("1")
    expect(page.locator(".who")).to_have_text("ops · admin")
    [cookie] = [c for c in context.cookies() if c["value"] == "admin-secret"]
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/ui")
    assert page.evaluate("document.cookie") == ""  # no script can read it

    page.click("button:text('Sign out')")
    expect(page.locator(".notice")).to_contain_text("Signed out")
    page.goto(guarded.url("/ui"))
    expect(page).to_have_url(guarded.url("/ui/signin"))


def test_a_read_token_sees_jobs_but_no_buttons_and_cannot_post(guarded, warren, page: Page):
    job_id = warren.enqueue("test-noop", {}, delay_seconds=3600).id
    sign_in(page, guarded, "read-secret")
    page.goto(guarded.url(f"/ui/jobs/{job_id}"))
    expect(page.locator("#job-status")).to_have_text("pending")
    expect(page.locator("button:text('Cancel')")).to_have_count(0)

    csrf = page.locator("form.signout input[name=csrf]").input_value()
    answer = page.request.post(
        guarded.url(f"/ui/jobs/{job_id}/cancel"), form={"csrf": csrf}, max_redirects=0
    )

    assert answer.status == 403
    assert "write scope" in answer.text()
    assert warren.get(job_id).status == "pending"


def test_a_form_without_its_csrf_token_is_refused(app, warren, page: Page):
    job_id = warren.enqueue("test-noop", {}, delay_seconds=3600).id
    page.goto(app.url(f"/ui/jobs/{job_id}"))  # the browser has its session cookie now
    page.evaluate("document.querySelector('form input[name=csrf]').value = 'forged'")
    page.click("button:text('Cancel')")

    expect(page.locator("h1")).to_have_text("403 Forbidden")
    expect(page.locator("p.error")).to_contain_text("did not come from this dashboard")
    missing = page.request.post(app.url(f"/ui/jobs/{job_id}/cancel"), form={}, max_redirects=0)
    assert missing.status == 403
    assert warren.get(job_id).status == "pending"


def test_a_signed_in_action_carries_the_csrf_token_and_works(guarded, warren, page: Page):
    job_id = warren.enqueue("test-noop", {}, delay_seconds=3600).id
    sign_in(page, guarded, "admin-secret")
    page.goto(guarded.url(f"/ui/jobs/{job_id}"))
    page.click("button:text('Cancel')")

    expect(page.locator("#job-status")).to_have_text("cancelled")
    wait_for(lambda: warren.get(job_id).status == "cancelled", what="the cancel")


def test_an_open_dashboard_whose_cookie_is_gone_goes_to_the_sign_in_form(
    guarded, page: Page, context: BrowserContext
):
    sign_in(page, guarded, "read-secret")
    expect(page.locator(".who")).to_have_text("viewer · read")

    context.clear_cookies()  # signed out in another tab, or the cookie expired

    expect(page).to_have_url(guarded.url("/ui/signin"))  # the next refresh takes it there
    expect(page.locator("input[name=token]")).to_be_visible()
