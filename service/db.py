"""Connections to PostgreSQL and the schema's life: create the database, migrate it."""

import time
from functools import cache, partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from service.settings import Settings

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x5741_5252  # "WARR": one migrator at a time per database


#: A pooled connection idle this long is checked before it is used again.
IDLE_CHECK_SECONDS = 1.0

#: What a lost or unreachable database raises through SQLAlchemy: worth waiting out, not a bug.
UNREACHABLE = (sa.exc.OperationalError, sa.exc.InterfaceError)


def make_engine(settings: Settings, **options: object) -> Engine:
    """The engine every process builds once. A connection that sat idle in the pool for a
    second or more is checked before use (`_check_if_idle`), so a PostgreSQL restart costs
    one failed statement at most, not a dead pool; one back within the second is not, which
    saves busy processes a round trip per checkout (an enqueue's one of two).

    Statements are planned for each execution (`plan_cache_mode=force_custom_plan`): a jobs
    table swings from empty to millions of rows and back, and a generic plan cached on a
    long-lived connection while it was small (a sequential scan) stays, scanning the whole
    table for every job once it is large. (The worker's group-commit writer, which only looks
    rows up by primary key, keeps generic plans on a connection of its own: see
    `service.groupcommit`.)"""
    options = {
        "pool_size": 10,
        "max_overflow": 20,
        "connect_args": {"options": "-c plan_cache_mode=force_custom_plan"},
        **options,
    }
    engine = sa.create_engine(settings.database_url, **options)
    sa.event.listen(engine, "checkin", _note_checkin)
    sa.event.listen(engine, "checkout", partial(_check_if_idle, engine.dialect))
    return engine


def make_autocommit_engine(settings: Settings, **options: object) -> Engine:
    """An engine for single statements that commit on their own (an enqueue's insert): its
    connections stay in autocommit, so a checkout sets nothing and a checkin resets nothing,
    and they keep the statements they prepared with PostgreSQL's own plan caching (a lookup by
    primary or unique key plans the same at any table size): less client work per enqueue
    than switching a pooled connection of `make_engine` to autocommit and back."""
    return make_engine(
        settings,
        isolation_level="AUTOCOMMIT",
        pool_reset_on_return=None,
        connect_args={},
        **options,
    )


def _note_checkin(dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _check_if_idle(dialect: Any, dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """SQLAlchemy's pre-ping, for connections idle long enough for the server to have gone
    away since (a restart takes seconds): a failed check makes the pool replace the
    connection, and the caller never sees it."""
    checked_in_at = record.info.get("checked_in_at")
    if checked_in_at is None or time.monotonic() - checked_in_at < IDLE_CHECK_SECONDS:
        return
    if not answers(dialect, dbapi_connection):
        raise sa.exc.DisconnectionError()


def answers(dialect: Any, dbapi_connection: Any) -> bool:
    """Whether the server still answers on this driver connection (SQLAlchemy's ping)."""
    try:
        return bool(dialect.do_ping(dbapi_connection))
    except Exception:  # any failure to answer means: replace it
        return False


def create_database(url: str) -> bool:
    """Create the database named in `url` if it does not exist. Returns whether it did."""
    target = make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": target.database},
            )
            if exists:
                return False
            conn.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
            return True
    finally:
        admin.dispose()


def drop_database(url: str) -> None:
    """Drop the database named in `url`, closing its sessions. Used by tests and benchmarks."""
    target = make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
    finally:
        admin.dispose()


def upgrade(settings: Settings) -> None:
    """Create the database if needed and bring its schema to the newest revision.

    Safe to run twice and from several processes at once: migrators queue on an advisory lock.
    """
    from alembic import command  # only migrators pay for importing alembic
    from alembic.config import Config

    create_database(settings.database_url)
    engine = sa.create_engine(settings.database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    finally:
        engine.dispose()


@cache
def job_type_engine(url: str, table: str | None = None, ddl: str | None = None) -> Engine:
    """A small engine, one per process, for a job type that reads Warren's database (a
    report) or keeps data of its own (imported items, crawled pages): its `table` is created
    by `ddl` (`CREATE TABLE IF NOT EXISTS ...`) on first use, the job type's workers queueing
    on an advisory lock to do it."""
    engine = sa.create_engine(url, pool_size=1, max_overflow=1, pool_pre_ping=True)
    if table is None or ddl is None:
        return engine
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": table})
        conn.execute(sa.text(ddl))
    return engine
