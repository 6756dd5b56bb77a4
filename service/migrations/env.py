"""Alembic environment: Warren runs migrations programmatically (`warren db upgrade`), handing
over an open connection in `config.attributes["connection"]`."""

from alembic import context

from service.models import SQLModel

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=SQLModel.metadata)
with context.begin_transaction():
    context.run_migrations()
