"""The marketplace's settings, read from ``LAPAK_*`` variables and validated at start.

| variable | default |
| --- | --- |
| ``LAPAK_SALES_TAX_PERCENT`` | ``11``: Indonesian PPN, applied to every order line |
| ``LAPAK_MARKETPLACE_TIMEZONE`` | ``Asia/Jakarta``: invoice dates and the numbering year |
| ``LAPAK_INVOICE_DUE_DAYS`` | ``14``: invoice due date after the invoice date |
| ``LAPAK_ORDER_MAX_LINES`` | ``100`` |
| ``LAPAK_ORDER_MAX_QUANTITY`` | ``100000``: per line |
| ``LAPAK_IDEMPOTENCY_KEEP_HOURS`` | ``24``: how long an idempotent answer is kept |
| ``LAPAK_COMMISSION_PERCENT`` | ``5``: the platform's cut of a seller's untaxed sales, fixed on |
|   | each invoice when it is posted |
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask, current_app

from app.config import Settings, SettingsError, module_int

DEFAULT_TAX_PERCENT = "11"
DEFAULT_COMMISSION_PERCENT = "5"


@dataclass(frozen=True)
class MarketplaceSettings:
    tax_percent: Decimal
    timezone: ZoneInfo
    due_days: int
    max_lines: int
    max_quantity: Decimal
    idempotency_keep_hours: int
    commission_percent: Decimal = Decimal(DEFAULT_COMMISSION_PERCENT)

    @classmethod
    def from_settings(cls, settings: Settings) -> MarketplaceSettings:
        env = settings.module_env
        tax = _percent(env, "sales_tax_percent", DEFAULT_TAX_PERCENT)
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
            commission_percent=_percent(env, "commission_percent", DEFAULT_COMMISSION_PERCENT),
        )


def _percent(env: dict[str, str], name: str, default: str) -> Decimal:
    variable = f"LAPAK_{name.upper()}"
    text = env.get(name, default).strip()
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise SettingsError(f"{variable} must be a number, not {text!r}") from None
    if not value.is_finite() or not 0 <= value < 100 or value != value.quantize(Decimal("0.01")):
        raise SettingsError(f"{variable} must be 0 to 99.99, two decimals at most")
    return value


def install(app: Flask, settings: Settings) -> None:
    app.extensions["marketplace.settings"] = MarketplaceSettings.from_settings(settings)


def marketplace_settings() -> MarketplaceSettings:
    return current_app.extensions["marketplace.settings"]
