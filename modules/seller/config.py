"""The seller module's settings, read from ``LAPAK_*`` variables and validated at start.

| variable | default |
| --- | --- |
| ``LAPAK_SELLER_SIGNUP`` | ``closed``: admins make sellers (the user API, role ``seller``); |
|   | ``review``: anyone signs up as a seller, who sells once staff approve their KYC review; |
|   | ``open``: anyone signs up as a seller, who sells at once |

Whatever the mode, withdrawals will need a verified KYC review and a payout bank account.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from app.config import Settings, SettingsError

SIGN_UP_MODES = ("closed", "review", "open")


@dataclass(frozen=True)
class SellerSettings:
    sign_up: str = "closed"

    @classmethod
    def from_settings(cls, settings: Settings) -> SellerSettings:
        text = settings.module_env.get("seller_signup", "closed").strip().lower()
        if text not in SIGN_UP_MODES:
            raise SettingsError(
                f"LAPAK_SELLER_SIGNUP must be one of {', '.join(SIGN_UP_MODES)} "
                f"(closed: admins make sellers; review: anyone signs up, staff approve; open: "
                f"anyone signs up and sells at once), not {text!r}"
            )
        return cls(sign_up=text)


def install(app: Flask, settings: Settings) -> None:
    app.extensions["seller.settings"] = SellerSettings.from_settings(settings)


def seller_settings() -> SellerSettings:
    return current_app.extensions["seller.settings"]
