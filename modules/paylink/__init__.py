"""Payment links: a secret URL, ``/pay/<token>``, through which anyone pays a posted invoice
without an account, through a payment provider; the public pay page and its status."""

from app.registry import Manifest, ModuleHooks

manifest = Manifest(
    name="paylink",
    version="0.1.0",
    summary="Payment links and the public pay page (/pay/<token>) for posted invoices",
    depends=("user", "auth", "fetch", "marketplace", "payment", "seller"),
    settings=(
        "paylink_default_days",
        "paylink_max_days",
        "paylink_max_ip_failures",
        "paylink_failure_window_seconds",
        "paylink_lockout_seconds",
        "paylink_max_lockout_seconds",
        "paylink_merchant_name",
    ),
)


def load(hooks: ModuleHooks) -> None:
    from . import api, config, pages, services

    hooks.setup(config.install)
    hooks.blueprint(api.blp, prefix="paylinks")
    hooks.setup(pages.install)  # the public pay page: HTML, outside the API
    hooks.setup(services.install_print_link)  # the printed invoice's "Pay online" link
    hooks.scope("paylinks:read", "Read payment links", roles=("seller", "admin"))
    hooks.scope("paylinks:write", "Create and revoke payment links", roles=("seller", "admin"))
    hooks.subscribe("payment.succeeded", services.count_payment)
    hooks.subscribe("invoice.paid", services.close_for_paid_invoice)
    hooks.subscribe("invoice.reversed", services.close_for_reversed_invoice)
