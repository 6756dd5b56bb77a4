"""crawl-website against a local site on 127.0.0.1: robots.txt, a link loop, a 404, a
redirect, a PDF, more pages than maxPages, and a retried crawl that resumes."""

import gzip
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa

from actors.crawl_website import MAX_CRAWL_DELAY, CrawlWebsite, Robots, crawl_website
from service import db, netguard
from service.errors import JobCancelled, ValidationFailed
from service.netguard import ForbiddenURL


def page(title: str, *links: str) -> bytes:
    anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links)
    head = f"<html><head><title>{title}</title></head>"
    return f"{head}<body><p>{title} text</p>{anchors}</body></html>".encode()


HTML = {"Content-Type": "text/html"}
SITE: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/robots.txt": (200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /private\n"),
    "/": (200, HTML, page("Home", "/a", "/b", "/private/secret", "/missing", "/old", "/file.pdf",
                          "mailto:x@example.com", "/a#section")),
    "/a": (200, HTML, page("A", "/", "/b")),  # a loop back home
    "/b": (200, HTML, page("B", "/deep/1")),
    "/deep/1": (200, HTML, page("Deep 1", "/deep/2")),
    "/deep/2": (200, HTML, page("Deep 2", "/deep/3")),
    "/deep/3": (200, HTML, page("Deep 3")),
    "/private/secret": (200, HTML, page("Secret")),
    "/file.pdf": (200, {"Content-Type": "application/pdf"}, b"%PDF-1.4 not parsed"),
    "/old": (301, {"Location": "/a"}, b""),
}  # fmt: skip


@pytest.fixture
def serve() -> Iterator[Any]:
    """Starts a site answering `routes` (path -> status, headers, body), 404 elsewhere, and
    recording the paths asked for in `hits`: `serve(routes, hits)` returns its base URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(
        routes: dict[str, tuple[int, dict[str, str], bytes]], hits: list | None = None
    ) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if hits is not None:
                    hits.append(self.path)
                status, headers, body = routes.get(self.path, (404, HTML, b"not here"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def site(serve) -> dict[str, Any]:
    hits: list[str] = []
    return {"base": serve(SITE, hits), "hits": hits}


@pytest.fixture
def pages(engine):
    def read(job_id: str) -> dict[str, Any]:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT url, status, content_type, title, links FROM crawled_pages"
                    " WHERE job_id = :j"
                ),
                {"j": job_id},
            )
            return {row.url: row for row in rows}

    yield read
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS crawled_pages"))
    db.job_type_engine.cache_clear()


JOB = "9b1c1f6e-3c1e-4d8a-9d3e-0a1b2c3d4e5f"


def test_a_crawl_obeys_robots_and_records_what_it_met(settings, running_job, site, pages):
    running_job(JOB, settings=settings)
    base = site["base"]

    result = crawl_website(CrawlWebsite(url=base + "/", maxDepth=2))

    stored = pages(JOB)
    assert set(stored) == {base + p for p in ("/", "/a", "/b", "/missing", "/old", "/file.pdf",
                                               "/deep/1")}  # fmt: skip
    assert result["refusedByRobots"] == 1 and "/private/secret" not in site["hits"]
    assert stored[base + "/"].title == "Home" and base + "/a" in stored[base + "/"].links
    assert stored[base + "/missing"].status == 404
    assert stored[base + "/old"].status == 200 and stored[base + "/old"].title == "A"
    pdf = stored[base + "/file.pdf"]
    assert pdf.content_type == "application/pdf" and pdf.title is None
    assert site["hits"].count("/a") == 2  # once itself, once behind the redirect: no loop


def test_max_pages_stops_the_crawl_and_a_later_attempt_resumes(settings, running_job, site, pages):
    job = running_job(JOB, settings=settings)
    base = site["base"]

    first = crawl_website(CrawlWebsite(url=base + "/", maxPages=3, maxDepth=5))
    assert first["pages"] == 3 and len(pages(JOB)) == 3

    job.attempt = 2
    again = crawl_website(CrawlWebsite(url=base + "/", maxPages=6, maxDepth=5))

    assert again["resumed"] == 3 and again["fetched"] == 3
    assert site["hits"].count("/") == site["hits"].count("/b") == 1  # not fetched again
    assert len(pages(JOB)) == 6


def test_a_new_life_crawls_afresh(settings, running_job, site, pages):
    running_job(JOB, settings=settings)
    base = site["base"]
    crawl_website(CrawlWebsite(url=base + "/", maxPages=3, maxDepth=5))

    again = crawl_website(CrawlWebsite(url=base + "/", maxPages=2, maxDepth=5))  # attempt 1

    assert again["resumed"] == 0 and again["fetched"] == 2
    assert site["hits"].count("/") == 2 and len(pages(JOB)) == 2


def test_include_and_exclude_patterns(settings, running_job, site, pages):
    running_job(JOB, settings=settings)
    base = site["base"]

    crawl_website(CrawlWebsite(url=base + "/", include=["/", "/deep/*", "/b"], exclude=["/deep/3"]))

    assert {u.removeprefix(base) for u in pages(JOB)} == {"/", "/b", "/deep/1", "/deep/2"}


def test_a_crawl_of_a_forbidden_address_fails_at_once(settings, running_job, pages):
    running_job(JOB, settings=settings)

    with pytest.raises(ForbiddenURL):
        crawl_website(CrawlWebsite(url="http://169.254.169.254/latest/meta-data/"))


@pytest.mark.parametrize(
    "payload",
    [{"url": "ftp://example.com/"}, {"url": "http://10.0.0.1/"}, {"url": "https://example.com",
     "maxPages": 1001}, {"url": "https://example.com", "include": [""]}],
)  # fmt: skip
def test_a_bad_crawl_is_refused_at_enqueue(warren, payload):
    with pytest.raises(ValidationFailed):
        warren.enqueue("crawl-website", payload)


def test_on_a_worker_a_crawl_completes_with_its_tally(warren, worker, site, pages):
    from tests.helpers import wait_for

    job_id = warren.enqueue("crawl-website", {"url": site["base"] + "/", "maxDepth": 1}).id

    wait_for(lambda: warren.get(job_id).status == "completed", timeout=20)
    result = warren.get(job_id).result
    assert result["pages"] == 6 and result["refusedByRobots"] == 1  # home and its five links
    assert len(pages(str(job_id))) == 6


# -- hostile sites --------------------------------------------------------------------------


def test_a_page_is_read_in_the_charset_it_names(settings, running_job, serve, pages):
    running_job(JOB, settings=settings)
    latin = "<html><head><title>Caf\xe9</title></head><body>cr\xe8me</body></html>"
    meta = '<html><head><meta charset="windows-1252"><title>\x93Quoted\x94</title></head></html>'
    base = serve({
        "/": (200, HTML, page("Home", "/latin", "/meta", "/utf16")),
        "/latin": (200, {"Content-Type": "text/html; charset=iso-8859-1"}, latin.encode("latin-1")),
        "/meta": (200, HTML, meta.encode("latin-1")),
        "/utf16": (200, HTML, b'<meta charset="utf-16"><title>Plain</title>'),
    })  # fmt: skip

    crawl_website(CrawlWebsite(url=base + "/"))

    stored = pages(JOB)
    assert stored[base + "/latin"].title == "Café"
    assert stored[base + "/meta"].title == "\u201cQuoted\u201d"
    assert stored[base + "/utf16"].title == "Plain"  # HTML: a <meta> never means UTF-16


def test_what_postgresql_cannot_store_is_replaced_not_fatal(settings, running_job, serve, pages):
    running_job(JOB, settings=settings)
    base = serve({"/": (200, HTML, b"<title>nul\x00title</title><a href='/x\x00y'>x</a>")})

    result = crawl_website(CrawlWebsite(url=base + "/", maxDepth=0))

    assert result["fetched"] == 1 and pages(JOB)[base + "/"].title == "nul\ufffdtitle"


def test_refused_answers_count_as_errors_and_the_crawl_goes_on(settings, running_job, serve, pages):
    """A link that redirects to cloud metadata, a page gzipped twice (a decompression bomb)
    and a robots.txt that redirects to a private address: each is an error or no rules, not
    the end of the crawl."""
    running_job(JOB, settings=settings)
    bomb = gzip.compress(gzip.compress(bytes(10**7)))
    base = serve({
        "/robots.txt": (302, {"Location": "http://10.0.0.1/robots.txt"}, b""),
        "/": (200, HTML, page("Home", "/metadata", "/bomb", "/fine")),
        "/metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
        "/bomb": (200, {**HTML, "Content-Encoding": "gzip, gzip"}, bomb),
        "/fine": (200, HTML, page("Fine")),
    })  # fmt: skip

    result = crawl_website(CrawlWebsite(url=base + "/"))

    assert (result["fetched"], result["errors"]) == (2, 2)
    assert set(pages(JOB)) == {base + "/", base + "/fine"}


def test_a_crawl_delay_of_a_day_is_capped_and_a_cancel_ends_it(settings, running_job, serve):
    """robots.txt asks for a day between pages: the crawler waits at most MAX_CRAWL_DELAY, and
    a cancel during that wait stops the job at once."""
    job = running_job(JOB, settings=settings)
    robots = (200, {"Content-Type": "text/plain"}, b"User-agent: *\nCrawl-delay: 86400\n")
    base = serve({"/robots.txt": robots, "/": (200, HTML, page("Home", "/next"))})
    with netguard.client(settings) as client:
        assert Robots(client).delay(base + "/") == MAX_CRAWL_DELAY
    threading.Timer(0.5, job.cancel_requested.set).start()
    started = time.monotonic()

    with pytest.raises(JobCancelled):
        crawl_website(CrawlWebsite(url=base + "/"))

    assert time.monotonic() - started < 2.0
