"""Run Alembic from code: ``lapak db upgrade`` and friends, and the tests, share this."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations
from app.config import Settings

MIGRATIONS = Path(migrations.__file__).parent


def alembic_config(settings: Settings, url: str | None = None) -> Config:
    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["settings"] = settings
    config.attributes["url"] = url or settings.database_url
    return config


def upgrade(settings: Settings, revision: str = "head", url: str | None = None) -> None:
    command.upgrade(alembic_config(settings, url), revision)


def downgrade(settings: Settings, revision: str = "-1", url: str | None = None) -> None:
    command.downgrade(alembic_config(settings, url), revision)


def is_up_to_date(settings: Settings) -> bool:
    """True when the database is at the newest revision (``lapak serve`` refuses otherwise)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine, pool

    script = ScriptDirectory.from_config(alembic_config(settings))
    engine = create_engine(settings.database_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()
    return current == set(script.get_heads())
