"""crawl-website against a local site on 127.0.0.1: robots.txt, a link loop, a 404, a
redirect, a PDF, more pages than maxPages, and a retried crawl that resumes."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa

from actors.crawl_website import CrawlWebsite, crawl_website
from service import db
from service.errors import ValidationFailed
from service.netguard import ForbiddenURL


def page(title: str, *links: str) -> bytes:
    anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links)
    head = f"<html><head><title>{title}</title></head>"
    return f"{head}<body><p>{title} text</p>{anchors}</body></html>".encode()


SITE: dict[str, tuple[int, str, bytes]] = {
    "/robots.txt": (200, "text/plain", b"User-agent: *\nDisallow: /private\n"),
    "/": (200, "text/html", page("Home", "/a", "/b", "/private/secret", "/missing", "/old",
                                 "/file.pdf", "mailto:x@example.com", "/a#section")),
    "/a": (200, "text/html", page("A", "/", "/b")),  # a loop back home
    "/b": (200, "text/html", page("B", "/deep/1")),
    "/deep/1": (200, "text/html", page("Deep 1", "/deep/2")),
    "/deep/2": (200, "text/html", page("Deep 2", "/deep/3")),
    "/deep/3": (200, "text/html", page("Deep 3")),
    "/private/secret": (200, "text/html", page("Secret")),
    "/file.pdf": (200, "application/pdf", b"%PDF-1.4 not parsed"),
}  # fmt: skip


@pytest.fixture
def site() -> Iterator[dict[str, Any]]:
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            if self.path == "/old":
                self.send_response(301)
                self.send_header("Location", "/a")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status, content_type, body = SITE.get(self.path, (404, "text/html", b"not here"))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield {"base": f"http://127.0.0.1:{server.server_address[1]}", "hits": hits}
    server.shutdown()
    server.server_close()


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


def test_max_pages_stops_the_crawl_and_a_retry_resumes(settings, running_job, site, pages):
    running_job(JOB, settings=settings)
    base = site["base"]

    first = crawl_website(CrawlWebsite(url=base + "/", maxPages=3, maxDepth=5))
    assert first["pages"] == 3 and len(pages(JOB)) == 3

    again = crawl_website(CrawlWebsite(url=base + "/", maxPages=6, maxDepth=5))

    assert again["resumed"] == 3 and again["fetched"] == 3
    assert site["hits"].count("/") == site["hits"].count("/b") == 1  # not fetched again
    assert len(pages(JOB)) == 6


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
