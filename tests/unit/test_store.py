"""The job store is the one writer of the job tables: no code outside `service/store/` (and
the migrations that create the tables) inserts, updates or deletes rows of `jobs`,
`job_attempts`, `dead_letters` or the kept counts.

Checked on the source: a SQL write naming one of those tables, or a SQLAlchemy
`insert`/`update`/`delete` construct, anywhere else fails the test. So does a job status
spelled as an SQL literal outside the migrations."""

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from service.models import JobStatus

ROOT = Path(__file__).resolve().parents[2]
TABLES = (
    r"(jobs|job_attempts|dead_letters|schedules|job_counts|job_count_deltas|job_minutes"
    r"|pauses|processes)"
)
WRITES = re.compile(
    rf"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM|TRUNCATE)\s+{TABLES}\b"
    r"|\b(sa|sqlalchemy)\.(insert|update|delete)\("
    r"|\bpg_insert\(",
    re.IGNORECASE,
)
ALLOWED = ("service/store/", "service/migrations/")


def sources(skipped: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """`(path, text)` of each module of the code, but those under the `skipped` folders."""
    for package in ("service", "api", "actors", "cli"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if not name.startswith(skipped):
                yield name, path.read_text()


def writes_outside_the_store() -> list[str]:
    found = []
    for name, text in sources(ALLOWED):
        for number, line in enumerate(text.splitlines(), 1):
            if WRITES.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    return found


def test_only_the_store_writes_the_job_tables():
    assert writes_outside_the_store() == []


def test_the_check_sees_each_kind_of_write():
    for line in (
        "UPDATE jobs SET status = 'failed'",
        "insert into job_attempts (id) values (1)",
        "DELETE FROM dead_letters WHERE true",
        "conn.execute(sa.update(table).values(x=1))",
        "pg_insert(dead_letters)",
    ):
        assert WRITES.search(line), line
    assert not WRITES.search("SELECT * FROM jobs WHERE status = 'pending'")


# -- statuses: named from the enum, never spelled in SQL by hand ------------------------------

STATUS_LITERAL = re.compile(rf"'({'|'.join(JobStatus)})'")


def status_literals() -> list[str]:
    """Every string of the code (not comments) that spells a job status as an SQL literal."""
    found = []
    for name, text in sources(("service/migrations/",)):
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found += [
                    f"{name}:{node.lineno}: {match.group()}"
                    for match in STATUS_LITERAL.finditer(node.value)
                ]
    return found


def test_sql_names_statuses_from_the_enum():
    """A status in a statement comes from `JobStatus` (`store.sql.PENDING` and its kind), so
    the vocabulary lives in one place and a renamed status cannot leave a statement behind."""
    assert status_literals() == []
