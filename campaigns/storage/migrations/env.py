"""Alembic environment: migrate on the connection the store hands over.

`campaigns.store` builds the alembic Config in code and passes its open connection in
`config.attributes["connection"]`, already inside a transaction it commits itself. For a
developer's `alembic` command line (e.g. `alembic revision --autogenerate`) a URL in
`sqlalchemy.url` or DRIPMAIL_DATABASE_URL is used instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from campaigns.storage.store import database_url
from campaigns.storage.tables import metadata

config = context.config


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters tables by copying them; batch mode makes later migrations portable.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(config.get_main_option("sqlalchemy.url")),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():  # a no-op inside the store's transaction
            context.run_migrations()
        return
    url = database_url(config.get_main_option("sqlalchemy.url"))
    engine = create_engine(url, hide_parameters=True)  # errors show no stored values
    with engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
