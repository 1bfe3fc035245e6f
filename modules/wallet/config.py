"""The wallet's settings, read from ``LAPAK_*`` variables and validated at start.

| variable | default |
| --- | --- |
| ``LAPAK_WALLET_SIGNUP_CREDIT`` | ``0`` (off): IDR credited once to a customer's first IDR wallet |
| ``LAPAK_WALLET_DAILY_REWARD`` | ``0`` (off): IDR a customer may claim once a day (marketplace |
|   | time zone) into their IDR wallet |
| ``LAPAK_WALLET_TOP_UP_MIN`` | ``IDR:10000,USD:1``: the smallest top-up per currency |
| ``LAPAK_WALLET_TOP_UP_MAX`` | ``IDR:20000000,USD:1500``: the largest top-up per currency; a |
|   | currency named in neither takes no top-up |
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from flask import Flask, current_app

from app.config import Settings, SettingsError
from modules.marketplace.models import CURRENCY_PLACES

#: Credits are given in the marketplace's own currency.
CREDIT_CURRENCY = "IDR"
#: A credit above this is a typo, not a promotion (NUMERIC(28,12) holds far more).
MAX_CREDIT = Decimal("1000000000")


DEFAULT_TOP_UP_MIN = "IDR:10000,USD:1"
DEFAULT_TOP_UP_MAX = "IDR:20000000,USD:1500"


@dataclass(frozen=True)
class WalletSettings:
    signup_credit: Decimal
    daily_reward: Decimal
    #: currency -> (smallest, largest) top-up.
    top_up_limits: dict[str, tuple[Decimal, Decimal]]

    @classmethod
    def from_settings(cls, settings: Settings) -> WalletSettings:
        env = settings.module_env
        low_text = env.get("wallet_top_up_min", DEFAULT_TOP_UP_MIN)
        high_text = env.get("wallet_top_up_max", DEFAULT_TOP_UP_MAX)
        smallest = _per_currency("wallet_top_up_min", low_text)
        largest = _per_currency("wallet_top_up_max", high_text)
        if set(smallest) != set(largest):
            raise SettingsError(
                "LAPAK_WALLET_TOP_UP_MIN and LAPAK_WALLET_TOP_UP_MAX must name the same currencies"
            )
        limits = {}
        for currency, low in smallest.items():
            if not 0 < low <= largest[currency]:
                raise SettingsError(
                    f"the {currency} top-up minimum must be above 0 and at most its maximum"
                )
            limits[currency] = (low, largest[currency])
        return cls(
            signup_credit=_credit("wallet_signup_credit", env.get("wallet_signup_credit", "0")),
            daily_reward=_credit("wallet_daily_reward", env.get("wallet_daily_reward", "0")),
            top_up_limits=limits,
        )


def _per_currency(name: str, text: str) -> dict[str, Decimal]:
    """``IDR:10000,USD:1`` -> {"IDR": 10000.00, "USD": 1.00}."""
    variable = f"LAPAK_{name.upper()}"
    amounts: dict[str, Decimal] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        currency, _, amount = item.partition(":")
        currency = currency.strip().upper()
        if currency not in CURRENCY_PLACES or currency in amounts:
            raise SettingsError(
                f"{variable}: {currency!r} is not one of {', '.join(sorted(CURRENCY_PLACES))} "
                "(once each), as in IDR:10000,USD:1"
            )
        amounts[currency] = _amount(variable, amount, currency)
    return amounts


def _amount(variable: str, text: str, currency: str) -> Decimal:
    text = text.strip()
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise SettingsError(f"{variable}: {text!r} is not an amount in {currency}") from None
    if not value.is_finite() or not 0 <= value <= MAX_CREDIT:
        raise SettingsError(f"{variable}: {currency} amounts are 0 to {MAX_CREDIT}")
    if value != value.quantize(Decimal("0.01")):
        raise SettingsError(f"{variable}: {currency} amounts have two decimals at most")
    return value.quantize(Decimal("0.01"))


def _credit(name: str, text: str) -> Decimal:
    return _amount(f"LAPAK_{name.upper()}", text, CREDIT_CURRENCY)


def install(app: Flask, settings: Settings) -> None:
    app.extensions["wallet.settings"] = WalletSettings.from_settings(settings)


def wallet_settings() -> WalletSettings:
    return current_app.extensions["wallet.settings"]
