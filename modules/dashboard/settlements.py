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

from sqlalchemy import BigInteger, Select, cast, func, select

from app.db import Session
from modules.ledger.models import Account
from modules.marketplace.config import marketplace_settings
from modules.seller.balances import balance
from modules.seller.models import Settlement

from .facts import from_minor

IN_FLIGHT = ("pending", "processing")


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
    settlements = select(Settlement).where(Settlement.currency == currency)
    if seller_id is not None:
        settlements = settlements.where(Settlement.seller_id == seller_id)
    zone = marketplace_settings().timezone
    start = datetime.combine(since, time(), zone)
    end = datetime.combine(until + timedelta(days=1), time(), zone)
    completed = settlements.where(
        Settlement.state == "completed",
        Settlement.completed_at >= start,
        Settlement.completed_at < end,
    )
    payouts = _tally(completed)
    in_flight = _tally(settlements.where(Settlement.state.in_(IN_FLIGHT)))
    if seller_id is not None:
        own = balance(seller_id, currency)
        return SettlementSummary(
            own.pending, own.available, own.owed, own.next_release_at, own.next_payout_on,
            payouts, in_flight,
        )  # fmt: skip
    rows = Session().execute(
        select(Account.purpose, exact_sum(Account.balance))
        .where(
            Account.purpose.in_(("seller_pending", "seller_available", "seller_receivable")),
            Account.currency == currency,
        )
        .group_by(Account.purpose)
    )
    held = {purpose: hundredths for purpose, hundredths in rows}
    return SettlementSummary(
        from_minor(held.get("seller_pending", 0)),
        from_minor(held.get("seller_available", 0)),
        from_minor(held.get("seller_receivable", 0)),
        None,
        None,
        payouts,
        in_flight,
    )


def _tally(settlements: Select[Any]) -> Tally:
    rows = settlements.subquery()
    count, hundredths = (
        Session().execute(select(func.count(), exact_sum(rows.c.amount)).select_from(rows)).one()
    )
    return Tally(count, from_minor(hundredths))


def exact_sum(column: Any) -> Any:
    """The sum of a two-place money column in hundredths, exact on SQLite too (which would
    add NUMERIC as floats): each value is made an integer before it is added."""
    return func.coalesce(func.sum(cast(func.round(column * 100), BigInteger)), 0)
