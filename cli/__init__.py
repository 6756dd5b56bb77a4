"""`warren`: run the API, the worker and the scheduler; enqueue, inspect and steer jobs.

Human tables by default, `--json` for scripts (the same job JSON as the HTTP API). Exit code 0
on success; on error one line `error: <reason>` on stderr and exit code 1 (2 for usage errors).
Settings come from `WARREN_*` variables, read when a command runs.
"""

import logging
import sys

import typer

# Importing the command modules registers their commands, in the order `--help` lists them.
# isort: off
from cli import processes  # noqa: F401
from cli import jobs  # noqa: F401
from cli import stats  # noqa: F401
from cli import tail  # noqa: F401
from cli import deadletters  # noqa: F401
from cli import mail  # noqa: F401
from cli import retention  # noqa: F401
from cli import schedules  # noqa: F401
from cli import controls  # noqa: F401

# isort: on
from cli.common import app, describe


def main() -> None:
    """The `warren` console script: Warren's errors become one line and exit code 1."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        app()
    except Exception as exc:  # a user sees one line, never a traceback
        typer.echo(f"error: {' '.join(describe(exc).split())}", err=True)
        sys.exit(1)
