"""`service.sealing`: secret payload fields are encrypted at rest, bound to their job and
field, and shown as "[secret]"."""

import json

import pytest

from service import sealing
from service.errors import PermanentError

KEY = sealing.new_key()
HEADERS = {"Authorization": "Bearer s3cr3t"}


def test_a_sealed_field_holds_no_clear_text_and_opens_for_its_job():
    sealed = sealing.seal({"url": "https://x.example", "headers": HEADERS}, ["headers"], KEY, "j1")

    assert "s3cr3t" not in json.dumps(sealed)
    assert sealed["url"] == "https://x.example"
    assert sealing.unseal(sealed, ["headers"], KEY, "j1")["headers"] == HEADERS


def test_a_sealed_field_shows_as_secret():
    sealed = sealing.seal({"headers": HEADERS, "n": 1}, ["headers"], KEY, "j1")

    assert sealing.redacted(sealed) == {"headers": "[secret]", "n": 1}


@pytest.mark.parametrize(
    ("key", "job_id", "fields"),
    [
        (sealing.new_key(), "j1", ["headers"]),  # another key
        (KEY, "j2", ["headers"]),  # copied into another job
        (None, "j1", ["headers"]),  # no key at all
    ],
)
def test_a_field_this_process_cannot_open_fails_for_good(key, job_id, fields):
    sealed = sealing.seal({"headers": HEADERS}, ["headers"], KEY, "j1")

    with pytest.raises(PermanentError):
        sealing.unseal(sealed, fields, key, job_id)


def test_a_token_moved_to_another_field_does_not_open():
    sealed = sealing.seal({"headers": HEADERS}, ["headers"], KEY, "j1")

    with pytest.raises(PermanentError):
        sealing.unseal({"other": sealed["headers"]}, ["other"], KEY, "j1")


def test_only_the_job_types_secret_fields_are_opened():
    sealed = sealing.seal({"headers": HEADERS}, ["headers"], KEY, "j1")
    planted = {"body": sealed["headers"]}  # a sealed value sent where no secret belongs

    assert sealing.unseal(planted, ["headers"], KEY, "j1") == planted


def test_without_a_key_a_secret_is_kept_in_clear_but_never_shown():
    sealed = sealing.seal({"headers": HEADERS}, ["headers"], None, "j1")

    assert sealing.redacted(sealed) == {"headers": "[secret]"}
    assert sealing.unseal(sealed, ["headers"], None, "j1") == {"headers": HEADERS}
