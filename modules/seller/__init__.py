"""Sellers: their profiles (display name, contact, KYC review, payout bank account, commission,
payout schedule) and how people become sellers (``LAPAK_SELLER_SIGNUP``)."""

from app.registry import Manifest, ModuleHooks

manifest = Manifest(
    name="seller",
    version="0.1.0",
    summary="Seller profiles: KYC review, payout bank account, commission, payout schedule",
    depends=("user", "auth", "marketplace", "ledger"),
    settings=("seller_signup",),
)


def load(hooks: ModuleHooks) -> None:
    from modules.marketplace.products import register_seller_gate

    from . import api, config, services

    hooks.setup(config.install)
    hooks.setup(lambda app, _settings: register_seller_gate(app, services.why_not_selling))
    hooks.blueprint(api.blp, prefix="sellers")
