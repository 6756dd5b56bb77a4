"""What a test run killed before its teardown left behind, removed by the next run.

A run's database, queues and files are named `warren_test_<pid>_<hex>`, after the pytest
process that made them. A run removes them at its end; one killed with SIGKILL (or a machine
that stopped) cannot, so each run starts by removing those of runs whose process is gone. A
run whose process still lives, on this machine, is never touched: two runs side by side stay
apart.
"""

import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from service import db
from service.metrics import process_alive
from service.settings import Settings

PREFIX = "warren_test_"
_NAME = re.compile(rf"^{PREFIX}(\d+)_[0-9a-f]{{6}}$")


def run_name(pid: int, token: str) -> str:
    """The name of a run's database, queue prefix and files folder."""
    return f"{PREFIX}{pid}_{token}"


def sweep(database_url: str, settings_of: Callable[[str], Settings], remove_queues) -> list[str]:
    """Remove the database, queues and files of every run whose process is gone; return
    their names. `settings_of(name)` gives a run's settings, `remove_queues(settings)`
    deletes its queues."""
    names = sorted(set(_databases(database_url)) | set(_folders()))
    dead = [name for name in names if not process_alive(int(_NAME.match(name)[1]))]
    for name in dead:
        settings = settings_of(name)
        db.drop_database(settings.database_url)
        remove_queues(settings)
        shutil.rmtree(Path(tempfile.gettempdir()) / name, ignore_errors=True)
    return dead


def _databases(database_url: str) -> Iterator[str]:
    admin = sa.create_engine(make_url(database_url).set(database="postgres"))
    try:
        with admin.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT datname FROM pg_database WHERE datname LIKE :prefix"),
                {"prefix": f"{PREFIX}%"},
            )
            yield from (name for (name,) in rows if _NAME.match(name))
    finally:
        admin.dispose()


def _folders() -> Iterator[str]:
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        if _NAME.match(path.name):
            yield path.name
