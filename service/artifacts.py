"""Artifacts: the file a job wrote, kept in `WARREN_FILES_DIR` under the job's id.

A job type writes at most one file per job with `write()`; `GET /jobs/{id}/artifact` and
`Warren.artifact()` find it with `find()`. The name is the job's id and the format's
extension, never anything a caller sent, so no path from a request reaches the file system.
A file is written to a temporary name and renamed, so a reader never sees half of one.
Retention deletes a job's file, or what a killed worker left of it, with the job's row.
"""

import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from service.errors import NotFound
from service.settings import Settings

#: The formats a job may write, and the media type each is served as.
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def write(settings: Settings, job_id: str, extension: str, content: bytes) -> Path:
    """Store `content` as job `job_id`'s artifact; returns its path."""
    if extension not in MEDIA_TYPES:
        raise ValueError(f"artifacts are {', '.join(MEDIA_TYPES)}, not {extension!r}")
    folder = Path(settings.files_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.UUID(job_id)}.{extension}"
    partial = _partial(path)
    partial.write_bytes(content)
    os.replace(partial, path)
    return path


def find(settings: Settings, job_id: uuid.UUID) -> tuple[Path, str]:
    """Job `job_id`'s artifact and its media type. Raises `NotFound`."""
    for extension, media_type in MEDIA_TYPES.items():
        path = Path(settings.files_dir) / f"{job_id}.{extension}"
        if path.is_file():
            return path, media_type
    raise NotFound(f"job {job_id} wrote no file")


def discard(settings: Settings, job_ids: Iterable[object]) -> None:
    """Delete what these jobs wrote, whole or partial; a job that wrote nothing is skipped."""
    folder = Path(settings.files_dir)
    if not folder.is_dir():
        return
    for job_id in job_ids:
        for extension in MEDIA_TYPES:
            path = folder / f"{job_id}.{extension}"
            path.unlink(missing_ok=True)
            _partial(path).unlink(missing_ok=True)


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")
