"""Payment providers and their transactions, Odoo-style: adapters, notifications, saved methods."""

from datetime import timedelta

from app.registry import Manifest, ModuleHooks

manifest = Manifest(
    name="payment",
    version="0.1.0",
    summary="Payment providers, provider transactions, a demo gateway and saved methods",
    depends=("user", "fetch", "marketplace", "ledger"),
    settings=("public_url",),
)


def load(hooks: ModuleHooks) -> None:
    from modules.marketplace.payments import set_order_checkout

    from . import adapters, api, checkout, config, demo, demo_history, jobs, services

    adapters.register(adapters.ManualBankTransfer())
    adapters.register(demo.DemoGateway())
    set_order_checkout(services.OrderCheckout())
    hooks.setup(config.install)
    hooks.blueprint(api.blp, "payments")
    hooks.setup(checkout.install)  # the hosted checkout page: HTML, outside the API
    hooks.job(demo.deliver_notification)
    hooks.job(jobs.send_refund)
    hooks.periodic(jobs.expire_transactions, every=timedelta(minutes=1))
    hooks.periodic(jobs.sweep_refunds, every=timedelta(minutes=5))
    hooks.demo_history(demo_history.start_history)
