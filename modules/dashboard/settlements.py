"""The dashboard's settlement summary: what sellers hold and what was paid out.

Staff see every seller's balances summed (the ledger's ``seller_pending``, ``seller_available``
and ``seller_receivable`` accounts in the currency) and every settlement; a seller their own
balances (the seller module's :func:`~modules.seller.balances.balance`, with their next release
and payout) and their own settlements. ``payouts`` are the settlements completed within the
period, ``in_flight`` those pending or processing now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Select, and_, bindparam, case, cast, func, or_, select, true

from app.db import DriverStatement, Session
from modules.ledger.models import Account
from modules.marketplace.config import marketplace_settings
from modules.seller.balances import balance
from modules.seller.models import Settlement

from .facts import from_minor

IN_FLIGHT = ("pending", "processing")
HELD_PURPOSES = ("seller_pending", "seller_available", "seller_receivable")


@dataclass(frozen=True)
class Tally:
    count: int
    amount: Decimal


@dataclass(frozen=True)
class SettlementSummary:
    pending: Decimal
    available: Decimal
    #: What sellers owe back (a refund after a payout), netted from their next shares.
    owed: Decimal
    #: A seller's next release and scheduled payout; None for staff (every seller's differ).
    next_release_at: datetime | None
    next_payout_on: date | None
    payouts: Tally
    in_flight: Tally


def summary(seller_id: int | None, currency: str, since: date, until: date) -> SettlementSummary:
    """``seller_id``'s summary, or every seller's (None), for the days ``since``..``until``."""
    zone = marketplace_settings().timezone
    params: dict[str, Any] = {
        "currency": currency,
        "start": datetime.combine(since, time(), zone),
        "end": datetime.combine(until + timedelta(days=1), time(), zone),
    }
    if seller_id is not None:
        params["seller_id"] = seller_id
        ((paid_out, paid_amount, flying, flying_amount),) = _SELLER_TALLIES.rows(
            Session().connection(), params
        )
        own = balance(seller_id, currency)
        return SettlementSummary(
            own.pending, own.available, own.owed, own.next_release_at, own.next_payout_on,
            _tally(paid_out, paid_amount), _tally(flying, flying_amount),
        )  # fmt: skip
    # Every seller's: the tallies and the balances in one statement.
    ((paid_out, paid_amount, flying, flying_amount, *held),) = _SELLERS_SUMMARY.rows(
        Session().connection(), params
    )
    pending, available, owed = (from_minor(amount) for amount in held)
    return SettlementSummary(
        pending, available, owed, None, None,
        _tally(paid_out, paid_amount), _tally(flying, flying_amount),
    )  # fmt: skip


def _tally(count: int | None, hundredths: int | None) -> Tally:
    return Tally(int(count or 0), from_minor(hundredths or 0))


def exact_sum(column: Any) -> Any:
    """The sum of a two-place money column in hundredths, exact on SQLite too (which would
    add NUMERIC as floats): each value is made an integer before it is added."""
    return func.coalesce(func.sum(cast(func.round(column * 100), BigInteger)), 0)


def _tallies(*narrowed: Any) -> Select[Any]:
    """Settlements completed in the period and in flight now: count and amount of each."""
    completed = and_(
        Settlement.state == "completed",
        Settlement.completed_at >= bindparam("start"),
        Settlement.completed_at < bindparam("end"),
    )
    flying = or_(*(Settlement.state == state for state in IN_FLIGHT))

    def count(condition: Any) -> Any:
        return func.sum(case((condition, 1), else_=0))

    def amount(condition: Any) -> Any:
        return exact_sum(case((condition, Settlement.amount), else_=0))

    return select(count(completed), amount(completed), count(flying), amount(flying)).where(
        Settlement.currency == bindparam("currency"), or_(completed, flying), *narrowed
    )


def _held() -> Select[Any]:
    """Every seller's balances summed, one column per purpose of :data:`HELD_PURPOSES`."""

    def held(purpose: str) -> Any:
        return exact_sum(case((Account.purpose == purpose, Account.balance), else_=0))

    return select(*(held(purpose).label(purpose) for purpose in HELD_PURPOSES)).where(
        or_(*(Account.purpose == purpose for purpose in HELD_PURPOSES)),
        Account.currency == bindparam("currency"),
    )


_SELLER_TALLIES = DriverStatement(_tallies(Settlement.seller_id == bindparam("seller_id")))
_EVERY_TALLY = _tallies().subquery("tallies")
_EVERY_HELD = _held().subquery("held")
#: Every seller's tallies beside their balances summed: two aggregates of one row each.
_SELLERS_SUMMARY = DriverStatement(
    select(_EVERY_TALLY, _EVERY_HELD).select_from(_EVERY_TALLY.join(_EVERY_HELD, true()))
)
