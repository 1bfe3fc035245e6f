"""The seller module's settings, read from ``LAPAK_*`` variables and validated at start.

| variable | default |
| --- | --- |
| ``LAPAK_SELLER_SIGNUP`` | ``closed``: admins make sellers (the user API, role ``seller``); |
|   | ``review``: anyone signs up as a seller, who sells once staff approve their KYC review; |
|   | ``open``: anyone signs up as a seller, who sells at once |
| ``LAPAK_SELLER_SIGNUP_MAX_PER_IP`` | ``10``: sign-ups per client IP in each window, then 429 |
| ``LAPAK_SELLER_SIGNUP_WINDOW_SECONDS`` | ``3600``: the window sign-ups are counted over |

Whatever the mode, withdrawals will need a verified KYC review and a payout bank account.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from app.config import Settings, SettingsError, module_int

from .throttle import SignUpThrottle

SIGN_UP_MODES = ("closed", "review", "open")


@dataclass(frozen=True)
class SellerSettings:
    sign_up: str = "closed"
    sign_up_max_per_ip: int = 10
    sign_up_window_seconds: int = 3600

    @classmethod
    def from_settings(cls, settings: Settings) -> SellerSettings:
        text = settings.module_env.get("seller_signup", "closed").strip().lower()
        if text not in SIGN_UP_MODES:
            raise SettingsError(
                f"LAPAK_SELLER_SIGNUP must be one of {', '.join(SIGN_UP_MODES)} "
                f"(closed: admins make sellers; review: anyone signs up, staff approve; open: "
                f"anyone signs up and sells at once), not {text!r}"
            )
        return cls(
            sign_up=text,
            sign_up_max_per_ip=module_int(settings.module_env, "seller_signup_max_per_ip", 10),
            sign_up_window_seconds=module_int(
                settings.module_env, "seller_signup_window_seconds", 3600
            ),
        )


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
