"""What the dashboard counts: one fact per money movement, with each seller's share of it.

A fact is one of:

- ``transaction``: a provider transaction paying an invoice that reached its final state,
  ``success``, ``failed`` or ``canceled`` (``payment.succeeded`` / ``payment.failed`` /
  ``payment.canceled``), on the day of that change. A success as soon as its payment is paid:
  staff may confirm the payment by hand while the transaction is pending (the money came), and
  the transaction only follows later (at its expiry, maybe another day); it counts then, on the
  payment's confirmation day (``payment.confirmed``);
- ``payment``: a payment made without a provider (the marketplace's own methods, bank transfer
  or cash) that staff confirmed (``payment.confirmed``), on its confirmation day: money in, but
  no provider's attempt, so its outcome is ``manual``, not ``success`` (the success rate is the
  providers'); a payment a provider transaction took is that transaction's fact, not a second
  one. Such a payment cancelled with its order moved no money and was no provider's attempt:
  it is no fact (the recent transactions list it, ``canceled``);
- ``refund``: a refund whose money went back (``refund.succeeded``), on that day.

Wallet top-ups are not counted: they are money the payer keeps, not sales, and counting them
would count the money twice once the wallet pays an invoice.

**A seller's share** of a movement is what the ledger gives them of it
(:mod:`modules.marketplace.postings`): of the invoice's untaxed amount on their lines, net of
commission plus the commission, the part this payment releases (or this refund takes back),
allocated cumulatively over the invoice's earlier payments (refunds) exactly as the postings
are, so a seller's share of a paid invoice adds up to their lines, to the cent. Their "fees"
are that commission. A failed or canceled transaction moves nothing, but counts for every
seller with a line on its invoice.

Days are the marketplace's (``LAPAK_MARKETPLACE_TIMEZONE``), the days invoices are dated by.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import exists, select

from app.db import Session
from modules.marketplace import postings
from modules.marketplace.config import marketplace_settings
from modules.marketplace.models import AccountMove, Payment, Refund
from modules.payment.models import FINAL_STATES, PaymentProvider, PaymentTransaction

from .models import COUNTERS, PLATFORM

ZERO = Decimal("0.00")
REFUND = "refund"
MANUAL = "manual"
#: A fact's outcome -> the counter it adds to.
OUTCOME_COUNTERS = {
    "success": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
    MANUAL: "manual",
}
#: Facts read per batch when every fact is read again (the rebuild).
BATCH = 500


@dataclass(frozen=True)
class SellerShare:
    seller_id: int
    #: The seller's part of the money moved (net of commission plus the commission).
    amount: Decimal
    commission: Decimal


@dataclass(frozen=True)
class Fact:
    #: ``transaction``, ``payment`` or ``refund``: with ``subject``, the fact's natural key.
    kind: str
    subject: uuid.UUID
    day: date
    currency: str
    #: The provider's code, or the method of a payment made without one.
    provider: str
    #: ``success``, ``failed``, ``canceled`` (a provider transaction), ``manual`` (a payment
    #: made without one), or ``refund``.
    outcome: str
    #: The money moved (nothing for a failure).
    amount: Decimal
    #: The provider's fee on a success.
    fee: Decimal
    shares: tuple[SellerShare, ...]


def transaction_fact(tx: PaymentTransaction) -> Fact | None:
    """The fact of a provider transaction paying an invoice, once it is final or its payment
    is paid (else None)."""
    if tx.kind != "invoice" or tx.invoice is None:
        return None
    payment = tx.account_payment
    paid = payment is not None and payment.state == "paid"
    if not paid and tx.state not in FINAL_STATES:
        return None
    moved = tx.amount if paid else ZERO
    return Fact(
        kind="transaction",
        subject=tx.uuid,
        day=_day(_settled_at(tx)),
        currency=tx.currency,
        provider=tx.provider.code,
        outcome="success" if paid else tx.state,
        amount=moved,
        fee=tx.fee if paid else ZERO,
        shares=_shares(tx.invoice, _confirmed_before(payment) if paid else ZERO, moved),
    )


def _settled_at(tx: PaymentTransaction) -> datetime:
    """When ``tx`` came to its outcome: its payment's confirmation when that came first."""
    payment = tx.account_payment
    if payment is None or payment.state != "paid":
        return tx.last_state_change
    confirmed_at, _ = postings.confirmation_key(payment, payment.invoice.created_at)
    if tx.state == "success":
        return min(tx.last_state_change, confirmed_at)
    return confirmed_at


def payment_fact(payment: Payment) -> Fact | None:
    """The fact of a confirmed payment: its own for one made without a provider, its
    transaction's for one a provider took (else None)."""
    if payment.state != "paid":
        return None
    tx = _taken_by(payment.id)
    if tx is not None:
        return transaction_fact(tx)
    confirmed_at, _ = postings.confirmation_key(payment, payment.invoice.created_at)
    return Fact(
        kind="payment",
        subject=payment.uuid,
        day=_day(confirmed_at),
        currency=payment.currency,
        provider=payment.method,
        outcome=MANUAL,
        amount=payment.amount,
        fee=ZERO,
        shares=_shares(payment.invoice, _confirmed_before(payment), payment.amount),
    )


def refund_fact(refund: Refund) -> Fact | None:
    """The fact of a refund whose money went back (else None)."""
    if refund.state != "succeeded" or refund.confirmed_at is None:
        return None
    invoice = Session().get(AccountMove, refund.invoice_id)
    assert invoice is not None, "a refund's invoice is never deleted"
    earlier = Session().scalars(
        select(Refund.amount).where(Refund.invoice_id == refund.invoice_id, Refund.id < refund.id)
    )
    return Fact(
        kind=REFUND,
        subject=refund.uuid,
        day=_day(refund.confirmed_at),
        currency=refund.currency,
        provider=_provider_of(refund.payment),
        outcome=REFUND,
        amount=refund.amount,
        fee=ZERO,
        shares=_shares(invoice, sum(earlier, ZERO), refund.amount),
    )


def increments(fact: Fact) -> list[dict[str, Any]]:
    """The rollup rows ``fact`` adds to: the platform's and one per seller, in key order (the
    order every writer locks them in)."""
    key = {"currency": fact.currency, "day": fact.day, "provider": fact.provider}
    rows = [{"seller_id": PLATFORM, **key, **_counters(fact, fact.amount, fact.fee)}]
    rows += [
        {"seller_id": share.seller_id, **key, **_counters(fact, share.amount, share.commission)}
        for share in fact.shares
    ]
    return sorted(rows, key=lambda row: row["seller_id"])


def _counters(fact: Fact, amount: Decimal, fee: Decimal) -> dict[str, int]:
    counters = dict.fromkeys(COUNTERS, 0)
    if fact.outcome == REFUND:
        counters["refunds"] = 1
        counters["refunded_minor"] = to_minor(amount)
        return counters
    counters["transactions"] = 1
    counters[OUTCOME_COUNTERS[fact.outcome]] = 1
    counters["volume_minor"] = to_minor(amount)
    counters["fees_minor"] = to_minor(fee)
    return counters


def to_minor(amount: Decimal) -> int:
    """``12.34`` -> ``1234``: an amount of two places as an integer of hundredths."""
    hundredths = amount.scaleb(2)
    whole = hundredths.to_integral_value()
    if hundredths != whole:
        raise ValueError(f"{amount} has more than two decimal places")
    return int(whole)


def from_minor(hundredths: int) -> Decimal:
    """``1234`` -> ``Decimal("12.34")``."""
    return Decimal(int(hundredths)).scaleb(-2)


# -- every fact, again (the rebuild) --------------------------------------------------------------


def every_fact() -> Iterator[Fact]:
    """Every fact the source tables hold, read in batches (for the rebuild)."""
    paid = exists().where(
        Payment.id == PaymentTransaction.account_payment_id, Payment.state == "paid"
    )
    yield from _facts(
        select(PaymentTransaction).where(
            PaymentTransaction.kind == "invoice",
            PaymentTransaction.state.in_(FINAL_STATES) | paid,
        ),
        PaymentTransaction.id,
        transaction_fact,
    )
    without_provider = ~exists().where(PaymentTransaction.account_payment_id == Payment.id)
    yield from _facts(
        select(Payment).where(Payment.state == "paid", without_provider), Payment.id, payment_fact
    )
    yield from _facts(select(Refund).where(Refund.state == "succeeded"), Refund.id, refund_fact)


def _facts(statement: Any, key: Any, fact_of: Any) -> Iterator[Fact]:
    session = Session()
    after = 0
    while True:
        batch = list(session.scalars(statement.where(key > after).order_by(key).limit(BATCH)))
        for record in batch:
            fact = fact_of(record)
            if fact is not None:
                yield fact
        if len(batch) < BATCH:
            return
        after = batch[-1].id
        session.expunge_all()  # nothing is changed through the ORM here: keep memory flat


# -- shares and what they need ---------------------------------------------------------------------


def _shares(invoice: AccountMove, before: Decimal, amount: Decimal) -> tuple[SellerShare, ...]:
    """Each seller's part of ``amount`` moved on ``invoice`` after ``before`` was, as the
    ledger splits it."""
    split = postings.split_of(invoice)
    after = before + amount
    shares = []
    for share in split.shares:
        if share.seller_id is None:  # the platform's own lines
            continue
        net = postings.part(share.net, before, after, split.total)
        commission = postings.part(share.commission, before, after, split.total)
        shares.append(SellerShare(share.seller_id, net + commission, commission))
    return tuple(shares)


def _confirmed_before(payment: Payment) -> Decimal:
    """What the invoice's payments confirmed before ``payment`` amount to, as its capture
    posted it."""
    rows = Session().execute(
        select(Payment.id, Payment.state, Payment.amount, Payment.confirmed_at).where(
            Payment.invoice_id == payment.invoice_id, Payment.state == "paid"
        )
    )
    return postings.confirmed_before(payment, rows, payment.invoice.created_at)


def _taken_by(payment_id: int) -> PaymentTransaction | None:
    """The provider transaction that took the payment, if one did."""
    return Session().scalar(
        select(PaymentTransaction).where(PaymentTransaction.account_payment_id == payment_id)
    )


def _provider_of(payment: Payment) -> str:
    """The provider that took ``payment``, or its method when none did."""
    code = Session().scalar(
        select(PaymentProvider.code)
        .join(PaymentTransaction, PaymentTransaction.provider_id == PaymentProvider.id)
        .where(
            PaymentTransaction.account_payment_id == payment.id,
            PaymentTransaction.state == "success",
        )
    )
    return code or payment.method


def _day(moment: datetime) -> date:
    return moment.astimezone(marketplace_settings().timezone).date()
