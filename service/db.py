"""Connections to PostgreSQL and the schema's life: create the database, migrate it."""

from functools import cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from service.settings import Settings

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x5741_5252  # "WARR": one migrator at a time per database


def make_engine(settings: Settings, **options: object) -> Engine:
    """The engine every process builds once. Connections are checked before use, so a
    PostgreSQL restart costs one failed statement at most, not a dead pool.

    Statements are planned for each execution (`plan_cache_mode=force_custom_plan`): a jobs
    table swings from empty to millions of rows and back, and a generic plan cached on a
    long-lived connection while it was small (a sequential scan) stays, scanning the whole
    table for every job once it is large. (The worker's group-commit writer, which only looks
    rows up by primary key, keeps generic plans on a connection of its own: see
    `service.groupcommit`.)"""
    options = {
        "pool_pre_ping": True,
        "pool_size": 10,
        "max_overflow": 20,
        "connect_args": {"options": "-c plan_cache_mode=force_custom_plan"},
        **options,
    }
    return sa.create_engine(settings.database_url, **options)


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
