"""service.db's engines: a pooled connection that PostgreSQL ended while it sat in the pool is
replaced as it is checked out, so the caller's statement never meets it; a database is created
and dropped by its name, whatever characters it holds."""

import sqlalchemy as sa

from service import db


def backend(conn: sa.Connection) -> int:
    return conn.scalar(sa.text("SELECT pg_backend_pid()"))


def end(engine: sa.Engine, pid: int) -> None:
    """What a restart, an idle timeout or an administrator does; returns once it is gone."""
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})


def test_a_pooled_connection_the_server_ended_is_replaced_before_use(settings):
    pooled = db.make_engine(settings, pool_size=1, max_overflow=0)
    admin = db.make_engine(settings)
    try:
        with pooled.connect() as conn:
            first = backend(conn)
        end(admin, first)

        with pooled.connect() as conn:
            second = backend(conn)
    finally:
        pooled.dispose()
        admin.dispose()

    assert second != first


def test_an_idle_pooled_connection_is_kept(settings):
    pooled = db.make_engine(settings, pool_size=1, max_overflow=0)
    try:
        with pooled.connect() as conn:
            first = backend(conn)
        with pooled.connect() as conn:
            second = backend(conn)
    finally:
        pooled.dispose()

    assert second == first


def test_a_database_name_is_an_identifier_whatever_it_holds(settings):
    name = f'{settings.queue_prefix}_x" TEMPLATE template0 --'
    url = sa.make_url(settings.database_url).set(database=name).render_as_string(False)
    try:
        assert db.create_database(url)

        with sa.create_engine(sa.make_url(settings.database_url)).connect() as conn:
            created = conn.scalar(
                sa.text("SELECT datname FROM pg_database WHERE datname = :n"), {"n": name}
            )
        assert created == name  # the whole text is its name, none of it SQL
    finally:
        db.drop_database(url)
