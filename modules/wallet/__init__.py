"""Customer wallets: stored value held on the ledger, sign-up credit and daily rewards."""

from app.registry import Manifest, ModuleHooks

manifest = Manifest(
    name="wallet",
    version="0.1.0",
    summary="Customer wallets on the ledger: balances, statements, freezing, credits",
    depends=("user", "auth", "marketplace", "ledger"),
    settings=("wallet_signup_credit", "wallet_daily_reward"),
)


def load(hooks: ModuleHooks) -> None:
    from . import api, config

    hooks.setup(config.install)
    hooks.blueprint(api.blp, prefix="wallets")
