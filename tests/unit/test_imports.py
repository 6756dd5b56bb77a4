"""Imports flow one way (DESIGN.md): `service` is the core and imports none of the others;
`api` (HTTP) and `actors` (job types) build on it and never import each other; `cli` (the
`warren` command) builds on `service` and `api`, and nothing imports it. Job modules are
loaded by name (`WARREN_JOB_MODULES`), never imported by the code that runs them.

Checked on the source with `ast`, so an import inside a function counts as much as one at
the top of a module, and nothing is imported to check it."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: What each top-level package must never import.
FORBIDDEN = {
    "service": {"api", "actors", "cli"},
    "api": {"actors", "cli"},
    "actors": {"api", "cli"},
    "cli": {"actors"},
}


def imported_packages(tree: ast.AST) -> list[tuple[str, int]]:
    """The top-level package of every absolute import in `tree`, with its line."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.partition(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.partition(".")[0], node.lineno))
    return found


def violations(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for imported, line in imported_packages(tree):
            if imported in FORBIDDEN[package]:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_flow_one_way(package):
    assert (ROOT / package / "__init__.py").exists()
    assert violations(package) == []


def test_the_check_sees_imports_anywhere_in_a_module():
    tree = ast.parse(
        "import os\nimport api.app as app\nfrom service import db\nfrom . import sibling\n"
        "def f():\n    from actors.send_email import send_email\n"
    )
    assert sorted(imported_packages(tree)) == [
        ("actors", 6),
        ("api", 2),
        ("os", 1),
        ("service", 3),
    ]


def test_the_documented_names_import():
    """README's imports, and the scheduler's old name, keep working."""
    from service.client import Warren
    from service.dispatcher import Dispatcher
    from service.errors import (
        Conflict,
        NotFound,
        PermanentError,
        UnknownJobType,
        ValidationFailed,
        WarrenError,
    )
    from service.registry import current_job, is_cancelled, job_type
    from service.retries import RetryPolicy
    from service.scheduler import Scheduler

    assert Dispatcher is Scheduler
    assert all(issubclass(e, WarrenError) for e in (Conflict, NotFound, UnknownJobType))
    assert issubclass(ValidationFailed, WarrenError)
    assert callable(job_type) and callable(current_job) and callable(is_cancelled)
    assert Warren and PermanentError and RetryPolicy


def test_the_command_line_loads_no_web_framework():
    """`warren` starts in about a second; Falcon would add a tenth to every command."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, cli; print('falcon' in sys.modules)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )

    assert loaded.stdout.strip() == "False"
