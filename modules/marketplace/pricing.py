"""Order arithmetic: line amounts, tax and totals in a currency's minor units, half-up per line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from .models import CURRENCY_PLACES

HUNDRED = Decimal(100)


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Half-up to the currency's minor unit: ``1.005`` -> ``1.01``."""
    return amount.quantize(Decimal(1).scaleb(-CURRENCY_PLACES[currency]), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class LineAmounts:
    subtotal: Decimal
    tax: Decimal
    total: Decimal


@dataclass(frozen=True)
class Totals:
    untaxed: Decimal
    tax: Decimal
    total: Decimal


def line_amounts(
    quantity: Decimal, price_unit: Decimal, tax_percent: Decimal, currency: str
) -> LineAmounts:
    """A line's subtotal and tax, each rounded half-up (Odoo's round-per-line)."""
    subtotal = round_money(quantity * price_unit, currency)
    tax = round_money(subtotal * tax_percent / HUNDRED, currency)
    return LineAmounts(subtotal, tax, subtotal + tax)


def totals(lines: Sequence[LineAmounts]) -> Totals:
    untaxed = sum((line.subtotal for line in lines), Decimal(0))
    tax = sum((line.tax for line in lines), Decimal(0))
    return Totals(untaxed, tax, untaxed + tax)
