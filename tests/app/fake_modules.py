"""Throwaway module packages, written at test time, and settings that need no services.

Registry and HTTP tests need module packages the real ``modules/`` folder does not have (cycles,
duplicates, a manifest-less folder, a module with a blueprint and a model). They are written
under a temporary directory with a unique top-level name each, so two tests never share one in
``sys.modules``. :func:`fake_module_packages` puts the directory on ``sys.path`` and, on exit,
takes it off again and forgets the packages' modules and the tables their models declared.
"""

from __future__ import annotations

import base64
import importlib
import sys
import textwrap
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.db import Base

#: Long enough for production; tests never use the generated development secret by accident.
EMBEDDED_SECRET = "embedded-test-secret-" + "s" * 40
#: A Fernet key, so these apps do not generate (and warn about) one in their instance folder.
EMBEDDED_VAULT_KEY = base64.urlsafe_b64encode(b"embedded-test-vault-key-32bytes!").decode()


def embedded_config(directory: Path, **overrides: Any) -> dict[str, Any]:
    """``create_app`` overrides for an app on SQLite in ``directory``, with no Redis or replicas.

    Every setting the environment or a developer's ``.env`` could change is pinned here.
    """
    return {
        "env": "test",
        "instance_path": directory / "instance",
        "secret_key": EMBEDDED_SECRET,
        "vault_keys": (EMBEDDED_VAULT_KEY,),
        "database_url": f"sqlite:///{directory / 'lapak.db'}",
        "replica_urls": (),
        "redis_url": None,
        "modules": None,
        "module_packages": ("modules",),
        "log_level": "WARNING",
        # These databases are mostly not migrated: the audit module's writer could not store
        # the API log, and would warn about it from its thread after the test.
        "module_env": {"audit_request_log": "off"},
        **overrides,
    }


def manifest_source(
    name: str,
    *,
    depends: tuple[str, ...] = (),
    version: str = "1.0.0",
    commands: tuple[str, ...] = (),
    settings: tuple[str, ...] = (),
    body: str = "",
) -> str:
    """The source of a module's ``__init__.py``: its manifest, then ``body`` (e.g. ``load``)."""
    return (
        "from app.registry import Manifest\n\n"
        f"manifest = Manifest(name={name!r}, version={version!r}, summary={name.title()!r}, "
        f"depends={depends!r}, commands={commands!r}, settings={settings!r})\n\n"
        + textwrap.dedent(body)
    )


class FakeModulePackages:
    """Writes module packages under ``root`` (which must be on ``sys.path`` to import them)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.names: list[str] = []
        root.mkdir(parents=True, exist_ok=True)

    def package(
        self, modules: Mapping[str, str | Mapping[str, str]], package_init: str = ""
    ) -> str:
        """Write a new top-level package holding ``modules``; return its importable name.

        ``modules`` maps a folder name to the source of its ``__init__.py``, or to
        ``{file name: source}`` for a module with more files (``models.py``, ``api.py``...).
        """
        name = f"lapak_fake_{uuid.uuid4().hex[:12]}"
        package_dir = self.root / name
        package_dir.mkdir()
        (package_dir / "__init__.py").write_text(textwrap.dedent(package_init))
        for folder, files in modules.items():
            module_dir = package_dir / folder
            module_dir.mkdir()
            if isinstance(files, str):
                files = {"__init__.py": files}
            for file_name, source in files.items():
                (module_dir / file_name).write_text(textwrap.dedent(source))
        self.names.append(name)
        importlib.invalidate_caches()
        return name


@contextmanager
def fake_module_packages(root: Path) -> Iterator[FakeModulePackages]:
    """A :class:`FakeModulePackages` importable for the duration of the block, then forgotten."""
    sys.path.insert(0, str(root))
    packages = FakeModulePackages(root)
    try:
        yield packages
    finally:
        sys.path.remove(str(root))
        for module_name in list(sys.modules):
            if module_name.split(".")[0] in packages.names:
                del sys.modules[module_name]
        # Only the fakes' tables: real modules first imported inside the block keep theirs.
        for mapper in list(Base.registry.mappers):
            table = mapper.local_table
            if mapper.class_.__module__.split(".")[0] in packages.names and (
                Base.metadata.tables.get(table.name) is table
            ):
                Base.metadata.remove(table)
        importlib.invalidate_caches()
