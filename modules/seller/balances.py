"""A seller's balances, read from the ledger, and the hold that makes a share available.

A payment's confirmation credits each seller's share to their ``seller_pending`` account (the
marketplace's ``PAYMENT_CAPTURE``). Exactly ``LAPAK_SETTLEMENT_HOLD_DAYS`` x 24 h after that
posting, :func:`release_due_holds` (a periodic job) moves it to ``seller_available`` with a
``HOLD_RELEASE`` posting whose nonce is the credited entry's id.

**Exactly once.** Each credit is released in its own database transaction that first inserts
its :class:`HoldRelease` row (keyed by the entry; ``ON CONFLICT DO NOTHING``): a second run, or
one running at the same moment, waits on that key and then finds the credit taken. The posting's
nonce is a second guard on the ledger's side.

**How much.** A refund takes a seller's part back from pending first, so by the release a credit
may be partly or wholly gone. The release moves what is left of *this* credit: the credit minus
what the refunds of the same payment took from pending, and never more than pending holds (read
under the account's lock). Another payment's refund therefore never makes this credit smaller.
The hold is kept per credit, not per rupiah: a refund of a payment whose credit was already
released still takes pending first, so a later release of an earlier credit may move money
that, euro for euro, came from another payment still on hold. The totals stay right (pending
and available together are what the sales left, nothing is released twice and never more than
pending holds); only which payment's money became available first is not tracked. A credit with
nothing left is recorded as released with zero and posts nothing.

Balances are the ledger accounts' own balances: nothing is summed a second time here.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.db import Session, get_database, transaction, utcnow
from app.errors import DomainError
from modules.ledger.chart import account_code
from modules.ledger.models import Account, Entry, Transaction
from modules.ledger.posting import lock_balances, post
from modules.ledger.registry import registry
from modules.marketplace.config import marketplace_settings
from modules.marketplace.models import Payment, Refund

from . import postings
from .config import seller_settings
from .models import WEEKDAYS, HoldRelease, SellerProfile, Settlement

log = logging.getLogger(__name__)

ZERO = Decimal("0.00")
#: Credits released per job run; the next run takes the rest.
BATCH = 500


@dataclass(frozen=True)
class BalanceView:
    currency: str
    available: Decimal
    pending: Decimal
    #: What the seller owes (a refund after a payout), netted from their next credits.
    owed: Decimal
    next_release_at: datetime | None
    next_release_amount: Decimal | None
    next_payout_on: date | None


# -- the job ------------------------------------------------------------------------------------


def release_due_holds(limit: int = BATCH) -> int:
    """Release every credit whose hold is over (safe twice or at once); how many moved money."""
    cutoff = utcnow() - seller_settings().hold
    released = 0
    for entry_id in _due_entries(cutoff, limit):
        try:
            released += _release(entry_id)
        except DomainError:  # rolled back: the next run tries it again; the others go on
            log.exception("the hold of ledger entry %s could not be released", entry_id)
    return released


def _due_entries(cutoff: datetime, limit: int) -> list[int]:
    found = (
        select(Entry.id)
        .join(Account, Account.id == Entry.account_id)
        .join(Transaction, Transaction.id == Entry.transaction_id)
        .outerjoin(HoldRelease, HoldRelease.entry_id == Entry.id)
        .where(
            Account.purpose == "seller_pending",
            Entry.credit > 0,
            Transaction.created_at <= cutoff,
            HoldRelease.entry_id.is_(None),
        )
        .order_by(Entry.id)
        .limit(limit)
    )
    return list(Session().scalars(found))  # the primary's: a replica may lag behind


def _release(entry_id: int) -> int:
    """Release one credit in its own transaction (a transaction posts once); 1 if money moved."""
    with transaction() as session:
        credit = _credit(entry_id)
        now = utcnow()
        insert = (
            postgresql_insert
            if get_database().primary.dialect.name == "postgresql"
            else sqlite_insert
        )
        claimed = session.execute(
            insert(HoldRelease)
            .values(
                entry_id=entry_id,
                seller_id=credit.holder_id,
                currency=credit.currency,
                credited=credit.amount,
                amount=ZERO,
                transaction_id=None,
                released_at=now,
            )
            .on_conflict_do_nothing(index_elements=["entry_id"])
            .returning(HoldRelease.entry_id)
        ).scalar()
        if claimed is None:  # another run released it
            return 0
        pending = _lock_balances(credit.holder_id, credit.currency)
        amount = releasable(credit, pending)
        if amount <= 0:
            return 0
        posted = post(postings.hold_release(entry_id, credit.holder_id, amount, credit.currency))
        session.execute(
            update(HoldRelease)
            .where(HoldRelease.entry_id == entry_id)
            .values(amount=amount, transaction_id=posted.id)
        )
        return 1


@dataclass(frozen=True)
class _Credit:
    entry_id: int
    account_id: int
    holder_id: int
    currency: str
    amount: Decimal
    operation: str
    nonce: str
    credited_at: datetime


_CREDIT = (
    select(
        Entry.id,
        Entry.account_id,
        Account.holder_id,
        Entry.currency,
        Entry.credit,
        Transaction.operation,
        Transaction.nonce,
        Transaction.created_at,
    )
    .join(Account, Account.id == Entry.account_id)
    .join(Transaction, Transaction.id == Entry.transaction_id)
)


def _credit(entry_id: int) -> _Credit:
    return _Credit(*Session().execute(_CREDIT.where(Entry.id == entry_id)).one())


def _lock_balances(seller_id: int, currency: str) -> Decimal:
    """What the seller's pending account holds, read under its lock when that is safe.

    Both accounts are locked as the ledger locks them (:func:`lock_balances`: queued, in id
    order). A seller's first release opens their available account, which the ledger does
    holding no lock (a posting opening the same account would otherwise wait on it in a cycle):
    then pending is read without one, and the ledger's own check under the lock refuses (rolls
    back, retried next run) a release that a refund in between made too large.
    """
    known = registry()
    pending, available = (
        account_code(known.purpose(purpose), currency, seller_id)
        for purpose in ("seller_pending", "seller_available")
    )
    session = Session()
    if session.scalar(select(Account.id).where(Account.code == available)) is not None:
        return lock_balances([pending, available]).get(pending, ZERO)
    found = select(Account.code, Account.balance).where(Account.code.in_([pending, available]))
    return dict(session.execute(found).all()).get(pending, ZERO)


def releasable(credit: _Credit, pending: Decimal) -> Decimal:
    """What releasing ``credit`` moves: what refunds of its payment left of it, at most
    ``pending``."""
    left = credit.amount - _refunded_from_pending(credit)
    return max(ZERO, min(left, pending))


def _refunded_from_pending(credit: _Credit) -> Decimal:
    """What the refunds of the credit's payment took from the same pending account."""
    if credit.operation != "PAYMENT_CAPTURE":
        return ZERO
    session = Session()
    refunds = [
        str(refund_uuid)
        for refund_uuid in session.scalars(
            select(Refund.uuid)
            .join(Payment, Payment.id == Refund.payment_id)
            .where(Payment.uuid == uuid.UUID(credit.nonce))
        )
    ]
    if not refunds:
        return ZERO
    taken = session.scalar(
        select(func.coalesce(func.sum(Entry.debit), 0))
        .join(Transaction, Transaction.id == Entry.transaction_id)
        .where(
            Transaction.operation == "REFUND",
            Transaction.nonce.in_(refunds),
            Entry.account_id == credit.account_id,
        )
    )
    return Decimal(taken or 0).quantize(ZERO)


# -- reading -----------------------------------------------------------------------------------


def balance(seller_id: int, currency: str) -> BalanceView:
    """The seller's balances in ``currency``, their next release and next scheduled payout."""
    session = Session()
    known = registry()
    codes = {
        purpose: account_code(known.purpose(purpose), currency, seller_id)
        for purpose in ("seller_pending", "seller_available", "seller_receivable")
    }
    held = dict(
        session.execute(
            select(Account.code, Account.balance).where(Account.code.in_(codes.values()))
        ).all()
    )
    pending = held.get(codes["seller_pending"], ZERO)
    release_at, release_amount = _next_release(codes["seller_pending"], pending)
    return BalanceView(
        currency=currency,
        available=held.get(codes["seller_available"], ZERO),
        pending=pending,
        owed=held.get(codes["seller_receivable"], ZERO),
        next_release_at=release_at,
        next_release_amount=release_amount,
        next_payout_on=next_payout_on(seller_id),
    )


def _next_release(pending_code: str, pending: Decimal) -> tuple[datetime | None, Decimal | None]:
    """When the oldest credit not yet released becomes available, and what it will move."""
    if pending <= 0:
        return None, None
    oldest = (
        Session()
        .execute(
            _CREDIT.outerjoin(HoldRelease, HoldRelease.entry_id == Entry.id)
            .where(Account.code == pending_code, Entry.credit > 0, HoldRelease.entry_id.is_(None))
            .order_by(Entry.id)
            .limit(1)
        )
        .first()
    )
    if oldest is None:
        return None, None
    credit = _Credit(*oldest)
    return credit.credited_at + seller_settings().hold, releasable(credit, pending)


def next_payout_on(seller_id: int) -> date | None:
    """The day of the seller's next weekly payout (marketplace time zone); None if manual."""
    weekday = Session().scalar(
        select(SellerProfile.payout_weekday).where(
            SellerProfile.user_id == seller_id, SellerProfile.payout_interval == "weekly"
        )
    )
    if weekday is None:
        return None
    today = utcnow().astimezone(marketplace_settings().timezone).date()
    day = today + timedelta(days=(WEEKDAYS.index(weekday) - today.weekday()) % 7)
    if day == today:
        made = Session().scalar(
            select(Settlement.id).where(
                Settlement.seller_id == seller_id, Settlement.scheduled_for == today
            )
        )
        if made is not None:  # today's is made: the next is a week on
            day += timedelta(days=7)
    return day
