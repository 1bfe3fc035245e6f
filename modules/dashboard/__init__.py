"""The back office's dashboard: per-day rollups kept by outbox subscribers, the figures of a
period (volume, transactions, success rate, refunds, splits, settlement summary) and the recent
transactions, for staff and for each seller's own share."""

from app.registry import Manifest, ModuleHooks

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
    from . import api, cli, rollups

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
