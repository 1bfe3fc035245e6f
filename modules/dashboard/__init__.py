"""The back office's dashboard: per-day rollups kept by outbox subscribers, the figures of a
period (volume, transactions, success rate, refunds, splits, settlement summary) and the recent
transactions, for staff and for each seller's own share; the Dashboard screen at
``/web/dashboard/``."""

from app.registry import Manifest, MenuEntry, ModuleHooks

manifest = Manifest(
    name="dashboard",
    version="0.1.0",
    summary="Dashboard figures and recent transactions from per-day rollups",
    depends=("user", "fetch", "ledger", "marketplace", "payment", "seller"),
    commands=("dashboard",),
)

#: The events that carry the facts the rollups count (see ``rollups``).
TRANSACTION_EVENTS = ("payment.succeeded", "payment.failed", "payment.canceled")


def load(hooks: ModuleHooks) -> None:
    from . import api, cli, rollups, screens

    hooks.scope(
        "dashboard:read",
        "Read the dashboard: figures, recent transactions, settlement summary (a seller: "
        "their own share)",
        roles=("seller", "admin"),
    )
    hooks.blueprint(api.blp)
    hooks.command(cli.dashboard)
    for event in TRANSACTION_EVENTS:
        hooks.subscribe(event, rollups.count_transaction)
    hooks.subscribe("payment.confirmed", rollups.count_payment)
    hooks.subscribe("refund.succeeded", rollups.count_refund)
    # First in the menu: the screen a back-office user lands on after logging in.
    hooks.screens(
        screens.screens,
        MenuEntry("Dashboard", "dashboard_screens.dashboard", frozenset(screens.VIEWERS), order=10),
    )
