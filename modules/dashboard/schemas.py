"""What crosses the HTTP boundary for the dashboard. Money is decimal strings, never a float."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import marshmallow as ma

from app.dumping import fast_dump
from app.http import PageArgs, page_schema
from modules.fetch.schemas import Amount
from modules.payment.models import TRANSACTION_STATES

from .services import MAX_DAYS, DayFigures, Figures, ProviderFigures, Stats

CURRENCY = ma.fields.String(
    load_default=None,
    validate=ma.validate.Regexp(r"^[A-Z]{3}$", error="an ISO 4217 code in capitals, like IDR"),
    metadata={"description": "ISO 4217 code; default IDR", "example": "IDR"},
)


# -- requests -----------------------------------------------------------------------------------


class DashboardStatsQuerySchema(ma.Schema):
    since = ma.fields.Date(
        data_key="from",
        load_default=None,
        metadata={"description": "First day (marketplace time zone); default: 29 days before to"},
    )
    until = ma.fields.Date(
        data_key="to",
        load_default=None,
        metadata={
            "description": f"Last day, included; default today. At most {MAX_DAYS} days from from"
        },
    )
    currency = CURRENCY


class DashboardTransactionQuerySchema(PageArgs):
    state = ma.fields.String(load_default=None, validate=ma.validate.OneOf(TRANSACTION_STATES))
    provider = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=32),
        metadata={"description": "A provider's code, or a payment method (cash)"},
    )
    currency = CURRENCY


# -- answers --------------------------------------------------------------------------------------


class DashboardFiguresSchema(ma.Schema):
    transactions = ma.fields.Integer(
        metadata={
            "description": "Provider transactions that reached a final state and payments "
            "confirmed by staff: succeeded + failed + canceled + manual"
        }
    )
    succeeded = ma.fields.Integer(metadata={"description": "Provider transactions: success"})
    failed = ma.fields.Integer(metadata={"description": "Provider transactions: failed"})
    canceled = ma.fields.Integer(
        metadata={"description": "Provider transactions given up by the payer or expired"}
    )
    manual = ma.fields.Integer(
        metadata={
            "description": "Payments made without a provider (bank transfer, cash) that staff "
            "confirmed; not in the success rate"
        }
    )
    volume = Amount(
        metadata={"description": "Money in: successes and manual payments (a seller: their share)"}
    )
    fees = Amount(
        metadata={"description": "Providers' fees on it (a seller: the commission on their share)"}
    )
    refunds = ma.fields.Integer(metadata={"description": "Refunds whose money went back"})
    refunded = Amount(metadata={"description": "Their amount (a seller: their share)"})


class DashboardDayFiguresSchema(DashboardFiguresSchema):
    day = ma.fields.Date()


class DashboardProviderFiguresSchema(DashboardFiguresSchema):
    provider = ma.fields.String(metadata={"example": "demo"})


class DashboardStatusCountSchema(ma.Schema):
    state = ma.fields.String(metadata={"enum": ["success", "failed", "canceled", "manual"]})
    count = ma.fields.Integer()


class DashboardTallySchema(ma.Schema):
    count = ma.fields.Integer()
    amount = Amount()


class DashboardSettlementSummarySchema(ma.Schema):
    pending = Amount(metadata={"description": "Sellers' shares on hold"})
    available = Amount(metadata={"description": "Sellers' shares they may withdraw"})
    owed = Amount(metadata={"description": "What sellers owe back (refunds after a payout)"})
    next_release_at = ma.fields.DateTime(
        allow_none=True, metadata={"description": "A seller's next release; null for staff"}
    )
    next_payout_on = ma.fields.Date(
        allow_none=True, metadata={"description": "A seller's next weekly payout day, or null"}
    )
    payouts = ma.fields.Nested(
        DashboardTallySchema, metadata={"description": "Settlements completed in the period"}
    )
    in_flight = ma.fields.Nested(
        DashboardTallySchema, metadata={"description": "Settlements pending or processing now"}
    )


class DashboardStatsSchema(ma.Schema):
    since = ma.fields.Date(data_key="from")
    until = ma.fields.Date(data_key="to")
    currency = ma.fields.String(metadata={"example": "IDR"})
    scope = ma.fields.String(
        metadata={
            "enum": ["platform", "seller"],
            "description": "platform: every sale (staff); seller: the caller's share",
        }
    )
    totals = ma.fields.Nested(DashboardFiguresSchema)
    success_rate = Amount(
        places=4,
        metadata={
            "description": "succeeded / (succeeded + failed) over provider transactions, 0 to 1 "
            "(canceled and manual payments left out); null when there is neither"
        },
    )
    average = Amount(metadata={"description": "volume / (succeeded + manual); null when neither"})
    daily = ma.fields.List(
        ma.fields.Nested(DashboardDayFiguresSchema),
        metadata={"description": "Every day, zeros included"},
    )
    providers = ma.fields.List(ma.fields.Nested(DashboardProviderFiguresSchema))
    statuses = ma.fields.List(ma.fields.Nested(DashboardStatusCountSchema))
    settlement = ma.fields.Nested(DashboardSettlementSummarySchema)


class DashboardTransactionSchema(ma.Schema):
    payment = ma.fields.UUID(metadata={"description": "The accounting payment"})
    transaction = ma.fields.UUID(
        allow_none=True, metadata={"description": "Its provider transaction; null without one"}
    )
    reference = ma.fields.String(
        allow_none=True, metadata={"example": "TX/2026/00001", "description": "TX/ or PAY/"}
    )
    payment_number = ma.fields.String(allow_none=True, metadata={"example": "PAY/2026/00001"})
    invoice_number = ma.fields.String(allow_none=True, metadata={"example": "INV/2026/00001"})
    provider = ma.fields.String(metadata={"example": "demo"})
    method = ma.fields.String(metadata={"example": "demo"})
    state = ma.fields.String(metadata={"enum": list(TRANSACTION_STATES)})
    amount = Amount()
    fee = Amount()
    currency = ma.fields.String()
    customer = ma.fields.UUID(
        allow_none=True, metadata={"description": "null: a payer without an account"}
    )
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


DashboardTransactionPageSchema = page_schema(DashboardTransactionSchema)


# -- the stats, dumped -----------------------------------------------------------------------------

CENT = Decimal("0.01")
RATE = Decimal("0.0001")
_DUMP_SETTLEMENT = fast_dump(DashboardSettlementSummarySchema())


def dump_stats(stats: Stats) -> dict[str, Any]:
    """``DashboardStatsSchema().dump(stats)``, written out (a test holds them equal, field for
    field). A year's answer has some 3,700 fields, nine in each of 365 days: marshmallow's
    work per field, even through :func:`~app.dumping.fast_dump`, cost more than reading the
    rollups. Money as :class:`~modules.fetch.schemas.Amount` writes it (two places, half up)."""
    return {
        "from": stats.since.isoformat(),
        "to": stats.until.isoformat(),
        "currency": stats.currency,
        "scope": stats.scope,
        "totals": _figures(stats.totals),
        "success_rate": _amount(stats.success_rate, RATE),
        "average": _amount(stats.average, CENT),
        "daily": [_day(figures) for figures in stats.daily],
        "providers": [_provider(figures) for figures in stats.providers],
        "statuses": [{"state": status.state, "count": status.count} for status in stats.statuses],
        "settlement": _DUMP_SETTLEMENT(stats.settlement),
    }


def _figures(figures: Figures) -> dict[str, Any]:
    return {
        "transactions": figures.transactions,
        "succeeded": figures.succeeded,
        "failed": figures.failed,
        "canceled": figures.canceled,
        "manual": figures.manual,
        "volume": _money(figures.volume),
        "fees": _money(figures.fees),
        "refunds": figures.refunds,
        "refunded": _money(figures.refunded),
    }


def _day(figures: DayFigures) -> dict[str, Any]:
    shown = _figures(figures)
    shown["day"] = figures.day.isoformat()
    return shown


def _provider(figures: ProviderFigures) -> dict[str, Any]:
    shown = _figures(figures)
    shown["provider"] = figures.provider
    return shown


def _money(value: Decimal) -> str:
    return format(value.quantize(CENT, ROUND_HALF_UP), "f")


def _amount(value: Decimal | None, places: Decimal) -> str | None:
    return None if value is None else format(value.quantize(places, ROUND_HALF_UP), "f")
