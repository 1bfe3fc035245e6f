"""The ledger: an immutable double-entry journal under every money movement."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from app.registry import Manifest, MenuEntry, ModuleHooks

if TYPE_CHECKING:
    from .chart import Purpose
    from .operations import Operation, Widening

manifest = Manifest(
    name="ledger",
    version="0.1.0",
    summary="Double-entry ledger with a hash chain",
    depends=("user",),
    commands=("ledger",),
)


def load(hooks: ModuleHooks) -> None:
    from . import api, cli, registry, screens

    hooks.setup(registry.install)
    hooks.blueprint(api.blp)
    hooks.scope(
        "ledger:read", "Read ledger accounts, entries and the trial balance", ("seller", "admin")
    )
    hooks.command(cli.ledger)
    admins = frozenset({screens.ADMIN})
    hooks.screens(screens.screens, MenuEntry("Ledger", "ledger_screens.accounts", admins, order=70))


def extend(
    hooks: ModuleHooks,
    *,
    purposes: Iterable[Purpose] | Callable[[], Iterable[Purpose]] = (),
    operations: Iterable[Operation] | Callable[[], Iterable[Operation]] = (),
    widenings: Iterable[Widening] | Callable[[], Iterable[Widening]] = (),
    backfill: Callable[[], int] | None = None,
) -> None:
    """Add a module's account purposes, operations and history backfill to the ledger.

    Call from the module's ``load(hooks)``; the module must depend on ``ledger``. ``purposes``
    and ``operations`` may be functions: they are then called when the app is set up, after
    every module has loaded (so a later module can still add, e.g., a payment method whose
    clearing account an earlier module's operation must accept). ``widenings`` let an
    operation already registered (the ledger's own) touch more purposes.
    """
    if "ledger" not in hooks.manifest.depends:
        raise RuntimeError(f"module {hooks.manifest.name!r} extends the ledger: depend on it")
    if not callable(purposes):
        purposes = tuple(purposes)
    if not callable(operations):
        operations = tuple(operations)
    if not callable(widenings):
        widenings = tuple(widenings)

    def install(app, _settings) -> None:  # type: ignore[no-untyped-def]
        from .registry import KEY

        ledger = app.extensions[KEY]
        ledger.add(
            tuple(purposes() if callable(purposes) else purposes),
            tuple(operations() if callable(operations) else operations),
            tuple(widenings() if callable(widenings) else widenings),
        )
        if backfill is not None:
            ledger.backfills.append((hooks.manifest.name, backfill))

    hooks.setup(install)
