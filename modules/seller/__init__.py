"""Sellers: their profiles (display name, contact, KYC review, payout bank account, commission,
payout schedule), how people become sellers (``LAPAK_SELLER_SIGNUP``), their balances (held,
then available) and the settlements that pay them out."""

from datetime import timedelta

from app.registry import Manifest, MenuEntry, ModuleHooks

manifest = Manifest(
    name="seller",
    version="0.1.0",
    summary="Sellers: profiles with KYC review and payout account, balances, settlements, payouts",
    depends=("user", "auth", "marketplace", "ledger"),
    settings=(
        "seller_signup",
        "seller_signup_max_per_ip",
        "seller_signup_window_seconds",
        "settlement_hold_days",
        "settlement_minimum",
        "settlement_payout_adapter",
    ),
)


def load(hooks: ModuleHooks) -> None:
    from flask import Flask

    from app.config import Settings
    from modules.marketplace.commissions import register_commission_source
    from modules.marketplace.issuing import register_issuer_gate, register_seller_names
    from modules.marketplace.products import register_seller_gate

    from . import api, config, demo, jobs, payouts, postings, screens, services

    def install_in_marketplace(app: Flask, _settings: Settings) -> None:
        register_seller_gate(app, services.why_not_selling)
        register_commission_source(app, services.own_commission_percents)
        register_issuer_gate(app, services.why_not_invoicing)
        register_seller_names(app, services.display_names)

    hooks.setup(config.install)
    hooks.setup(payouts.install)
    hooks.setup(install_in_marketplace)
    postings.install(hooks)
    hooks.blueprint(api.blp, prefix="sellers")
    # Every minute: a share becomes available within a minute of its hold's end.
    hooks.periodic(jobs.release_due_holds, every=timedelta(minutes=1))
    hooks.blueprint(api.settlements_blp, prefix="settlements")
    hooks.scope(
        "settlements:read", "Read seller balances and settlements", roles=("seller", "admin")
    )
    hooks.scope(
        "payouts:write",
        "Withdraw (sellers); move settlements on or cancel them",
        roles=("seller", "admin"),
    )
    hooks.periodic(jobs.pay_out_weekly, every=timedelta(hours=1))
    hooks.periodic(jobs.send_automatic_payouts, every=timedelta(minutes=1))
    hooks.demo_history(demo.start_history)
    hooks.screens(
        screens.screens,
        MenuEntry("Balance", "seller_screens.own", frozenset({"seller"}), order=30),
        MenuEntry("Sellers", "seller_screens.sellers", frozenset(services.STAFF_ROLES), order=60),
    )
