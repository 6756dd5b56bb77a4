"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

The app is the API's (`create_app`) on this run's database and queues, served over real HTTP
on 127.0.0.1 by a threaded WSGI server in the test process, so a test can start a worker and
the scheduler beside it. Playwright's own browser downloads are never used: the browser is
`/usr/bin/chromium` (`make test` installs it), each test gets a fresh browser context, and the
browser itself a fresh profile (Playwright launches it in a temporary user-data-dir).

A failing test leaves a screenshot of its page in tests/ui/screenshots/ and names it in the
failure report.
"""

import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from api.app import create_app
from service.client import Warren
from service.settings import Settings

CHROMIUM = os.environ.get("WARREN_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
#: How long a test waits for what a user would see (the pages poll every 2-5 seconds).
EXPECT_TIMEOUT_MS = 20_000


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:
        logging.getLogger("tests.ui.http").debug(format, *args)


class Served:
    """The app on a port of 127.0.0.1; `url("/ui")` is an address on it."""

    def __init__(self, warren: Warren) -> None:
        self.server = make_server(
            "127.0.0.1", 0, create_app(warren=warren), ThreadingServer, QuietHandler
        )
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve(settings: Settings, engine, clean: None) -> Iterator[Callable[..., Served]]:
    """`serve(**setting_overrides)`: the app on its own port, e.g. with `api_tokens`."""
    started: list[tuple[Served, Warren]] = []

    def start(**overrides) -> Served:
        warren = Warren(settings.model_copy(update=overrides), engine=engine)
        served = Served(warren)
        started.append((served, warren))
        return served

    yield start
    for served, warren in started:
        served.close()
        warren.broker_view.close()
        warren.publisher.close()


@pytest.fixture
def app(serve) -> Served:
    """The dashboard without tokens: open, as the API is."""
    return serve()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser context per test: no cookies, no cache from another test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    page = context.new_page()
    yield page
    report = getattr(request.node, "call_report", None)
    if report is not None and report.failed:
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{request.node.name}.png"
        page.screenshot(path=path, full_page=True)
        report.sections.append(("screenshot", f"the page when the test failed: {path}"))
        print(f"\nscreenshot of the failing page: {path}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep the call phase's report on the test, for the `page` fixture's screenshot."""
    report = yield
    if report.when == "call":
        item.call_report = report
    return report


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """This folder's tests are the `ui` tier (`pytest -m ui`), as each folder of tests/ is."""
    here = Path(__file__).resolve().parent
    for item in items:
        if Path(item.path).resolve().is_relative_to(here):
            item.add_marker("ui")
