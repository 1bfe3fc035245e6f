"""Customer wallets: stored value held on the ledger, top-ups through providers, paying from
the wallet, refunds into it, sign-up credit and daily rewards."""

from app.registry import Manifest, ModuleHooks

manifest = Manifest(
    name="wallet",
    version="0.1.0",
    summary="Customer wallets on the ledger: top-ups, payments, refunds, credits, freezing",
    depends=("user", "auth", "marketplace", "ledger", "payment"),
    settings=(
        "wallet_signup_credit",
        "wallet_daily_reward",
        "wallet_top_up_min",
        "wallet_top_up_max",
    ),
)


def load(hooks: ModuleHooks) -> None:
    from modules.ledger import extend
    from modules.payment import adapters
    from modules.payment.transitions import register_settlement

    from . import api, config, paying, top_ups

    adapters.register(paying.WalletAdapter())
    register_settlement(top_ups.KIND, top_ups.settle)
    hooks.setup(config.install)
    extend(hooks, widenings=top_ups.widenings)
    hooks.blueprint(api.blp, prefix="wallets")
    hooks.scope("wallets:read", "Read wallets and their entries", roles=("admin",))
