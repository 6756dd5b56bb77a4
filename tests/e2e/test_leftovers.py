"""A test run killed before its teardown leaves its database, queues and files behind; the
next run removes them, and never those of a run still going."""

import os
import subprocess
import sys
from pathlib import Path

import pika
import pytest
import sqlalchemy as sa

from service import db
from service.broker import pika_parameters, queue_names
from tests import leftovers
from tests.conftest import ADMIN_DATABASE_URL, declare_queues, delete_queues
from tests.conftest import test_settings as run_settings


def a_dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def database_exists(url: str) -> bool:
    admin = sa.create_engine(ADMIN_DATABASE_URL)
    try:
        with admin.connect() as conn:
            name = sa.engine.make_url(url).database
            query = sa.text("SELECT 1 FROM pg_database WHERE datname = :name")
            return conn.execute(query, {"name": name}).first() is not None
    finally:
        admin.dispose()


def queue_exists(settings, name: str) -> bool:
    connection = pika.BlockingConnection(pika_parameters(settings))
    try:
        connection.channel().queue_declare(name, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker:
        return False
    finally:
        if connection.is_open:
            connection.close()


@pytest.fixture
def killed_run():
    """What a run killed with SIGKILL left: its database, queues and files folder."""
    settings = run_settings(leftovers.run_name(a_dead_pid(), "0dead0"))
    db.create_database(settings.database_url)
    declare_queues(settings)
    Path(settings.files_dir).mkdir(parents=True)
    yield settings
    delete_queues(settings)
    db.drop_database(settings.database_url)


@pytest.fixture
def live_run():
    """A run going on beside this one: its process is this one."""
    settings = run_settings(leftovers.run_name(os.getpid(), "11fe00"))
    db.create_database(settings.database_url)
    Path(settings.files_dir).mkdir(parents=True)
    yield settings
    db.drop_database(settings.database_url)
    Path(settings.files_dir).rmdir()
    Path(settings.files_dir).parent.rmdir()


def test_a_killed_runs_leftovers_are_removed_and_a_live_runs_kept(killed_run, live_run):
    removed = leftovers.sweep(ADMIN_DATABASE_URL, run_settings, delete_queues)

    assert killed_run.queue_prefix in removed
    assert not database_exists(killed_run.database_url)
    assert not any(queue_exists(killed_run, name) for name in queue_names(killed_run))
    assert not Path(killed_run.files_dir).parent.exists()

    assert live_run.queue_prefix not in removed
    assert database_exists(live_run.database_url)
    assert Path(live_run.files_dir).is_dir()
