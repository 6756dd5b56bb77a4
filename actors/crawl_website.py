"""crawl-website: fetch a site breadth-first, politely, and keep each page's text and links.

From `url`, links are followed up to `maxDepth` hops and `maxPages` pages, on the same host
by default, through http(s) only, where the site's robots.txt allows (protego, honouring its
crawl-delay) and the `include`/`exclude` patterns (shell-style, on the URL's path) agree.
HTML is parsed with selectolax: its title, its text (at most `MAX_TEXT` characters) and its
links; other content types are recorded, not parsed. Redirects are followed (at most five),
each hop checked by the SSRF guard, as the first request is.

Pages go to `crawled_pages(job_id, url, status, content_type, title, text, links,
fetched_at)`, a table of this job type's own, created when first used. A crawl's later
attempt skips the pages its earlier attempts stored and follows their stored links instead;
a new life (a retry by hand, a DLQ replay) crawls afresh. Each page is written fenced by the
attempt (`service.fencing`): one that lost the job writes nothing more. A cancel is honoured
between pages and during a fetch.
"""

import fnmatch
import re
from collections import deque
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import httpx
import sqlalchemy as sa
from protego import Protego
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from service import bodies, db, interruptible, netguard, storable
from service.fencing import fence
from service.registry import (
    current_job,
    current_settings,
    enqueueing,
    job_type,
    report_progress,
)

USER_AGENT = "WarrenCrawler/1.0"
MAX_TEXT = 100_000
MAX_BODY = 5_000_000
#: The most of a robots.txt that is read, as Google's crawler reads it.
MAX_ROBOTS = 500_000
#: The longest pause between pages a robots.txt `Crawl-delay` gets; a site asking for more is
#: crawled at this pace, as `delayMs` allows at most.
MAX_CRAWL_DELAY = 60.0

TABLE = """
CREATE TABLE IF NOT EXISTS crawled_pages (
    job_id uuid NOT NULL,
    url text NOT NULL,
    status integer NOT NULL,
    content_type text,
    title text,
    text text,
    links text[] NOT NULL DEFAULT '{}',
    fetched_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, url)
)
"""
_STORE = sa.text(
    """
    INSERT INTO crawled_pages (job_id, url, status, content_type, title, text, links)
    VALUES (:job_id, :url, :status, :content_type, :title, :text, :links)
    ON CONFLICT (job_id, url) DO NOTHING
    """
)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]{1,40})""", re.I)
_STORED = sa.text("SELECT url, links FROM crawled_pages WHERE job_id = :job_id")
_FORGET = sa.text("DELETE FROM crawled_pages WHERE job_id = :job_id")


class CrawlWebsite(BaseModel):
    """Where to start and how far to go."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    url: HttpUrl
    max_pages: int = Field(default=100, ge=1, le=1000, strict=True)
    max_depth: int = Field(default=3, ge=0, le=20, strict=True)
    same_host: bool = Field(default=True, strict=True)
    include: list[str] = Field(default_factory=list, max_length=50)
    exclude: list[str] = Field(default_factory=list, max_length=50)
    delay_ms: int = Field(default=0, ge=0, le=60_000, strict=True)

    @field_validator("include", "exclude")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if not 1 <= len(pattern) <= 200:
                raise ValueError("a pattern is 1 to 200 characters")
        return patterns

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: HttpUrl, info: ValidationInfo) -> HttpUrl:
        """At enqueue, refuse credentials and literal forbidden addresses, as webhooks do."""
        if (context := enqueueing(info)) is not None:
            netguard.refuse_at_enqueue(url, context.current_settings())
        return url

    def wanted(self, url: str, start_host: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return False
        if self.same_host and parts.hostname != start_host:
            return False
        path = parts.path or "/"
        if self.include and not any(fnmatch.fnmatchcase(path, p) for p in self.include):
            return False
        return not any(fnmatch.fnmatchcase(path, p) for p in self.exclude)


class Robots:
    """Each host's robots.txt, fetched once, through the guarded client."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.rules: dict[str, Protego | None] = {}

    def of(self, url: str) -> Protego | None:
        """The rules for `url`'s origin; None (everything allowed) when its robots.txt is
        missing, unreachable, or redirects where Warren may not go."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self.rules:
            self.rules[origin] = None
            try:
                with self.client.stream("GET", origin + "/robots.txt") as answer:
                    if answer.status_code == 200:
                        text = bodies.head(answer, MAX_ROBOTS).decode(errors="replace")
                        self.rules[origin] = Protego.parse(text)
            except (httpx.HTTPError, netguard.ForbiddenURL, bodies.AnswerRefused):
                pass
        return self.rules[origin]

    def allows(self, url: str) -> bool:
        rules = self.of(url)
        return rules is None or rules.can_fetch(url, USER_AGENT)

    def delay(self, url: str) -> float:
        rules = self.of(url)
        asked = float(rules.crawl_delay(USER_AGENT) or 0) if rules is not None else 0.0
        return min(asked, MAX_CRAWL_DELAY)


@job_type("crawl-website", payload=CrawlWebsite, max_attempts=3, timeout_seconds=3600)
def crawl_website(payload: CrawlWebsite) -> dict[str, Any]:
    """Crawl; return `{"pages", "fetched", "resumed", "refusedByRobots", "errors"}`."""
    settings = current_settings()
    engine = db.job_type_engine(settings.database_url, "crawled_pages", TABLE)
    job = current_job()
    job_id = job.id
    with engine.begin() as conn:
        fence(conn)
        if job.attempt == 1:  # a life's first attempt: what an earlier life stored goes
            conn.execute(_FORGET, {"job_id": job_id})
        stored = dict(conn.execute(_STORED, {"job_id": job_id}).all())
    start = urldefrag(str(payload.url))[0]
    start_host = urlsplit(start).hostname
    client = netguard.client(
        settings,
        timeout=30,
        follow_redirects=True,
        max_redirects=5,
        headers={"User-Agent": USER_AGENT},
    )
    robots = Robots(client)
    tally = {"pages": 0, "fetched": 0, "resumed": 0, "refusedByRobots": 0, "errors": 0}
    frontier: deque[tuple[str, int]] = deque([(start, 0)])
    seen = {start}
    with client:
        while frontier and tally["pages"] < payload.max_pages:
            url, depth = frontier.popleft()
            if url in stored:
                links = stored[url]
                tally["resumed"] += 1
            elif not robots.allows(url):
                tally["refusedByRobots"] += 1
                continue
            else:
                if tally["fetched"]:
                    interruptible.sleep(max(payload.delay_ms / 1000, robots.delay(url)))
                try:
                    page = interruptible.call(lambda u=url: _fetch(client, u), abort=client.close)
                except (netguard.ForbiddenURL, bodies.AnswerRefused):
                    if url == start:
                        raise  # the crawl itself is refused: a permanent failure
                    page = None  # a link or a redirect where Warren may not go, or a bomb
                if page is None:
                    tally["errors"] += 1
                    continue
                links = page["links"]
                with engine.begin() as conn:
                    fence(conn)
                    conn.execute(_STORE, {"job_id": job_id, "url": url, **page})
                tally["fetched"] += 1
            tally["pages"] += 1
            report_progress(tally["pages"], payload.max_pages, url)
            if depth < payload.max_depth:
                for link in links:
                    if link not in seen and payload.wanted(link, start_host):
                        seen.add(link)
                        frontier.append((link, depth + 1))
    return tally


def _fetch(client: httpx.Client, url: str) -> dict[str, Any] | None:
    """One page, as stored; None when it could not be fetched at all."""
    try:
        with client.stream("GET", url) as answer:
            content_type = answer.headers.get("Content-Type", "")
            body = b""
            if content_type.startswith("text/html"):
                body = bodies.head(answer, MAX_BODY)
            final = urldefrag(str(answer.url))[0]
            status = answer.status_code
            charset = answer.charset_encoding
    except httpx.HTTPError:  # a refused address (netguard.ForbiddenURL) is not one: it fails
        return None
    page: dict[str, Any] = {"status": status, "content_type": storable.clean(content_type) or None}
    page |= {"title": None, "text": None, "links": []}
    if body and status == 200:
        page |= _parsed(_decoded(body, charset), final)
    return page


def _decoded(body: bytes, charset: str | None) -> str:
    """The page's text in the charset its answer names, else the one a `<meta>` near its top
    names, else UTF-8 (also for a charset Python does not know)."""
    if charset is None and (meta := _META_CHARSET.search(body[:2048])) is not None:
        charset = meta.group(1).decode("ascii")
        if charset.lower().startswith("utf-16"):
            charset = "utf-8"  # a page that could say so in ASCII is not UTF-16 (HTML's rule)
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def _parsed(html: str, base: str) -> dict[str, Any]:
    tree = HTMLParser(html)
    title = tree.css_first("title")
    body = tree.body
    links = []
    for anchor in tree.css("a[href]"):
        href = anchor.attributes.get("href") or ""
        link = urldefrag(urljoin(base, href.strip()))[0]
        if link.startswith(("http://", "https://")) and link not in links:
            links.append(link)
    text = body.text(separator=" ", strip=True) if body is not None else ""
    return {
        "title": storable.clean(title.text(strip=True)[:1000]) if title is not None else None,
        "text": storable.clean(text[:MAX_TEXT]),
        "links": [storable.clean(link) for link in links[:1000]],
    }
