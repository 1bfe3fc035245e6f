"""The ledger: an immutable double-entry journal under every money movement."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from app.registry import Manifest, ModuleHooks

if TYPE_CHECKING:
    from .chart import Purpose
    from .operations import Operation

manifest = Manifest(
    name="ledger",
    version="0.1.0",
    summary="Double-entry ledger with a hash chain",
    depends=("user",),
    commands=("ledger",),
)


def load(hooks: ModuleHooks) -> None:
    from . import api, cli, registry

    hooks.setup(registry.install)
    hooks.blueprint(api.blp)
    hooks.command(cli.ledger)


def extend(
    hooks: ModuleHooks,
    *,
    purposes: Iterable[Purpose] = (),
    operations: Iterable[Operation] = (),
    backfill: Callable[[], int] | None = None,
) -> None:
    """Add a module's account purposes, operations and history backfill to the ledger.

    Call from the module's ``load(hooks)``; the module must depend on ``ledger``.
    """
    if "ledger" not in hooks.manifest.depends:
        raise RuntimeError(f"module {hooks.manifest.name!r} extends the ledger: depend on it")
    purposes, operations = tuple(purposes), tuple(operations)

    def install(app, _settings) -> None:  # type: ignore[no-untyped-def]
        from .registry import KEY

        ledger = app.extensions[KEY]
        ledger.add(purposes, operations)
        if backfill is not None:
            ledger.backfills.append((hooks.manifest.name, backfill))

    hooks.setup(install)
