"""Alembic environment: the app's metadata and database URL, and only Lapak's own tables.

Tables follow ``<module>_<thing>`` (``core_`` for the core), so a table belongs to this history
when its prefix is ``core`` or the name of a module in the ``modules`` package. Anything else in
the database (a test's scratch tables, another application's) is left alone.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import create_engine, pool

import app.demo  # core tables (with app.events below)
import app.events  # noqa: F401 - core tables
from app.config import Settings
from app.db import Base, UTCDateTime
from app.registry import discover, import_models
from app.vault import Sealed

config = context.config
settings: Settings = config.attributes.get("settings") or Settings.from_env()
module_names = []
for discovered in discover(("modules",)).values():
    import_models(discovered.package)
    module_names.append(discovered.manifest.name)
OWN_PREFIXES = tuple(f"{name}_" for name in ["core", *module_names])


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    if type_ == "table":
        return bool(name) and name.startswith(OWN_PREFIXES)
    table = getattr(obj, "table", None)
    return table is None or table.name.startswith(OWN_PREFIXES)


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and isinstance(obj, Sealed):
        return "sa.Text()"  # a Fernet token: the migration needs no vault to run
    return False


def run_migrations() -> None:
    url = config.attributes.get("url") or settings.database_url
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            include_object=include_object,
            render_item=render_item,
            compare_type=True,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
