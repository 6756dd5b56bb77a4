"""Artifacts: the files jobs write, kept in `WARREN_FILES_DIR` under each job's id.

A job type writes its file with `write()` and names it in its result (`"artifact"`);
`GET /jobs/{id}/artifact` and `Warren.artifact()` serve the file the recorded result names
(`find()`). So the file a person gets is the recorded attempt's: each write makes a new name,
and a worker that lost its lease, or an attempt that was cancelled or failed after writing,
leaves a file no result names. A name is the job's id, a random token and the format's
extension, never anything a caller sent, so no path from a request reaches the file system.
A file is written to a temporary name and renamed, so a reader never sees half of one.

Retention's `sweep()` deletes every file whose job is gone: a pruned job's, and what a killed
worker left of one.
"""

import os
import re
import secrets
import uuid
from collections.abc import Callable, Collection
from pathlib import Path

from service.errors import NotFound
from service.settings import Settings

#: The formats a job may write, and the media type each is served as.
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
#: An artifact's name: the job's id, a token (absent in files written before it was), the format.
_NAME = re.compile(
    r"(?P<job>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    r"(\.[0-9a-f]{16})?\.(?P<format>csv|json)(\.partial)?"
)


def write(settings: Settings, job_id: uuid.UUID | str, extension: str, content: bytes) -> Path:
    """Store `content` as a new file of job `job_id` (`current_job().id`, or a UUID); returns
    its path, whose name the job's result gives as `"artifact"`."""
    if extension not in MEDIA_TYPES:
        raise ValueError(f"artifacts are {', '.join(MEDIA_TYPES)}, not {extension!r}")
    folder = Path(settings.files_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.UUID(str(job_id))}.{secrets.token_hex(8)}.{extension}"
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(content)
    os.replace(partial, path)
    return path


def find(settings: Settings, job_id: uuid.UUID, result: object) -> tuple[Path, str]:
    """The file job `job_id`'s recorded `result` names, and its media type. Raises
    `NotFound` when the result names none, or names one that is not the job's."""
    name = result.get("artifact") if isinstance(result, dict) else None
    match = _NAME.fullmatch(name) if isinstance(name, str) else None
    if match and match["job"] == str(job_id) and not name.endswith(".partial"):
        path = Path(settings.files_dir) / name
        if path.is_file():
            return path, MEDIA_TYPES[match["format"]]
    raise NotFound(f"job {job_id} wrote no file")


def sweep(settings: Settings, existing: Callable[[list[uuid.UUID]], Collection[uuid.UUID]]) -> int:
    """Delete the files, whole or partial, of jobs that `existing` does not name among those
    asked; returns how many were deleted. Files not named as artifacts are left alone."""
    folder = Path(settings.files_dir)
    if not folder.is_dir():
        return 0
    files: dict[uuid.UUID, list[Path]] = {}
    for path in folder.iterdir():
        if match := _NAME.fullmatch(path.name):
            files.setdefault(uuid.UUID(match["job"]), []).append(path)
    kept = set(existing(list(files))) if files else set()
    gone = [path for job_id, paths in files.items() if job_id not in kept for path in paths]
    for path in gone:
        path.unlink(missing_ok=True)
    return len(gone)
