"""batch-import: upsert keyed records into `imported_items(namespace, key, data, updated_at)`.

The records come in the payload (`items`) or from a file at `url`, NDJSON or CSV, streamed a
line at a time, so an import is not bound by the API's body limit. Each record is a JSON
object; its key is the field `keyField` names (default `key`). Records are upserted 1,000 per
transaction with `INSERT ... ON CONFLICT`: a record whose data did not change is not written
again. So a retry after a crash neither duplicates rows nor counts them twice: what the
crashed attempt stored reads as unchanged.

The result counts the records inserted, updated, unchanged and invalid, with the first 20
invalid ones and why. The URL is the caller's, so it goes through `service.netguard`. The
table belongs to this job type and is created when first used.
"""

import codecs
import csv
import itertools
import json
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import httpx
import sqlalchemy as sa
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from sqlalchemy.dialects.postgresql import JSONB

from service import db, interruptible, netguard, storable
from service.errors import BadRequest, PermanentError, ValidationFailed
from service.fencing import fence
from service.registry import (
    current_settings,
    enqueueing,
    is_cancelled,
    job_type,
    report_progress,
)

CHUNK = 1000
MAX_INVALID_SHOWN = 20
MAX_ITEMS = 10_000
#: The longest line of a file read, and so the largest record or CSV field.
MAX_LINE = 1_048_576
_NAMESPACE = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"

TABLE = """
CREATE TABLE IF NOT EXISTS imported_items (
    namespace text NOT NULL,
    key text NOT NULL,
    data jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, key)
)
"""
_UPSERT = sa.text(
    """
    INSERT INTO imported_items (namespace, key, data)
    SELECT :namespace, key, data FROM unnest(CAST(:keys AS text[]), :data) AS r(key, data)
    ON CONFLICT (namespace, key) DO UPDATE SET data = excluded.data, updated_at = now()
     WHERE imported_items.data IS DISTINCT FROM excluded.data
    RETURNING xmax = 0 AS inserted
    """
).bindparams(sa.bindparam("data", type_=sa.ARRAY(JSONB)))


class BatchImport(BaseModel):
    """`namespace`, and `items` or a `url` (NDJSON or CSV, `format` saying which when the
    URL's path does not); `keyField` names each record's key (default `key`)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    namespace: str = Field(pattern=_NAMESPACE)
    items: list[Any] | None = Field(default=None, min_length=1, max_length=MAX_ITEMS)
    url: HttpUrl | None = None
    format: Literal["ndjson", "csv"] | None = None
    key_field: str = Field(default="key", min_length=1, max_length=200)

    @model_validator(mode="after")
    def _one_source(self) -> "BatchImport":
        if (self.items is None) == (self.url is None):
            raise ValueError("give either items or url")
        return self

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: HttpUrl | None, info: ValidationInfo) -> HttpUrl | None:
        """At enqueue, refuse credentials and literal forbidden addresses, as webhooks do."""
        if url is not None and (context := enqueueing(info)) is not None:
            netguard.refuse_at_enqueue(url, context.current_settings())
        return url

    def file_format(self) -> str:
        if self.format is not None:
            return self.format
        return "csv" if str(self.url).split("?")[0].lower().endswith(".csv") else "ndjson"


class Tally:
    def __init__(self) -> None:
        self.counts = {"inserted": 0, "updated": 0, "unchanged": 0, "invalid": 0}
        self.invalid: list[dict[str, Any]] = []

    def refuse(self, record: int, reason: str) -> None:
        self.counts["invalid"] += 1
        if len(self.invalid) < MAX_INVALID_SHOWN:
            self.invalid.append({"record": record, "reason": reason})


@job_type("batch-import", payload=BatchImport, max_attempts=3, timeout_seconds=3600)
def batch_import(payload: BatchImport) -> dict[str, Any]:
    """Upsert every valid record; return the counts and the first invalid records."""
    settings = current_settings()
    engine = db.job_type_engine(settings.database_url, "imported_items", TABLE)
    tally = Tally()
    if payload.items is not None:
        _upsert_all(engine, payload, enumerate(payload.items, 1), tally)
    else:
        client = netguard.client(settings, timeout=60, follow_redirects=True)
        try:
            with client, client.stream("GET", str(payload.url)) as answer:
                if answer.status_code != 200:
                    raise _failure(answer)
                # Read in a helper thread: a cancel or the job's time limit stops a stalled read.
                lines = Lines(interruptible.iterate(answer.iter_bytes(), abort=client.close))
                _upsert_all(engine, payload, _records(lines, payload.file_format()), tally)
        except httpx.TransportError as exc:
            raise ConnectionError(f"could not read {payload.url}: {exc}") from exc
    return {**tally.counts, "invalidRecords": tally.invalid}


def _failure(answer: httpx.Response) -> Exception:
    message = f"HTTP {answer.status_code} from {answer.url}"
    return ConnectionError(message) if answer.status_code >= 500 else PermanentError(message)


class Lines:
    """A file's lines as text, each with its line end: split at LF alone (CR LF is one end,
    other Unicode line breaks are data), a byte order mark dropped, each at most `MAX_LINE`
    bytes. A line that is too long or not UTF-8 is given as None, and `problem` says why."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = chunks
        self.problem: str | None = None

    def __iter__(self) -> Iterator[str | None]:
        for line in self._raw():
            try:
                yield line.decode() if line is not None else None
            except UnicodeDecodeError as exc:
                self.problem = f"not UTF-8 ({exc.reason} at byte {exc.start})"
                yield None

    def _raw(self) -> Iterator[bytes | None]:
        pending = bytearray()
        skipping = False  # the rest of a line too long to keep
        first = True
        for chunk in self.chunks:
            if first and chunk:
                chunk, first = chunk.removeprefix(codecs.BOM_UTF8), False
            start = 0
            while (end := chunk.find(b"\n", start)) != -1:
                if not skipping:
                    pending += chunk[start : end + 1]
                    yield self._checked(pending)
                skipping, pending, start = False, bytearray(), end + 1
            if not skipping:
                pending += chunk[start:]
                if len(pending) > MAX_LINE:
                    skipping, pending = True, bytearray()
                    yield self._checked(None)
        if pending:
            yield self._checked(pending)

    def _checked(self, line: bytearray | None) -> bytes | None:
        if line is None or len(line) > MAX_LINE:
            self.problem = f"a line longer than {MAX_LINE:,} bytes"
            return None
        return bytes(line)


def _records(lines: Lines, file_format: str) -> Iterator[tuple[int, Any]]:
    """`(number, record)` from the file; a line that cannot be read becomes a `ValueError` in
    place of its record, counted as invalid."""
    if file_format == "csv":
        yield from _csv_records(lines)
        return
    number = 0
    for line in lines:
        if line is not None and not line.strip():
            continue
        number += 1
        if line is None:
            yield number, ValueError(lines.problem)
            continue
        try:
            yield number, json.loads(line)
        except ValueError as exc:
            yield number, ValueError(f"not JSON: {exc}")


def _csv_records(lines: Lines) -> Iterator[tuple[int, Any]]:
    """Rows as objects keyed by the header row; a quoted field keeps its line breaks. A row
    with more fields than the header is invalid; one with fewer has nulls for the rest."""
    rows = csv.reader(lines)  # a None line makes it raise csv.Error, then read on
    header: list[str] | None = None
    number = 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            reason, lines.problem = lines.problem or f"not CSV: {exc}", None
            if header is None:
                raise PermanentError(f"the CSV file's header row cannot be read: {reason}") from exc
            number += 1
            yield number, ValueError(reason)
            continue
        if not row:
            continue  # a blank line
        if header is None:
            header = row
            continue
        number += 1
        if len(row) > len(header):
            yield number, ValueError(f"{len(row)} fields; the header names {len(header)}")
            continue
        yield number, dict(itertools.zip_longest(header, row))


def _upsert_all(engine: sa.Engine, payload: BatchImport, records: Any, tally: Tally) -> None:
    keys: list[str] = []
    data: list[Any] = []
    for number, record in records:
        reason = _refusal(record, payload.key_field)
        if reason is not None:
            tally.refuse(number, reason)
            continue
        keys.append(str(record[payload.key_field]))
        data.append(record)
        if len(keys) == CHUNK:
            _upsert(engine, payload.namespace, keys, data, tally)
            keys, data = [], []
            if is_cancelled():
                return
    if keys:
        _upsert(engine, payload.namespace, keys, data, tally)


def _refusal(record: Any, key_field: str) -> str | None:
    """Why a record cannot be imported, or None."""
    if isinstance(record, ValueError):
        return str(record)
    if not isinstance(record, dict):
        return "not an object"
    key = record.get(key_field)
    if isinstance(key, bool) or not isinstance(key, str | int) or key == "":
        return f"no {key_field!r}: a non-empty string or a whole number"
    if len(str(key)) > 500:
        return f"{key_field!r} is longer than 500 characters"
    try:
        storable.check(record)
    except (ValidationFailed, BadRequest) as exc:
        details = exc.details or [{"field": "", "message": str(exc)}]
        return "; ".join(f"{d['field']} {d['message']}".strip() for d in details)
    return None


def _upsert(
    engine: sa.Engine, namespace: str, keys: list[str], data: list[Any], tally: Tally
) -> None:
    # A key twice in one chunk would make the upsert touch a row twice: the last one wins.
    last = dict(zip(keys, data, strict=True))
    duplicates = len(keys) - len(last)
    with engine.begin() as conn:
        fence(conn)
        written = (
            conn.execute(
                _UPSERT, {"namespace": namespace, "keys": list(last), "data": list(last.values())}
            )
            .scalars()
            .all()
        )
    inserted = sum(written)
    tally.counts["inserted"] += inserted
    tally.counts["updated"] += len(written) - inserted
    tally.counts["unchanged"] += len(last) - len(written) + duplicates
    report_progress(sum(tally.counts.values()), message=f"{tally.counts['inserted']} inserted")
