"""Listing jobs by payload field: whichever way the page is found (a walk over the newest jobs,
a longer walk, or the payload's index), it lists exactly the matching jobs, newest first, and
its cursor and offset page through them as they page through the unfiltered list."""

import pytest

from service import queries

#: Tags of 90 jobs in enqueue order: a third "common", two "rare", twelve "old" among the oldest
#: twenty, the rest "other".
TAGS = [
    "rare" if n in (5, 70) else "common" if n % 3 == 0 else "old" if n < 20 else "other"
    for n in range(90)
]

FINDERS = {
    "a walk over the newest jobs": {},
    "a second, longer walk": {"WALK_PER_JOB": 1, "INDEX_WEIGHT": 1_000},
    "the payload's index": {"WALK_PER_JOB": 1, "INDEX_WEIGHT": 0},
}


@pytest.fixture(params=list(FINDERS))
def finder(request, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in FINDERS[request.param].items():
        monkeypatch.setattr(queries, name, value)
    return request.param


@pytest.fixture
def newest_first(warren, engine) -> list[tuple[str, str]]:
    """(id, tag) of every job, as the unfiltered list orders them. The table is analyzed, as
    autovacuum would, so PostgreSQL knows its size."""
    warren.submit([{"type": "test-record", "payload": {"tag": tag}} for tag in TAGS])
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE jobs")
    listed = warren.list({"limit": "500"}).jobs
    return [(str(job.id), job.payload["tag"]) for job in listed]


def every_page(warren, params: dict[str, str]) -> list[str]:
    """The ids of every page of `params`, following the cursors."""
    ids: list[str] = []
    cursor = None
    while True:
        page = warren.list(params | ({"cursor": cursor} if cursor else {}))
        ids += [str(job.id) for job in page.jobs]
        if not (cursor := page.next_cursor):
            return ids


@pytest.mark.parametrize("tag", ["common", "rare", "old", "nobody's"])
def test_a_payload_filter_pages_through_exactly_its_jobs_newest_first(
    warren, newest_first, finder, tag
):
    expected = [job_id for job_id, job_tag in newest_first if job_tag == tag]

    assert every_page(warren, {"payload.tag": tag, "limit": "4"}) == expected
    assert every_page(warren, {"payload.tag": tag, "limit": "50"}) == expected


def test_a_payload_filter_with_an_offset_skips_the_newest_matches(warren, newest_first, finder):
    common = [job_id for job_id, tag in newest_first if tag == "common"]

    page = warren.list({"payload.tag": "common", "offset": "25", "limit": "10"})

    assert [str(job.id) for job in page.jobs] == common[25:]
    assert page.next_cursor is None


def test_a_payload_filter_applies_with_the_other_filters(warren, newest_first, finder):
    rare = warren.list({"payload.tag": "rare"}).jobs
    warren.cancel(rare[0].id)

    cancelled = warren.list({"payload.tag": "rare", "status": "cancelled"}).jobs
    pending = warren.list({"payload.tag": "rare", "status": "pending"}).jobs

    assert [job.id for job in cancelled] == [rare[0].id]
    assert [job.id for job in pending] == [rare[1].id]
