"""Alembic environment of the registry database.

The URL comes from `config.attributes["database_url"]` when service.migrate runs the
migrations, and otherwise from the LORAPLEX_* settings, so that `alembic upgrade head` run by
hand migrates the same database as the service.
"""

from pathlib import Path

from alembic import context
from sqlalchemy import create_engine, make_url
from sqlalchemy.pool import NullPool

from service.config import get_settings
from service.registry.models import Base

config = context.config
target_metadata = Base.metadata


def get_database_url() -> str:
    return config.attributes.get("database_url") or get_settings().database_url


def run_migrations_offline() -> None:
    """Write the migration SQL to stdout (`alembic upgrade head --sql`) without a database."""
    url = make_url(get_database_url())
    context.configure(
        url=url,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=url.get_backend_name() == "sqlite",
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Apply the migrations on a connection of their own, closed when they finish."""
    url = make_url(get_database_url())
    connect_args = {}
    if url.get_backend_name() == "sqlite":
        # The API and the worker may hold the file open: wait for their locks instead of failing.
        connect_args = {"timeout": 30}
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)

    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            # SQLite cannot ALTER most of a table in place, so batch mode copies the table.
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                compare_type=True,
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
