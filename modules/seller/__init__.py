"""Sellers: their profiles (display name, contact, KYC review, payout bank account, commission,
payout schedule) and how people become sellers (``LAPAK_SELLER_SIGNUP``)."""

from app.registry import Manifest, ModuleHooks

manifest = Manifest(
    name="seller",
    version="0.1.0",
    summary="Seller profiles: KYC review, payout bank account, commission, payout schedule",
    depends=("user", "auth", "marketplace", "ledger"),
    settings=("seller_signup", "seller_signup_max_per_ip", "seller_signup_window_seconds"),
)


def load(hooks: ModuleHooks) -> None:
    from flask import Flask

    from app.config import Settings
    from modules.marketplace.commissions import register_commission_source
    from modules.marketplace.products import register_seller_gate

    from . import api, config, services

    def install_in_marketplace(app: Flask, _settings: Settings) -> None:
        register_seller_gate(app, services.why_not_selling)
        register_commission_source(app, services.own_commission_percents)

    hooks.setup(config.install)
    hooks.setup(install_in_marketplace)
    hooks.blueprint(api.blp, prefix="sellers")
