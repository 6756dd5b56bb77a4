"""How the baselines' no-op tasks count their runs, exactly and cheaply.

Each run appends one byte to a file of its worker process (`<dir>/<pid>.count`, one unbuffered
`O_APPEND` write, safe across threads), so the benchmark knows how many ran by summing the
files' sizes, without a shared counter that would slow the workers down. Plain Dramatiq
(`bench.plain`) and Celery (`bench.celeryapp`) count the same way.
"""

import os
import threading
from pathlib import Path

_count_fd: dict[int, int] = {}
_lock = threading.Lock()


def count_run(directory: str) -> None:
    """Count one run in `directory` (opened once per process, then one `write` per run)."""
    pid = os.getpid()
    fd = _count_fd.get(pid)
    if fd is None:
        with _lock:
            fd = _count_fd.get(pid)
            if fd is None:
                path = Path(directory) / f"{pid}.count"
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                _count_fd[pid] = fd
    os.write(fd, b".")


def counted(directory: Path) -> int:
    """How many runs the workers counted in `directory` so far."""
    return sum(path.stat().st_size for path in directory.glob("*.count"))
