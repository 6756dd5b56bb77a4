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

import csv
import json
from collections.abc import Iterator
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

from service import db, netguard, storable
from service.errors import BadRequest, PermanentError, ValidationFailed
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
                _upsert_all(engine, payload, _records(answer, payload.file_format()), tally)
        except httpx.TransportError as exc:
            raise ConnectionError(f"could not read {payload.url}: {exc}") from exc
    return {**tally.counts, "invalidRecords": tally.invalid}


def _failure(answer: httpx.Response) -> Exception:
    message = f"HTTP {answer.status_code} from {answer.url}"
    return ConnectionError(message) if answer.status_code >= 500 else PermanentError(message)


def _records(answer: httpx.Response, file_format: str) -> Iterator[tuple[int, Any]]:
    """`(number, record)` from the file, a line at a time; a line that is not JSON becomes a
    `ValueError` in place of its record, counted as invalid."""
    lines = answer.iter_lines()
    if file_format == "csv":
        yield from enumerate(csv.DictReader(lines), 1)
        return
    number = 0
    for line in lines:
        if not line.strip():
            continue
        number += 1
        try:
            yield number, json.loads(line)
        except ValueError as exc:
            yield number, ValueError(f"not JSON: {exc}")


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
