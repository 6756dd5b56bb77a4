"""Artifacts: each write is a new file, and the one served is the one the job's recorded
result names; a prune's sweep deletes the files whose job is gone."""

import uuid
from pathlib import Path

import pytest

from service import artifacts
from service.errors import NotFound
from service.settings import Settings

JOB = "5b0c7f3e-7d7e-4d0e-9a55-3f1c2b1f0a11"
OTHER = "0f6b2d9e-2c3a-4b8e-8f1d-6a7c5e4d3b21"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(files_dir=str(tmp_path / "files"))


def test_a_later_write_never_replaces_the_file_the_result_names(settings):
    recorded = artifacts.write(settings, JOB, "csv", b"the recorded attempt's\n")
    artifacts.write(settings, JOB, "csv", b"a worker that lost its lease\n")

    path, media_type = artifacts.find(settings, uuid.UUID(JOB), {"artifact": recorded.name})

    assert path.read_bytes() == b"the recorded attempt's\n"
    assert media_type == "text/csv; charset=utf-8"


def test_a_job_id_may_be_given_as_a_uuid(settings):
    written = artifacts.write(settings, uuid.UUID(JOB), "json", b"{}")  # an AttributeError

    assert artifacts.find(settings, uuid.UUID(JOB), {"artifact": written.name})[0] == written


def test_a_file_named_before_names_had_a_token_is_still_served(settings):
    (old := artifacts.write(settings, JOB, "json", b"{}")).rename(old.with_name(f"{JOB}.json"))

    path, media_type = artifacts.find(settings, uuid.UUID(JOB), {"artifact": f"{JOB}.json"})

    assert path.read_bytes() == b"{}" and media_type == "application/json"


@pytest.mark.parametrize(
    "result",
    [None, {}, "text", {"artifact": 3}, {"artifact": "../../etc/passwd"},
     {"artifact": f"{JOB}.csv.partial"}, {"artifact": f"../{JOB}.csv"},
     {"artifact": f"{JOB}.0123456789abcdef.csv"}],  # the job's name, but no such file
)  # fmt: skip
def test_a_result_that_names_no_file_of_the_job_is_not_found(settings, result):
    artifacts.write(settings, JOB, "csv", b"a,b\n")
    (Path(settings.files_dir) / f"{JOB}.csv.partial").write_bytes(b"half")

    with pytest.raises(NotFound):
        artifacts.find(settings, uuid.UUID(JOB), result)


def test_a_file_of_another_job_is_not_served(settings):
    other = artifacts.write(settings, OTHER, "csv", b"someone else's\n")

    with pytest.raises(NotFound):
        artifacts.find(settings, uuid.UUID(JOB), {"artifact": other.name})


def test_a_sweep_deletes_the_files_of_gone_jobs_whole_or_partial_and_nothing_else(settings):
    kept = artifacts.write(settings, JOB, "csv", b"kept\n")
    gone = artifacts.write(settings, OTHER, "json", b"{}")
    partial = gone.with_name(f"{OTHER}.0123456789abcdef.csv.partial")
    partial.write_bytes(b"half")
    stranger = gone.with_name("notes.txt")
    stranger.write_bytes(b"not Warren's")
    asked = []

    def existing(ids):
        asked.extend(ids)
        return {uuid.UUID(JOB)}

    assert artifacts.sweep(settings, existing) == 2
    assert kept.exists() and stranger.exists()
    assert not gone.exists() and not partial.exists()
    assert sorted(asked) == sorted([uuid.UUID(JOB), uuid.UUID(OTHER)])


def test_a_sweep_of_no_folder_or_no_files_asks_nothing(settings):
    def existing(ids):
        raise AssertionError("asked the database for nothing")

    assert artifacts.sweep(settings, existing) == 0
    artifacts.write(settings, JOB, "csv", b"x").unlink()
    assert artifacts.sweep(settings, existing) == 0
