"""Sale orders, invoices and payments, Odoo-style."""

from datetime import timedelta

from app.registry import Manifest, ModuleHooks

manifest = Manifest(
    name="marketplace",
    version="0.2.0",
    summary="Sale orders, invoices and payments",
    depends=("user", "auth", "fetch"),
)


def load(hooks: ModuleHooks) -> None:
    from . import api, config, demo, jobs, products

    hooks.setup(config.install)
    hooks.blueprint(api.blp)
    hooks.demo(demo.load_demo)
    hooks.job(products.run_sync)
    hooks.periodic(jobs.forget_idempotency_keys, every=timedelta(hours=1))
