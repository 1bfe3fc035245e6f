"""Sale orders, invoices and payments, Odoo-style."""

from datetime import timedelta

from app.registry import Manifest, ModuleHooks

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
    from . import api, config, demo, jobs, postings, products

    hooks.setup(config.install)
    postings.install(hooks)
    hooks.blueprint(api.blp)
    hooks.demo(demo.load_demo)
    hooks.job(products.run_sync)
    hooks.periodic(jobs.forget_idempotency_keys, every=timedelta(hours=1))
