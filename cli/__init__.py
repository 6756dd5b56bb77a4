"""`warren`: run the API, the worker and the scheduler; enqueue, inspect and steer jobs.

Human tables by default, `--json` for scripts (the same job JSON as the HTTP API). Exit code 0
on success; on error one line `error: <reason>` on stderr and exit code 1 (2 for a command line
that does not parse, which names the `--help` to read).
Settings come from `WARREN_*` variables, read when a command runs.
"""

import logging
import sys
from typing import NoReturn

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
from cli.common import app, describe, say_error


def main() -> None:
    """The `warren` console script. Every error is one line on stderr, never a traceback:
    Warren's errors exit 1, a command line Typer cannot parse exits 2 and names the help to
    read. `warren` alone, or a group alone, prints its help and exits 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        code = typer.main.get_command(app).main(prog_name="warren", standalone_mode=False)
    except typer.Abort:
        fail_with("aborted", 1)
    except Exception as exc:  # a user sees one line, never a traceback
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(2)  # Typer has printed the help
        usage = typer_error(exc)
        if usage is not None:
            fail_with(*usage)
        fail_with(describe(exc), 1)
    # Outside standalone mode a `typer.Exit` comes back as its code; a command returns None.
    sys.exit(code if isinstance(code, int) else 0)


def typer_error(exc: Exception) -> tuple[str, int] | None:
    """The message and exit code of an error Typer raised while it read the command line, or
    None for any other. Newer Typers carry a Click of their own (`typer._click`, private), so
    its errors are known by their shape, as Typer itself knows `NoArgsIsHelpError` by name."""
    code = getattr(exc, "exit_code", None)
    if not isinstance(code, int) or not callable(getattr(exc, "format_message", None)):
        return None
    context = getattr(exc, "ctx", None)
    message = exc.format_message().rstrip(".")
    return (f"{message} (see '{context.command_path} --help')" if context else message), code


def fail_with(reason: str, code: int) -> NoReturn:
    say_error(reason)
    sys.exit(code)
