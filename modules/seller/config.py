"""The seller module's settings, read from ``LAPAK_*`` variables and validated at start.

| variable | default |
| --- | --- |
| ``LAPAK_SELLER_SIGNUP`` | ``closed``: admins make sellers (the user API, role ``seller``); |
|   | ``review``: anyone signs up as a seller, who sells once staff approve their KYC review; |
|   | ``open``: anyone signs up as a seller, who sells at once |
| ``LAPAK_SELLER_SIGNUP_MAX_PER_IP`` | ``10``: sign-ups per client IP in each window, then 429 |
| ``LAPAK_SELLER_SIGNUP_WINDOW_SECONDS`` | ``3600``: the window sign-ups are counted over |
| ``LAPAK_SETTLEMENT_HOLD_DAYS`` | ``7``: a seller's share becomes available this many x 24 h |
|   | after the payment's confirmation |
| ``LAPAK_SETTLEMENT_MINIMUM`` | ``IDR:10000,USD:1``: the smallest withdrawal per currency; a |
|   | currency not named has no settlements |
| ``LAPAK_SETTLEMENT_PAYOUT_ADAPTER`` | ``manual``: how settlements are paid out (staff pay by |
|   | hand and mark them completed or failed) |

Whatever the mode, withdrawals will need a verified KYC review and a payout bank account.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from flask import Flask, current_app

from app.config import Settings, SettingsError, module_int
from modules.marketplace.models import CURRENCY_PLACES

from .throttle import SignUpThrottle

SIGN_UP_MODES = ("closed", "review", "open")
DEFAULT_HOLD_DAYS = 7
DEFAULT_MINIMUM = "IDR:10000,USD:1"
MAX_HOLD_DAYS = 365


@dataclass(frozen=True)
class SellerSettings:
    sign_up: str = "closed"
    sign_up_max_per_ip: int = 10
    sign_up_window_seconds: int = 3600
    hold_days: int = DEFAULT_HOLD_DAYS
    #: currency -> the smallest withdrawal; a currency not here has no settlements.
    settlement_minimum: dict[str, Decimal] = field(
        default_factory=lambda: {"IDR": Decimal("10000.00"), "USD": Decimal("1.00")}
    )
    payout_adapter: str = "manual"

    @property
    def hold(self) -> timedelta:
        """How long a credit to a seller's pending balance waits: whole days of 24 h."""
        return timedelta(days=self.hold_days)

    @classmethod
    def from_settings(cls, settings: Settings) -> SellerSettings:
        env = settings.module_env
        hold_days = module_int(env, "settlement_hold_days", DEFAULT_HOLD_DAYS, minimum=0)
        if hold_days > MAX_HOLD_DAYS:
            raise SettingsError(f"LAPAK_SETTLEMENT_HOLD_DAYS must be at most {MAX_HOLD_DAYS}")
        return cls(
            sign_up=_sign_up(env.get("seller_signup", "closed")),
            sign_up_max_per_ip=module_int(env, "seller_signup_max_per_ip", 10),
            sign_up_window_seconds=module_int(env, "seller_signup_window_seconds", 3600),
            hold_days=hold_days,
            settlement_minimum=_minimums(env.get("settlement_minimum", DEFAULT_MINIMUM)),
            payout_adapter=env.get("settlement_payout_adapter", "manual").strip().lower(),
        )


def _minimums(text: str) -> dict[str, Decimal]:
    """``IDR:10000,USD:1`` -> {"IDR": 10000.00, "USD": 1.00}."""
    minimums: dict[str, Decimal] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        currency, _, amount = item.partition(":")
        currency = currency.strip().upper()
        if currency not in CURRENCY_PLACES or currency in minimums:
            raise SettingsError(
                f"LAPAK_SETTLEMENT_MINIMUM: {currency!r} is not one of "
                f"{', '.join(sorted(CURRENCY_PLACES))} (once each), as in {DEFAULT_MINIMUM}"
            )
        try:
            value = Decimal(amount.strip())
        except InvalidOperation:
            value = Decimal(-1)
        places = Decimal(1).scaleb(-CURRENCY_PLACES[currency])
        if not value.is_finite() or value <= 0 or value != value.quantize(places):
            raise SettingsError(
                f"LAPAK_SETTLEMENT_MINIMUM: the {currency} minimum must be a positive amount "
                f"with at most {CURRENCY_PLACES[currency]} decimals, as in {DEFAULT_MINIMUM}"
            )
        minimums[currency] = value.quantize(Decimal("0.01"))
    return minimums


def _sign_up(raw: str) -> str:
    text = raw.strip().lower()
    if text not in SIGN_UP_MODES:
        raise SettingsError(
            f"LAPAK_SELLER_SIGNUP must be one of {', '.join(SIGN_UP_MODES)} "
            f"(closed: admins make sellers; review: anyone signs up, staff approve; open: "
            f"anyone signs up and sells at once), not {text!r}"
        )
    return text


def install(app: Flask, settings: Settings) -> None:
    seller = SellerSettings.from_settings(settings)
    jobs = app.extensions["lapak.jobs"]
    app.extensions["seller.settings"] = seller
    app.extensions["seller.sign_up_throttle"] = SignUpThrottle(
        seller.sign_up_max_per_ip, seller.sign_up_window_seconds, jobs.redis, jobs.outage
    )


def seller_settings() -> SellerSettings:
    return current_app.extensions["seller.settings"]


def sign_up_throttle() -> SignUpThrottle:
    return current_app.extensions["seller.sign_up_throttle"]
