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

Facts are read in bulk: the records of a kind of fact with what they join in one query, then
each relation the shares need (the invoices' splits, their confirmed payments, their refunds)
in one query for the whole batch. A subscriber reads a batch of one; the rebuild batches of
:data:`BATCH`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import Select, exists, func, select

from app.db import Session, any_of
from modules.marketplace import postings
from modules.marketplace.config import marketplace_settings
from modules.marketplace.models import AccountMove, Payment, Refund
from modules.payment.models import FINAL_STATES, PaymentProvider, PaymentTransaction

from .models import COUNTERS, PLATFORM

ZERO = Decimal("0.00")
#: The kinds of fact: with the subject's uuid, a fact's natural key.
TRANSACTION, PAYMENT, REFUND = "transaction", "payment", "refund"
MANUAL = "manual"
#: A fact's outcome -> the counter it adds to.
OUTCOME_COUNTERS = {
    "success": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
    MANUAL: "manual",
}
#: Facts read per batch when every fact is read again (the rebuild).
BATCH = 5000


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


def facts_of(kind: str, subject: uuid.UUID) -> list[Fact]:
    """The fact an event names (none, or one): ``kind`` is the event's subject, a provider
    transaction, a payment (its own fact, or its transaction's when a provider took it) or a
    refund."""
    if kind == TRANSACTION:
        return _TRANSACTIONS.facts(PaymentTransaction.uuid == subject)
    if kind == PAYMENT:
        taken = _TRANSACTIONS.facts(Payment.uuid == subject)
        return taken or _PAYMENTS.facts(Payment.uuid == subject)
    return _REFUNDS.facts(Refund.uuid == subject)


def facts_of_keys(keys: Iterable[tuple[str, uuid.UUID]]) -> list[Fact]:
    """The facts whose keys are ``keys`` (a key whose fact does not exist gives none)."""
    subjects: dict[str, list[uuid.UUID]] = {}
    for kind, subject in keys:
        subjects.setdefault(kind, []).append(subject)
    found = []
    for kind, source in ((TRANSACTION, _TRANSACTIONS), (PAYMENT, _PAYMENTS), (REFUND, _REFUNDS)):
        wanted = subjects.get(kind, [])
        for start in range(0, len(wanted), BATCH):
            found += source.facts(any_of(source.subject, wanted[start : start + BATCH]))
    return found


def every_fact(batch: int = BATCH) -> Iterator[list[Fact]]:
    """Every fact the source tables hold, in batches of at most ``batch`` records (for the
    rebuild); a batch may hold fewer facts."""
    for source in (_TRANSACTIONS, _PAYMENTS, _REFUNDS):
        yield from source.batches(batch)


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


# -- reading facts in bulk -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """One kind of fact: its records with what they join (``statement``, selecting ``id``),
    and how a batch of them becomes facts."""

    statement: Select[Any]
    id: Any
    subject: Any
    build: Callable[[Sequence[Any]], list[Fact]]

    def facts(self, *where: Any) -> list[Fact]:
        return self.build(Session().execute(self.statement.where(*where)).all())

    def batches(self, size: int) -> Iterator[list[Fact]]:
        after = 0
        while True:
            rows = (
                Session()
                .execute(self.statement.where(self.id > after).order_by(self.id).limit(size))
                .all()
            )
            if rows:
                yield self.build(rows)
            if len(rows) < size:
                return
            after = rows[-1].id


class _Paid(NamedTuple):
    """A confirmed payment, as :func:`postings.confirmed_before` reads it."""

    id: int
    state: str
    amount: Decimal
    confirmed_at: datetime | None


def _transaction_facts(rows: Sequence[Any]) -> list[Fact]:
    splits = postings.splits_of({row.invoice_id for row in rows})
    paid = _paid_on({row.invoice_id for row in rows if row.payment_state == "paid"})
    facts = []
    for row in rows:
        if row.payment_state == "paid":
            payment = _Paid(row.payment_id, row.payment_state, row.payment_amount,
                            row.confirmed_at)  # fmt: skip
            confirmed_at, _ = postings.confirmation_key(payment, row.invoice_created_at)
            # Confirmed by hand before the transaction followed: it succeeded then.
            at = (
                min(row.last_state_change, confirmed_at) if row.state == "success" else confirmed_at
            )
            before = postings.confirmed_before(
                payment, paid.get(row.invoice_id, ()), row.invoice_created_at
            )
            outcome, moved, fee = "success", row.amount, row.fee
        else:
            at, before, outcome, moved, fee = row.last_state_change, ZERO, row.state, ZERO, ZERO
        facts.append(
            Fact(TRANSACTION, row.uuid, _day(at), row.currency, row.provider, outcome, moved,
                 fee, _shares(splits[row.invoice_id], before, moved))
        )  # fmt: skip
    return facts


def _payment_facts(rows: Sequence[Any]) -> list[Fact]:
    splits = postings.splits_of({row.invoice_id for row in rows})
    paid = _paid_on({row.invoice_id for row in rows})
    facts = []
    for row in rows:
        confirmed_at, _ = postings.confirmation_key(row, row.invoice_created_at)
        before = postings.confirmed_before(row, paid[row.invoice_id], row.invoice_created_at)
        facts.append(
            Fact(PAYMENT, row.uuid, _day(confirmed_at), row.currency, row.method, MANUAL,
                 row.amount, ZERO, _shares(splits[row.invoice_id], before, row.amount))
        )  # fmt: skip
    return facts


def _refund_facts(rows: Sequence[Any]) -> list[Fact]:
    splits = postings.splits_of({row.invoice_id for row in rows})
    refunds = _refunds_of({row.invoice_id for row in rows})
    facts = []
    for row in rows:
        before = postings.refunded_before(row, refunds[row.invoice_id])
        facts.append(
            Fact(REFUND, row.uuid, _day(row.confirmed_at), row.currency, row.provider, REFUND,
                 row.amount, ZERO, _shares(splits[row.invoice_id], before, row.amount))
        )  # fmt: skip
    return facts


def _paid_on(invoice_ids: Collection[int]) -> dict[int, list[_Paid]]:
    """The confirmed payments of each invoice."""
    found: dict[int, list[_Paid]] = {}
    if not invoice_ids:
        return found
    for invoice_id, *paid in Session().execute(
        select(
            Payment.invoice_id, Payment.id, Payment.state, Payment.amount, Payment.confirmed_at
        ).where(any_of(Payment.invoice_id, invoice_ids), Payment.state == "paid")
    ):
        found.setdefault(invoice_id, []).append(_Paid(*paid))
    return found


def _refunds_of(invoice_ids: Collection[int]) -> dict[int, list[Any]]:
    """Every refund of each invoice (``id``, ``amount``)."""
    found: dict[int, list[Any]] = {}
    if not invoice_ids:
        return found
    for row in Session().execute(
        select(Refund.invoice_id, Refund.id, Refund.amount).where(
            any_of(Refund.invoice_id, invoice_ids)
        )
    ):
        found.setdefault(row.invoice_id, []).append(row)
    return found


_INVOICE_CREATED = AccountMove.created_at.label("invoice_created_at")

#: Provider transactions paying invoices, final or with their payment paid.
_TRANSACTIONS = _Source(
    select(
        PaymentTransaction.id,
        PaymentTransaction.uuid,
        PaymentTransaction.state,
        PaymentTransaction.invoice_id,
        PaymentTransaction.amount,
        PaymentTransaction.fee,
        PaymentTransaction.currency,
        PaymentTransaction.last_state_change,
        PaymentProvider.code.label("provider"),
        Payment.id.label("payment_id"),
        Payment.state.label("payment_state"),
        Payment.amount.label("payment_amount"),
        Payment.confirmed_at,
        _INVOICE_CREATED,
    )
    .join(PaymentProvider, PaymentProvider.id == PaymentTransaction.provider_id)
    .join(AccountMove, AccountMove.id == PaymentTransaction.invoice_id)
    .outerjoin(Payment, Payment.id == PaymentTransaction.account_payment_id)
    .where(
        PaymentTransaction.kind == "invoice",
        PaymentTransaction.state.in_(FINAL_STATES) | (Payment.state == "paid"),
    ),
    PaymentTransaction.id,
    PaymentTransaction.uuid,
    _transaction_facts,
)
#: Confirmed payments that no provider took.
_PAYMENTS = _Source(
    select(
        Payment.id,
        Payment.uuid,
        Payment.state,
        Payment.invoice_id,
        Payment.method,
        Payment.amount,
        Payment.currency,
        Payment.confirmed_at,
        _INVOICE_CREATED,
    )
    .join(AccountMove, AccountMove.id == Payment.invoice_id)
    .where(
        Payment.state == "paid",
        ~exists().where(PaymentTransaction.account_payment_id == Payment.id),
    ),
    Payment.id,
    Payment.uuid,
    _payment_facts,
)
#: Refunds whose money went back, with the provider that took their payment (else its method).
_REFUNDS = _Source(
    select(
        Refund.id,
        Refund.uuid,
        Refund.invoice_id,
        Refund.amount,
        Refund.currency,
        Refund.confirmed_at,
        func.coalesce(PaymentProvider.code, Payment.method).label("provider"),
    )
    .join(Payment, Payment.id == Refund.payment_id)
    .outerjoin(PaymentTransaction, PaymentTransaction.account_payment_id == Refund.payment_id)
    .outerjoin(PaymentProvider, PaymentProvider.id == PaymentTransaction.provider_id)
    .where(Refund.state == "succeeded", Refund.confirmed_at.is_not(None)),
    Refund.id,
    Refund.uuid,
    _refund_facts,
)


# -- shares ----------------------------------------------------------------------------------------


def _shares(split: postings.Split, before: Decimal, amount: Decimal) -> tuple[SellerShare, ...]:
    """Each seller's part of ``amount`` moved on an invoice split so, after ``before`` was, as
    the ledger splits it."""
    after = before + amount
    shares = []
    for share in split.shares:
        if share.seller_id is None:  # the platform's own lines
            continue
        net = postings.part(share.net, before, after, split.total)
        commission = postings.part(share.commission, before, after, split.total)
        shares.append(SellerShare(share.seller_id, net + commission, commission))
    return tuple(shares)


def _day(moment: datetime) -> date:
    return moment.astimezone(marketplace_settings().timezone).date()
