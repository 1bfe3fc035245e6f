"""The marketplace's settings, read from ``LAPAK_*`` variables and validated at start.

| variable | default |
| --- | --- |
| ``LAPAK_SALES_TAX_PERCENT`` | ``11``: Indonesian PPN, applied to every order line |
| ``LAPAK_MARKETPLACE_TIMEZONE`` | ``Asia/Jakarta``: invoice dates and the numbering year |
| ``LAPAK_INVOICE_DUE_DAYS`` | ``14``: invoice due date after the invoice date |
| ``LAPAK_ORDER_MAX_LINES`` | ``100`` |
| ``LAPAK_ORDER_MAX_QUANTITY`` | ``100000``: per line |
| ``LAPAK_IDEMPOTENCY_KEEP_HOURS`` | ``24``: how long an idempotent answer is kept |
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask, current_app

from app.config import Settings, SettingsError, module_int

DEFAULT_TAX_PERCENT = "11"


@dataclass(frozen=True)
class MarketplaceSettings:
    tax_percent: Decimal
    timezone: ZoneInfo
    due_days: int
    max_lines: int
    max_quantity: Decimal
    idempotency_keep_hours: int

    @classmethod
    def from_settings(cls, settings: Settings) -> MarketplaceSettings:
        env = settings.module_env
        text = env.get("sales_tax_percent", DEFAULT_TAX_PERCENT).strip()
        try:
            tax = Decimal(text)
        except InvalidOperation:
            raise SettingsError(f"LAPAK_SALES_TAX_PERCENT must be a number, not {text!r}") from None
        if not tax.is_finite() or not 0 <= tax < 100 or tax != tax.quantize(Decimal("0.01")):
            raise SettingsError("LAPAK_SALES_TAX_PERCENT must be 0 to 99.99, two decimals at most")
        zone = env.get("marketplace_timezone", "Asia/Jakarta").strip()
        try:
            timezone = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(f"LAPAK_MARKETPLACE_TIMEZONE {zone!r} is not a time zone") from None
        return cls(
            tax_percent=tax,
            timezone=timezone,
            due_days=module_int(env, "invoice_due_days", 14, 0),
            max_lines=module_int(env, "order_max_lines", 100),
            max_quantity=Decimal(module_int(env, "order_max_quantity", 100_000)),
            idempotency_keep_hours=module_int(env, "idempotency_keep_hours", 24),
        )


def install(app: Flask, settings: Settings) -> None:
    app.extensions["marketplace.settings"] = MarketplaceSettings.from_settings(settings)


def marketplace_settings() -> MarketplaceSettings:
    return current_app.extensions["marketplace.settings"]
