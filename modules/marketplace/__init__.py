"""Sale orders, invoices and payments, Odoo-style."""

from datetime import timedelta

from app.registry import Manifest, MenuEntry, ModuleHooks

manifest = Manifest(
    name="marketplace",
    version="0.2.0",
    summary="Sale orders, invoices and payments",
    depends=("user", "auth", "fetch", "ledger"),
    settings=(
        "sales_tax_percent",
        "marketplace_timezone",
        "invoice_due_days",
        "order_max_lines",
        "order_max_quantity",
        "idempotency_keep_hours",
        "commission_percent",
    ),
)


def load(hooks: ModuleHooks) -> None:
    from . import api, config, demo, jobs, postings, products, screens

    hooks.setup(config.install)
    postings.install(hooks)
    hooks.blueprint(api.blp)
    hooks.screens(
        screens.screens,
        MenuEntry("Orders", "marketplace_screens.orders", frozenset(screens.VIEWERS), order=20),
    )
    # API-key scopes of the views here (payments:* are the payment module's views' too).
    hooks.scope("products:read", "Read products", roles=("seller", "admin"))
    hooks.scope("products:write", "Create and change products", roles=("seller", "admin"))
    hooks.scope("orders:read", "Read sale orders and their invoices", roles=("seller", "admin"))
    hooks.scope("orders:write", "Place and cancel sale orders", roles=("admin",))
    hooks.scope(
        "invoices:write",
        "Write, change, post and cancel invoices without an order",
        roles=("seller", "admin"),
    )
    hooks.scope("payments:read", "Read payments and refunds", roles=("seller", "admin"))
    hooks.scope("payments:write", "Register, confirm and cancel payments; refund", roles=("admin",))
    hooks.demo(demo.load_demo)
    hooks.demo_history(demo.start_history)
    hooks.job(products.run_sync)
    hooks.periodic(jobs.forget_idempotency_keys, every=timedelta(hours=1))
