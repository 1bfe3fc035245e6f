"""The wallet's settings, read from ``LAPAK_*`` variables and validated at start.

| variable | default |
| --- | --- |
| ``LAPAK_WALLET_SIGNUP_CREDIT`` | ``0`` (off): IDR credited once to a customer's first IDR wallet |
| ``LAPAK_WALLET_DAILY_REWARD`` | ``0`` (off): IDR a customer may claim once a day (marketplace |
|   | time zone) into their IDR wallet |
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from flask import Flask, current_app

from app.config import Settings, SettingsError

#: Credits are given in the marketplace's own currency.
CREDIT_CURRENCY = "IDR"
#: A credit above this is a typo, not a promotion (NUMERIC(28,12) holds far more).
MAX_CREDIT = Decimal("1000000000")


@dataclass(frozen=True)
class WalletSettings:
    signup_credit: Decimal
    daily_reward: Decimal

    @classmethod
    def from_settings(cls, settings: Settings) -> WalletSettings:
        env = settings.module_env
        return cls(
            signup_credit=_credit("wallet_signup_credit", env.get("wallet_signup_credit", "0")),
            daily_reward=_credit("wallet_daily_reward", env.get("wallet_daily_reward", "0")),
        )


def _credit(name: str, text: str) -> Decimal:
    variable = f"LAPAK_{name.upper()}"
    text = text.strip()
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise SettingsError(f"{variable} must be an amount in IDR, not {text!r}") from None
    if not value.is_finite() or not 0 <= value <= MAX_CREDIT:
        raise SettingsError(f"{variable} must be 0 (off) to {MAX_CREDIT} IDR")
    if value != value.quantize(Decimal("0.01")):
        raise SettingsError(f"{variable} has two decimals at most")
    return value.quantize(Decimal("0.01"))


def install(app: Flask, settings: Settings) -> None:
    app.extensions["wallet.settings"] = WalletSettings.from_settings(settings)


def wallet_settings() -> WalletSettings:
    return current_app.extensions["wallet.settings"]
