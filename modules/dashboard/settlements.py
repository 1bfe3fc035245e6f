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

from sqlalchemy import BigInteger, and_, bindparam, case, cast, func, or_, select

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
    statement = _SELLERS_TALLIES if seller_id is None else _SELLER_TALLIES
    ((paid_out, paid_amount, flying, flying_amount),) = statement.rows(
        Session().connection(), params
    )
    payouts = Tally(int(paid_out or 0), from_minor(paid_amount or 0))
    in_flight = Tally(int(flying or 0), from_minor(flying_amount or 0))
    if seller_id is not None:
        own = balance(seller_id, currency)
        return SettlementSummary(
            own.pending, own.available, own.owed, own.next_release_at, own.next_payout_on,
            payouts, in_flight,
        )  # fmt: skip
    held = dict(_HELD.rows(Session().connection(), {"currency": currency}))
    return SettlementSummary(
        from_minor(held.get("seller_pending", 0)),
        from_minor(held.get("seller_available", 0)),
        from_minor(held.get("seller_receivable", 0)),
        None,
        None,
        payouts,
        in_flight,
    )


def exact_sum(column: Any) -> Any:
    """The sum of a two-place money column in hundredths, exact on SQLite too (which would
    add NUMERIC as floats): each value is made an integer before it is added."""
    return func.coalesce(func.sum(cast(func.round(column * 100), BigInteger)), 0)


def _tallies(*narrowed: Any) -> DriverStatement:
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

    return DriverStatement(
        select(count(completed), amount(completed), count(flying), amount(flying)).where(
            Settlement.currency == bindparam("currency"), or_(completed, flying), *narrowed
        )
    )


_SELLERS_TALLIES = _tallies()
_SELLER_TALLIES = _tallies(Settlement.seller_id == bindparam("seller_id"))
#: Every seller's balances summed, per purpose.
_HELD = DriverStatement(
    select(Account.purpose, exact_sum(Account.balance))
    .where(
        or_(*(Account.purpose == purpose for purpose in HELD_PURPOSES)),
        Account.currency == bindparam("currency"),
    )
    .group_by(Account.purpose)
)
