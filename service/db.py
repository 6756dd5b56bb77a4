"""Connections to PostgreSQL and the schema's life: create the database, migrate it."""

import select
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from service.settings import Settings

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x5741_5252  # "WARR": one migrator at a time per database

#: What a lost or unreachable database raises through SQLAlchemy: worth waiting out, not a bug.
UNREACHABLE = (sa.exc.OperationalError, sa.exc.InterfaceError)


def make_engine(settings: Settings, **options: object) -> Engine:
    """The engine every process builds once. Each connection is checked as it leaves the pool
    (`hung_up`, which reads the socket's state and costs no round trip): one that PostgreSQL
    ended while it sat there, in a restart, an idle timeout or by an administrator's hand, is
    replaced before the caller sees it.

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
    sa.event.listen(engine, "checkout", _replace_if_hung_up)
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


def _replace_if_hung_up(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """SQLAlchemy's pre-ping without its round trip: a connection that fails the check is
    replaced by the pool, and the checkout goes on with the new one."""
    if hung_up(dbapi_connection):
        raise sa.exc.DisconnectionError()


def hung_up(dbapi_connection: Any) -> bool:
    """Whether PostgreSQL has ended, or is ending, this idle driver connection.

    Unasked, the server sends an idle connection nothing but the error that ends it and then
    the close, so a socket with anything to read, or hung up, belongs to a connection that is
    gone. (A connection that LISTENs and has a notification waiting reads as ended too: it is
    replaced, which costs a connect and nothing else.) One poll(2) of the socket, about a
    microsecond: the check go-sql-driver/mysql makes before it reuses a connection.

    A server that vanished without closing the socket (its host lost) is not seen here; the
    statement then fails or times out, as it would after a ping."""
    try:
        socket = dbapi_connection.fileno()
    except Exception:  # the driver knows it is closed
        return True
    poller = select.poll()
    poller.register(socket, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


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
            conn.execute(sa.text(f"CREATE DATABASE {_quoted(conn, target.database)}"))
            return True
    finally:
        admin.dispose()


def drop_database(url: str) -> None:
    """Drop the database named in `url`, closing its sessions. Used by tests and benchmarks."""
    target = make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            name = _quoted(conn, target.database)
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    finally:
        admin.dispose()


def _quoted(conn: sa.Connection, name: str | None) -> str:
    """A database's name as an SQL identifier, whatever characters it holds."""
    return conn.dialect.identifier_preparer.quote_identifier(name or "")


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
