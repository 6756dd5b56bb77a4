"""generate-report: what the jobs of a period did, per type, as CSV or JSON.

For the jobs created in [`from`, `to`) (by default the last 7 days, so `{"format": "csv"}` is
a whole payload): per type, how many there were in each status, the failure rate among those
that finished, and the p50 and p95 of how long a completed job's last attempt ran. The file
is the job's artifact (`GET /jobs/{id}/artifact`); the result says where it is and what it
holds. Read from Warren's own database with one grouped query.
"""

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

from service import artifacts, db
from service.registry import current_job, current_settings, job_type
from service.store.sql import CANCELLED, COMPLETED, FAILED, PENDING, PROCESSING
from service.strict import moment

Time = Annotated[AwareDatetime, BeforeValidator(moment)]
COLUMNS = (
    "type", "total", "pending", "processing", "completed", "failed", "cancelled",
    "failureRate", "p50Seconds", "p95Seconds",
)  # fmt: skip

_REPORT = sa.text(
    f"""
    SELECT type, count(*),
           count(*) FILTER (WHERE status = {PENDING}),
           count(*) FILTER (WHERE status = {PROCESSING}),
           count(*) FILTER (WHERE status = {COMPLETED}),
           count(*) FILTER (WHERE status = {FAILED}),
           count(*) FILTER (WHERE status = {CANCELLED}),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY ran) FILTER (WHERE status = {COMPLETED}),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY ran) FILTER (WHERE status = {COMPLETED})
      FROM (SELECT type, status, extract(epoch FROM completed_at - started_at) AS ran
              FROM jobs WHERE created_at >= :start AND created_at < :end) AS period
     GROUP BY type ORDER BY type
    """
)


#: By default a period is the 7 days before its end.
DEFAULT_DAYS = timedelta(days=7)
#: The earliest `to` whose default period still starts within the calendar.
EARLIEST_END = datetime.min.replace(tzinfo=UTC) + DEFAULT_DAYS


class GenerateReport(BaseModel):
    """`format` (`json` by default, or `csv`), and the period: `from` and `to`."""

    format: Literal["json", "csv"] = "json"
    from_: Time | None = None
    to: Time | None = None

    model_config = ConfigDict(
        alias_generator=lambda name: "from" if name == "from_" else to_camel(name),
        populate_by_name=True,
        extra="forbid",
    )

    @model_validator(mode="after")
    def _a_period(self) -> "GenerateReport":
        if self.from_ is not None and self.to is not None and self.from_ >= self.to:
            raise ValueError("from must be before to")
        if self.to is None and self.from_ is not None and self.from_ >= datetime.now(UTC):
            raise ValueError("from must be in the past, or give to as well")
        if self.from_ is None and self.to is not None and self.to < EARLIEST_END:
            raise ValueError("to must be 7 days after 0001-01-01, or give from as well")
        return self

    def period(self, now: datetime) -> tuple[datetime, datetime]:
        end = self.to or now
        return self.from_ or end - DEFAULT_DAYS, end


@job_type("generate-report", payload=GenerateReport, max_attempts=3, timeout_seconds=600)
def generate_report(payload: GenerateReport) -> dict[str, Any]:
    """Write the report as the job's artifact; return its name, period and size."""
    settings = current_settings()
    start, end = payload.period(datetime.now(UTC))
    with db.job_type_engine(settings.database_url).connect() as conn:
        rows = [_row(*values) for values in conn.execute(_REPORT, {"start": start, "end": end})]
    content = _csv(rows) if payload.format == "csv" else _json(rows, start, end)
    path = artifacts.write(settings, current_job().id, payload.format, content)
    return {
        "artifact": path.name,
        "format": payload.format,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "types": len(rows),
        "bytes": len(content),
    }


def _row(type_: str, total: int, *counts_and_times: Any) -> dict[str, Any]:
    pending, processing, completed, failed, cancelled, p50, p95 = counts_and_times
    finished = completed + failed + cancelled
    return {
        "type": type_,
        "total": total,
        "pending": pending,
        "processing": processing,
        "completed": completed,
        "failed": failed,
        "cancelled": cancelled,
        "failureRate": round(failed / finished, 4) if finished else None,
        "p50Seconds": round(p50, 3) if p50 is not None else None,
        "p95Seconds": round(p95, 3) if p95 is not None else None,
    }


def _csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def _json(rows: list[dict[str, Any]], start: datetime, end: datetime) -> bytes:
    report = {"from": start.isoformat(), "to": end.isoformat(), "types": rows}
    return json.dumps(report, indent=2).encode()
