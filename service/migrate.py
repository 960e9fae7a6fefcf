"""Alembic migrations of the registry, run from code instead of from an alembic.ini file.

The script location is the installed `migrations` package, so the same code works from a
wheel and from a source checkout. The repository's alembic.ini points at the same folder for
running `alembic` by hand.
"""

import logging
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, make_url, text

import migrations

logger = logging.getLogger(__name__)

# __path__, because an editable install made while migrations/ had no __init__.py maps it as a
# namespace package, and a namespace package's __file__ is None.
MIGRATIONS_DIR = Path(next(iter(migrations.__path__))).resolve()
VERSION_TABLE = "alembic_version"  # alembic's default, which migrations/env.py keeps


def make_alembic_config(database_url: str) -> Config:
    """Build an Alembic config for `database_url` with no alembic.ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    # migrations/env.py reads the URL from here. An attribute, unlike a main option, is not
    # run through configparser interpolation, so a "%" in a password is kept as it is.
    config.attributes["database_url"] = database_url
    return config


def upgrade_to_head(database_url: str) -> None:
    """Apply every migration that `database_url` has not had yet."""
    safe_url = make_url(database_url).render_as_string(hide_password=True)
    logger.info("migrating registry %s to head %s", safe_url, ", ".join(get_head_revisions()))
    command.upgrade(make_alembic_config(database_url), "head")
    logger.info("registry %s is at head", safe_url)


@lru_cache
def get_head_revisions() -> tuple[str, ...]:
    """Return the head revisions of the migration scripts (one unless history has branched)."""
    script = ScriptDirectory.from_config(make_alembic_config(""))
    return tuple(sorted(script.get_heads()))


def read_current_revisions(connection: Connection) -> tuple[str, ...]:
    """Return the revisions recorded in the database's alembic_version table (empty if none)."""
    # Read directly rather than through alembic's MigrationContext, which logs two INFO lines
    # each time and would flood the log of a /readyz probe.
    if not inspect(connection).has_table(VERSION_TABLE):
        return ()
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
    return tuple(sorted(row[0] for row in rows))


def check_schema_at_head(connection: Connection) -> str | None:
    """Return why the registry schema is not at head, or None when it is."""
    current = read_current_revisions(connection)
    heads = get_head_revisions()
    if current == heads:
        return None
    if not current:
        return "registry has no schema yet. Run `loraplex migrate`."
    return (
        f"registry schema is at revision {', '.join(current)} but the code expects "
        f"{', '.join(heads)}. Run `loraplex migrate`."
    )
