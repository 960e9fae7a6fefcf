from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect
from sqlalchemy.pool import NullPool

from service.migrate import (
    check_schema_at_head,
    get_head_revisions,
    make_alembic_config,
    read_current_revisions,
    upgrade_to_head,
)
from service.registry.models import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url, poolclass=NullPool)
    yield engine
    # The Postgres database is shared by the session, so each test leaves it empty.
    if engine.dialect.name == "postgresql":
        command.downgrade(make_alembic_config(database_url), "base")
    engine.dispose()


def test_migrated_schema_matches_models(database_url: str, engine: Engine) -> None:
    upgrade_to_head(database_url)

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)

    assert differences == []


def test_upgrade_to_head_twice(database_url: str, engine: Engine) -> None:
    upgrade_to_head(database_url)
    upgrade_to_head(database_url)

    with engine.connect() as connection:
        assert read_current_revisions(connection) == get_head_revisions()
        assert check_schema_at_head(connection) is None


def test_downgrade_to_base_drops_tables(database_url: str, engine: Engine) -> None:
    upgrade_to_head(database_url)

    command.downgrade(make_alembic_config(database_url), "base")

    with engine.connect() as connection:
        assert set(inspect(connection).get_table_names()) == {"alembic_version"}
        assert check_schema_at_head(connection) == (
            "registry has no schema yet. Run `loraplex migrate`."
        )


def test_check_schema_behind_head(database_url: str, engine: Engine) -> None:
    upgrade_to_head(database_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0000'")

    with engine.connect() as connection:
        reason = check_schema_at_head(connection)

    assert reason == (
        f"registry schema is at revision 0000 but the code expects "
        f"{', '.join(get_head_revisions())}. Run `loraplex migrate`."
    )
    # Put the real revision back, so that the fixture's downgrade can run.
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f"UPDATE alembic_version SET version_num = '{get_head_revisions()[0]}'"
        )


def test_migrations_have_a_single_head() -> None:
    assert len(get_head_revisions()) == 1
