"""batch-import: keyed records upserted into imported_items, from the payload or streamed from
a file on a local server; counts that a re-run does not double."""

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa

from actors.batch_import import BatchImport, batch_import
from service import db
from service.errors import JobCancelled, LeaseLost, PermanentError, ValidationFailed
from service.store import attempts
from tests.helpers import wait_for

ROWS = 100_000


@pytest.fixture
def files() -> Iterator[dict[str, Any]]:
    """A local file server: path -> bytes, set by the test."""
    served: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = served.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served["base"] = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield served
    server.shutdown()
    server.server_close()


@pytest.fixture
def stalled_file() -> Iterator[str]:
    """A URL whose server sends two NDJSON lines and then holds the rest for 30 s."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b'{"key": 1}\n{"key": 2}\n')
            self.wfile.flush()
            release.wait(30)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/stalls.ndjson"
    release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def stored(engine):
    """The imported items of a namespace, `{key: data}`; the table is dropped afterwards."""

    def read(namespace: str) -> dict[str, Any]:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT key, data FROM imported_items WHERE namespace = :n"),
                {"n": namespace},
            )
            return dict(rows.all())

    yield read
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS imported_items"))
    db.job_type_engine.cache_clear()


def test_items_are_upserted_and_a_rerun_counts_them_unchanged(settings, running_job, stored):
    running_job(settings=settings)
    items = [{"key": "a", "n": 1}, {"key": "b", "n": 2}, {"n": 3}, "not an object"]

    first = batch_import(BatchImport(namespace="people", items=items))
    items[1]["n"] = 20
    again = batch_import(BatchImport(namespace="people", items=items))

    assert first["inserted"] == 2 and first["invalid"] == 2
    assert [r["record"] for r in first["invalidRecords"]] == [3, 4]
    assert "no 'key'" in first["invalidRecords"][0]["reason"]
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 1, 1)
    assert stored("people") == {"a": {"key": "a", "n": 1}, "b": {"key": "b", "n": 20}}


def test_an_attempt_that_lost_its_job_writes_nothing_and_the_one_that_holds_it_writes(
    warren, engine, settings, running_job, stored
):
    job_id = warren.enqueue("test-noop", {}, delay_seconds=600, max_attempts=3).id
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET scheduled_at = NULL WHERE id = :id"), {"id": job_id})
        first = attempts.claim(conn, job_id, 1, "test:1", lease=30)
    with engine.begin() as conn:  # its lease ran out and another worker took the job over
        expire = "UPDATE jobs SET lease_until = now() - interval '1 s' WHERE id = :id"
        conn.execute(sa.text(expire), {"id": job_id})
        assert attempts.release_expired(conn, job_id, first.attempt_id)
        second = attempts.claim(conn, job_id, 1, "test:2", lease=30)
    stale = running_job(str(job_id), settings=settings)
    stale.attempt_id = first.attempt_id
    items = [{"key": "a", "v": "stale"}]

    with pytest.raises(LeaseLost):
        batch_import(BatchImport(namespace="fenced", items=items))
    assert stored("fenced") == {}

    stale.attempt_id = second.attempt_id
    batch_import(BatchImport(namespace="fenced", items=[{"key": "a", "v": "current"}]))
    assert stored("fenced") == {"a": {"key": "a", "v": "current"}}


def test_a_handler_called_directly_as_a_script_would_imports_unfenced(
    settings, stored, monkeypatch
):
    monkeypatch.setenv("WARREN_DATABASE_URL", settings.database_url)  # no job: the environment

    result = batch_import(BatchImport(namespace="direct", items=[{"key": "a"}]))  # RuntimeError

    assert result["inserted"] == 1
    assert stored("direct") == {"a": {"key": "a"}}


def test_a_large_ndjson_file_is_streamed_in_chunks(settings, running_job, stored, files):
    running_job(settings=settings)
    lines = [json.dumps({"id": i, "name": f"item {i}"}) for i in range(ROWS)]
    files["/items.ndjson"] = "\n".join([*lines[:10], "{broken", *lines[10:]]).encode()

    result = batch_import(
        BatchImport(namespace="big", url=files["base"] + "/items.ndjson", keyField="id")
    )

    assert result["inserted"] == ROWS and result["invalid"] == 1
    assert result["invalidRecords"][0]["record"] == 11
    assert len(stored("big")) == ROWS


def test_a_csv_file_with_its_key_field(settings, running_job, stored, files):
    running_job(settings=settings)
    files["/people.csv"] = b"email,name\na@example.com,Ann\nb@example.com,Bob\n,Nobody\n"

    result = batch_import(
        BatchImport(namespace="csv", url=files["base"] + "/people.csv", keyField="email")
    )

    assert (result["inserted"], result["invalid"]) == (2, 1)
    assert stored("csv")["b@example.com"] == {"email": "b@example.com", "name": "Bob"}


def test_a_spreadsheet_export_imports_as_written(settings, running_job, stored, files):
    """What Excel and friends write: a byte order mark, CR LF line ends, and a quoted field
    holding a line break."""
    running_job(settings=settings)
    rows = '\ufeffemail,note\r\na@example.com,"two\r\nlines"\r\nb@example.com,plain\r\n'
    files["/export.csv"] = rows.encode()

    result = batch_import(
        BatchImport(namespace="sheet", url=files["base"] + "/export.csv", keyField="email")
    )

    assert (result["inserted"], result["invalid"]) == (2, 0)
    assert stored("sheet")["a@example.com"] == {"email": "a@example.com", "note": "two\r\nlines"}


def test_unreadable_csv_rows_are_counted_and_the_rest_imported(
    settings, running_job, stored, files
):
    running_job(settings=settings)
    huge = "x" * 200_000
    lines = [b"key,name", b"a,Ann", b"b,Bob,extra", b"c," + huge.encode(), b"d,\xff\xfe", b"e,Eve"]
    files["/rows.csv"] = b"\n".join(lines) + b"\n"

    result = batch_import(BatchImport(namespace="rows", url=files["base"] + "/rows.csv"))

    assert set(stored("rows")) == {"a", "e"}
    reasons = {r["record"]: r["reason"] for r in result["invalidRecords"]}
    assert result["invalid"] == 3 and set(reasons) == {2, 3, 4}
    assert reasons[2] == "3 fields; the header names 2"
    assert "field limit" in reasons[3] and "not UTF-8" in reasons[4]


def test_ndjson_lines_end_at_line_feeds_only(settings, running_job, stored, files):
    """A byte order mark is dropped; U+2028 and U+0085 inside a record are its data, not line
    ends; a line past the limit is one invalid record, and the next line reads on."""
    running_job(settings=settings)
    long_line = json.dumps({"key": "long", "text": "y" * 1_100_000}).encode()
    records = [
        b"\xef\xbb\xbf" + json.dumps({"key": "first"}).encode(),
        json.dumps({"key": "sep", "text": "a\u2028b\u0085c"}, ensure_ascii=False).encode(),
        long_line,
        json.dumps({"key": "after"}).encode(),
    ]
    files["/lines.ndjson"] = b"\n".join(records)

    result = batch_import(BatchImport(namespace="nd", url=files["base"] + "/lines.ndjson"))

    assert set(stored("nd")) == {"first", "sep", "after"}
    assert stored("nd")["sep"]["text"] == "a\u2028b\u0085c"
    assert result["invalidRecords"] == [
        {"record": 3, "reason": "a line longer than 1,048,576 bytes"}
    ]


def test_a_cancel_stops_a_download_that_stalls(settings, running_job, stored, stalled_file):
    """The server sends a few lines and then nothing, for longer than any read timeout: the
    cancel still ends the job within a second."""
    job = running_job(settings=settings)
    threading.Timer(0.5, job.cancel_requested.set).start()
    started = time.monotonic()

    with pytest.raises(JobCancelled):
        batch_import(BatchImport(namespace="stall", url=stalled_file))

    assert time.monotonic() - started < 2.0


def test_a_missing_file_fails_at_once(settings, running_job, stored, files):
    running_job(settings=settings)

    with pytest.raises(PermanentError, match="HTTP 404"):
        batch_import(BatchImport(namespace="none", url=files["base"] + "/gone.ndjson"))


@pytest.mark.parametrize(
    "payload",
    [{"namespace": "x"}, {"namespace": "x", "items": [], "url": "http://example.com/a"},
     {"namespace": "bad name", "items": [{"key": 1}]},
     {"namespace": "x", "url": "http://10.0.0.1/items.ndjson"},
     {"namespace": "x", "url": "http://user:pw@example.com/items.ndjson"}],
)  # fmt: skip
def test_a_bad_import_is_refused_at_enqueue(warren, payload):
    with pytest.raises(ValidationFailed):
        warren.enqueue("batch-import", payload)


def test_on_a_worker_an_import_completes_with_its_counts(warren, worker, stored):
    job_id = warren.enqueue("batch-import", {"namespace": "w", "items": [{"key": "k", "v": 1}]}).id

    wait_for(lambda: warren.get(job_id).status == "completed")
    assert warren.get(job_id).result["inserted"] == 1
    assert stored("w") == {"k": {"key": "k", "v": 1}}
