"""What the marketplace posts to the ledger: the legs of each money change (PAYMENTS.md §2).

The platform is the merchant of record; sellers are paid their share. For an invoice of total
``T`` = untaxed ``U`` + tax ``X``, whose lines are grouped by seller (``U_s``; lines without a
seller are the platform's own sales), each seller's commission is
``C_s = U_s x p_s / 100`` (half-up), where ``p_s`` is ``LAPAK_COMMISSION_PERCENT``, or the
seller's own percent (:mod:`.commissions`), as fixed on the invoice when it is posted:

- ``INVOICE_POST`` (nonce: the invoice): DR ``receivable`` (customer) T; CR ``sales_clearing``
  U, ``tax_payable`` X. An invoice to a payer without an account (a standalone invoice, see
  :mod:`.invoices`) has no holder for its receivable: it is the platform's
  ``guest_receivable`` instead, in every posting below.
- ``PAYMENT_CAPTURE`` (the payment) of P: DR ``clearing_<method>`` P (for a method holding the
  payer's own money, the customer's ``wallet``: drawn under its lock, never below zero), CR
  ``receivable`` P; and the sellers' shares it releases: DR ``sales_clearing``; CR per seller
  their share minus commission and ``commission_income`` (the commission), ``sales_income``
  for the platform's own lines. A seller's share first pays back what they owe
  (``seller_receivable``, left by a refund after a payout), the rest goes to ``seller_pending``;
  the split is decided under the accounts' locks.
- ``INVOICE_REVERSAL`` (the credit note): what the receivable still holds, back: CR
  ``receivable``; DR ``tax_payable`` and ``sales_clearing``.
- ``REFUND`` (the refund) of R: CR ``clearing_<method>`` R (or the customer's ``wallet``, when
  the payment came from it or staff send the refund there); DR ``tax_payable`` its tax part, per
  seller ``seller_pending`` its part (spilling over to ``seller_available``, then
  ``seller_receivable``: never a negative holder account) and ``commission_income``;
  ``sales_income``; ``sales_clearing`` (either side) the cents of rounding.

**Cumulative allocation.** A payment releases the share of the invoice it pays: after payments
``B`` were confirmed, a payment of ``P`` releases, of each amount ``V`` (a seller's net share
``U_s - C_s``, their commission ``C_s``, the platform's share), ``round(V (B + P) / T) -
round(V B / T)``. The parts of every payment of an invoice therefore add up exactly to ``V`` once
it is paid, and none is negative (rounding is monotonic; allocating the net share rather than
``U_s`` keeps ``share - commission`` from going below zero by a cent). Refunds take their parts
the same way over the refunded amounts, so refunding everything that was captured gives back
exactly what was captured; ``sales_clearing`` takes the cents by which the separately rounded
parts differ from the refund's untaxed amount (it is the account that is exactly zero again
once an invoice is paid and refunded in full). When refunds cover every confirmed payment the
invoice is reversed: the same posting reverses what was never paid (``receivable`` back to zero
for that invoice, and its share of ``sales_clearing`` and ``tax_payable``).

Each posting is built from the database's own state, so ``lapak ledger backfill`` builds the
very same one for history written before the ledger (:mod:`.backfill`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import bindparam, select, update

from app.db import DriverStatement, Session, any_of
from app.errors import Conflict
from app.registry import ModuleHooks
from modules.ledger import extend
from modules.ledger.chart import Purpose
from modules.ledger.models import Transaction
from modules.ledger.operations import Operation
from modules.ledger.posting import Leg, Posting

from . import commissions
from .config import marketplace_settings
from .models import AccountMove, AccountMoveLine, Payment, Refund
from .payments import all_methods, held_methods

ZERO = Decimal("0.00")
CENT = Decimal("0.01")
HUNDRED = Decimal(100)
#: Where a refund takes a seller's part from, in order; the last takes what the others lack.
SELLER_FALLBACKS = ("seller_available", "seller_receivable")
#: Where a captured share goes once it has paid back what the seller owes.
SHARE_AFTER_RECEIVABLE = ("seller_pending",)


def clearing(method: str) -> str:
    """The account purpose where money of a payment method waits (``clearing_bank_transfer``)."""
    return f"clearing_{method}"


def _money_side(method: str, customer_id: int | None) -> tuple[str, int | None]:
    """The account a payment's money comes from at capture and a refund's goes back to: the
    method's clearing account, or the customer's own for a method holding their money (a payer
    without an account holds none: the services refuse such a method before)."""
    held = held_methods().get(method)
    if held is not None:
        if customer_id is None:
            raise ValueError(f"{method} holds a customer's money: a payer without one has none")
        return held.holder_purpose, customer_id
    return clearing(method), None


def _receivable(invoice: AccountMove, amount: Decimal) -> tuple[str, Decimal, int | None]:
    """A leg's purpose, amount and holder on the invoice's receivable (:func:`receivable_of`)."""
    purpose, holder_id = receivable_of(invoice)
    return purpose, amount, holder_id


#: What payers without an account owe: one platform account per currency.
GUEST_RECEIVABLE = Purpose("guest_receivable", "Receivable from payers without an account", "asset")


def purposes() -> tuple[Purpose, ...]:
    """A clearing account per payment method, the registered ones included (called at setup,
    once every module has loaded); a method holding the payer's money needs none. And the
    receivable of payers without an account."""
    return (
        GUEST_RECEIVABLE,
        *(
            Purpose(clearing(code), f"{method.label} received, not yet settled", "asset")
            for code, method in sorted(all_methods().items())
            if method.holder_purpose is None
        ),
    )


def receivable_of(invoice: AccountMove) -> tuple[str, int | None]:
    """The account an invoice's total is owed on: its customer's ``receivable``, or the
    platform's ``guest_receivable`` for a payer without an account."""
    if invoice.customer_id is None:
        return GUEST_RECEIVABLE.code, None
    return "receivable", invoice.customer_id


_SHARES = frozenset({"seller_pending", "commission_income", "sales_income"})


def operations() -> tuple[Operation, ...]:
    """The marketplace's operations; a payment moves money through any method's clearing."""
    receivables = frozenset({"receivable", GUEST_RECEIVABLE.code})
    clearings = frozenset(p.code for p in purposes() if p != GUEST_RECEIVABLE)
    clearings |= {method.holder_purpose for method in held_methods().values()}
    return (
        Operation(
            "INVOICE_POST",
            "A customer invoice posted: the customer owes its total",
            debit=receivables,
            credit=frozenset({"sales_clearing", "tax_payable"}),
        ),
        Operation(
            "PAYMENT_CAPTURE",
            "A payment confirmed: the receivable is settled and the sellers' shares released",
            debit=clearings | {"sales_clearing"},
            credit=_SHARES | receivables | {"seller_receivable"},
            draws_down=True,
        ),
        Operation(
            "INVOICE_REVERSAL",
            "An unpaid invoice reversed by a credit note (its order cancelled)",
            debit=frozenset({"sales_clearing", "tax_payable"}),
            credit=receivables,
            draws_down=True,
        ),
        Operation(
            "REFUND",
            "Money given back on a confirmed payment, taken back from the sellers' shares",
            debit=_SHARES | set(SELLER_FALLBACKS) | {"tax_payable", "sales_clearing"},
            credit=clearings | receivables | {"sales_clearing"},
            draws_down=True,
        ),
    )


def install(hooks: ModuleHooks) -> None:
    """Register the clearing accounts, the operations and the history backfill."""
    from . import backfill

    extend(hooks, purposes=purposes, operations=operations, backfill=backfill.run)


# -- how an invoice splits -------------------------------------------------------------------------


@dataclass(frozen=True)
class Share:
    """One seller's part of an invoice (``seller_id`` None: the platform's own lines)."""

    seller_id: int | None
    net: Decimal
    commission: Decimal


@dataclass(frozen=True)
class Split:
    total: Decimal
    tax: Decimal
    shares: tuple[Share, ...]


class LedgerBackfillNeeded(Conflict):
    code = "ledger-backfill-needed"
    title = "This invoice is from before the ledger: run lapak ledger backfill"


def require_posted(invoice: AccountMove) -> None:
    """Refuse to move money on an invoice from before the ledger until its history is posted.

    Its receivable was never debited: confirming, cancelling or refunding it now would take
    the money from the customer's other invoices, and the backfill could not post it later.
    Only invoices without a commission (made before the ledger) are looked up.
    """
    if invoice.commission_percent is not None:
        return
    posted = (
        Session()
        .execute(
            select(Transaction.id).where(
                Transaction.operation == "INVOICE_POST", Transaction.nonce == str(invoice.uuid)
            )
        )
        .first()
    )
    if posted is None:
        raise LedgerBackfillNeeded(
            f"invoice {invoice.name} is from before the ledger and is not posted to it yet; "
            "an admin runs `lapak ledger backfill` once, then try again",
            invoice=invoice.name,
        )


def fix_split(invoice: AccountMove) -> None:
    """Give an invoice from before the ledger its commission and its lines' sellers.

    New invoices get both when posted; an old one gets them at its first payment or refund
    (under the invoice's row lock), so every later split of it is the same.
    """
    if invoice.commission_percent is not None:
        return
    invoice.commission_percent = marketplace_settings().commission_percent
    session = Session()
    for line in invoice.lines:
        if line.seller_id != line.product.seller_id:
            session.execute(
                update(AccountMoveLine)
                .where(AccountMoveLine.id == line.id)
                .values(seller_id=line.product.seller_id)
            )
            line.seller_id = line.product.seller_id


def split_of(invoice: AccountMove) -> Split:
    """The invoice's untaxed amount by seller, each seller's commission taken off (at the
    seller's own percent fixed on the invoice, else the invoice's)."""
    lines = _line_amounts(invoice)
    has_sellers = any(seller_id is not None for seller_id, _ in lines)
    own = commissions.fixed_on(invoice) if has_sellers else {}
    return _split(invoice.amount_total, invoice.amount_tax, invoice.commission_percent, lines, own)


def splits_of(invoice_ids: Collection[int]) -> dict[int, Split]:
    """The split of each of these invoices, as :func:`split_of` gives it, in three queries
    whatever their number (the invoices, their lines, their sellers' own percents): for a
    reader of many invoices at once (the dashboard's rebuild)."""
    if not invoice_ids:
        return {}
    ids = sorted(invoice_ids)
    session = Session()
    lines: dict[int, list[tuple[int | None, Decimal]]] = {}
    for move_id, seller_id, subtotal in session.execute(
        select(AccountMoveLine.move_id, AccountMoveLine.seller_id, AccountMoveLine.price_subtotal)
        .where(any_of(AccountMoveLine.move_id, ids))
        .order_by(AccountMoveLine.id)
    ):
        lines.setdefault(move_id, []).append((seller_id, subtotal))
    with_sellers = [
        move_id
        for move_id, amounts in lines.items()
        if any(seller_id is not None for seller_id, _ in amounts)
    ]
    own = commissions.fixed_on_each(with_sellers)
    return {
        invoice_id: _split(total, tax, percent, lines.get(invoice_id, []), own.get(invoice_id, {}))
        for invoice_id, total, tax, percent in session.execute(
            select(
                AccountMove.id,
                AccountMove.amount_total,
                AccountMove.amount_tax,
                AccountMove.commission_percent,
            ).where(any_of(AccountMove.id, ids))
        )
    }


def _split(
    total: Decimal,
    tax: Decimal,
    percent: Decimal | None,
    lines: Iterable[tuple[int | None, Decimal]],
    own: Mapping[int, Decimal],
) -> Split:
    if percent is None:
        percent = marketplace_settings().commission_percent
    untaxed: dict[int | None, Decimal] = {}
    for seller_id, subtotal in lines:
        untaxed[seller_id] = untaxed.get(seller_id, ZERO) + subtotal
    shares = []
    for seller_id, amount in sorted(
        untaxed.items(), key=lambda item: (item[0] is not None, item[0] or 0)
    ):
        if seller_id is None:
            commission = ZERO
        else:
            commission = _round(amount * own.get(seller_id, percent) / HUNDRED)
        shares.append(Share(seller_id, amount - commission, commission))
    return Split(total, tax, tuple(shares))


def _line_amounts(invoice: AccountMove) -> list[tuple[int | None, Decimal]]:
    """Each line's seller and untaxed amount; read as columns (not the lines and the products
    they join) once the invoice is written."""
    if invoice.id is None or "lines" in invoice.__dict__:
        return [(line.seller_id, line.price_subtotal) for line in invoice.lines]
    rows = _LINE_AMOUNTS.rows(Session().connection(), {"move_id": invoice.id})
    return [(seller_id, subtotal) for seller_id, subtotal in rows]


_LINE_AMOUNTS = DriverStatement(
    select(AccountMoveLine.seller_id, AccountMoveLine.price_subtotal)
    .where(AccountMoveLine.move_id == bindparam("move_id"))
    .order_by(AccountMoveLine.id)
)


def _round(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def part(value: Decimal, before: Decimal, after: Decimal, total: Decimal) -> Decimal:
    """What moving from ``before`` to ``after`` of ``total`` releases of ``value``."""
    if total == 0:
        return ZERO
    return _round(value * after / total) - _round(value * before / total)


# -- the order of an invoice's payments --------------------------------------------------------


def confirmation_key(payment: Any, invoice_created_at: datetime) -> tuple[datetime, int]:
    """Where a confirmed payment (or a row of one: ``id``, ``confirmed_at``) sorts among its
    invoice's: by when it was confirmed, then by id. One confirmed without a time (never written
    so by the services, but history from before them may hold it) sorts at its invoice's
    creation. The capture, ``lapak ledger backfill`` and the dashboard all order by this."""
    return (payment.confirmed_at or invoice_created_at, payment.id)


def confirmed_before(
    payment: Any, payments: Iterable[Any], invoice_created_at: datetime
) -> Decimal:
    """What the invoice's ``payments`` (objects or rows: ``id``, ``state``, ``amount``,
    ``confirmed_at``) confirmed before ``payment`` amount to: the ``B`` its capture releases
    the shares from (see the cumulative allocation above)."""
    mine = confirmation_key(payment, invoice_created_at)
    return sum_amounts(
        p for p in payments
        if p.state == "paid" and confirmation_key(p, invoice_created_at) < mine
    )  # fmt: skip


def refunded_before(refund: Any, refunds: Iterable[Any]) -> Decimal:
    """What the invoice's ``refunds`` (objects or rows: ``id``, ``amount``) gave back before
    ``refund``, in the order they were made: the ``B`` its refund posting takes the shares
    back from."""
    return sum_amounts(r for r in refunds if r.id < refund.id)


def confirmation_time(now: datetime, others: Iterable[Any]) -> datetime:
    """When a payment confirmed at ``now`` is recorded, given its invoice's ``others``: ``now``,
    or just after the latest of their confirmations when that is not earlier (a clock that
    went back). So a payment always sorts after those confirmed before it
    (:func:`confirmation_key`), and a capture's ``B`` read back later is the one it used."""
    times = [p.confirmed_at for p in others if p.state == "paid" and p.confirmed_at is not None]
    latest = max(times, default=None)
    if latest is None or now > latest:
        return now
    return latest + timedelta(microseconds=1)


# -- the postings ------------------------------------------------------------------------------


class _Legs:
    """Legs summed per account and side, in the order first named; zero legs left out."""

    def __init__(self, currency: str) -> None:
        self.currency = currency
        self._amounts: dict[tuple[str, int | None, tuple[str, ...], str], Decimal] = {}

    def debit(self, purpose: str, amount: Decimal, holder_id: int | None = None,
              fallbacks: tuple[str, ...] = ()) -> None:  # fmt: skip
        self._add((purpose, holder_id, fallbacks, "debit"), amount)

    def credit(self, purpose: str, amount: Decimal, holder_id: int | None = None,
               fallbacks: tuple[str, ...] = ()) -> None:  # fmt: skip
        self._add((purpose, holder_id, fallbacks, "credit"), amount)

    def net_debit(self, purpose: str, amount: Decimal) -> None:
        """Debit ``amount``, or credit it when it is negative."""
        if amount >= 0:
            self.debit(purpose, amount)
        else:
            self.credit(purpose, -amount)

    def _add(self, key: tuple[str, int | None, tuple[str, ...], str], amount: Decimal) -> None:
        if amount < 0:
            raise ValueError(f"a negative {key[3]} on {key[0]}: {amount}")
        self._amounts[key] = self._amounts.get(key, ZERO) + amount

    def legs(self) -> tuple[Leg, ...]:
        legs = []
        for (purpose, holder_id, fallbacks, side), amount in self._amounts.items():
            if amount == 0:
                continue
            legs.append(
                Leg(
                    purpose,
                    self.currency,
                    holder_id=holder_id,
                    fallbacks=fallbacks,
                    **{side: amount},
                )
            )
        return tuple(legs)


def invoice_post(invoice: AccountMove, actor_id: int | None) -> Posting | None:
    """The customer owes the invoice: receivable against sales clearing and tax payable."""
    legs = _Legs(invoice.currency)
    legs.debit(*_receivable(invoice, invoice.amount_total))
    legs.credit("sales_clearing", invoice.amount_untaxed)
    legs.credit("tax_payable", invoice.amount_tax)
    return _posting("INVOICE_POST", str(invoice.uuid), legs, reference("invoice", invoice.uuid),
                    invoice.name, actor_id)  # fmt: skip


def payment_capture(
    invoice: AccountMove, payment: Payment, confirmed_before: Decimal, actor_id: int | None
) -> Posting | None:
    """A confirmed payment settles the receivable and releases the sellers' shares it pays."""
    split = split_of(invoice)
    after = confirmed_before + payment.amount
    legs = _Legs(invoice.currency)
    source, payer = _money_side(payment.method, invoice.customer_id)
    legs.debit(source, payment.amount, payer)
    legs.credit(*_receivable(invoice, payment.amount))
    released = ZERO
    for share in split.shares:
        net = part(share.net, confirmed_before, after, split.total)
        commission = part(share.commission, confirmed_before, after, split.total)
        if share.seller_id is None:
            legs.credit("sales_income", net)
        else:
            # What the seller owes is netted from their share before it reaches pending.
            legs.credit("seller_receivable", net, share.seller_id, SHARE_AFTER_RECEIVABLE)
            legs.credit("commission_income", commission)
        released += net + commission
    legs.debit("sales_clearing", released)
    return _posting("PAYMENT_CAPTURE", str(payment.uuid), legs, reference("payment", payment.uuid),
                    f"{payment.name} on {invoice.name}", actor_id)  # fmt: skip


def invoice_reversal(
    invoices: Sequence[tuple[AccountMove, Decimal]],
    credit_notes: Sequence[AccountMove],
    actor_id: int | None,
) -> Posting | None:
    """Credit notes reverse what each invoice's receivable still holds (its unpaid part).

    ``invoices``: each reversed invoice with the amount confirmed on it (zero when an order is
    cancelled). One posting for all of them: a transaction posts once.
    """
    if not credit_notes:
        return None
    legs = _Legs(invoices[0][0].currency)
    for invoice, confirmed in invoices:
        _reverse_unpaid(legs, invoice, confirmed)
    first = credit_notes[0]
    memo = ", ".join(
        f"{note.name} reverses {invoice.name}"
        for note, (invoice, _) in zip(credit_notes, invoices, strict=True)
    )
    return _posting("INVOICE_REVERSAL", str(first.uuid), legs, reference("credit-note", first.uuid),
                    memo, actor_id)  # fmt: skip


def _reverse_unpaid(legs: _Legs, invoice: AccountMove, confirmed: Decimal) -> None:
    unpaid = invoice.amount_total - confirmed
    if unpaid <= 0:
        return
    tax = invoice.amount_tax - part(invoice.amount_tax, ZERO, confirmed, invoice.amount_total)
    legs.credit(*_receivable(invoice, unpaid))
    legs.debit("tax_payable", tax)
    legs.debit("sales_clearing", unpaid - tax)


def refund(
    invoice: AccountMove,
    payment: Payment,
    refund: Refund,
    refunded_before: Decimal,
    *,
    confirmed_total: Decimal | None,
    actor_id: int | None,
) -> Posting | None:
    """Give back ``refund.amount`` through its destination (the payment's method, or a method
    holding the customer's money), taken from whom it went to.

    ``confirmed_total``: set when this refund completes the refunds of every confirmed payment
    (the invoice is reversed): what was never paid is reversed in the same posting.
    """
    split = split_of(invoice)
    amount = refund.amount
    after = refunded_before + amount
    legs = _Legs(invoice.currency)
    destination, payer = _money_side(refund.destination, invoice.customer_id)
    legs.credit(destination, amount, payer)
    tax = part(split.tax, refunded_before, after, split.total)
    legs.debit("tax_payable", tax)
    taken = ZERO
    for share in split.shares:
        net = part(share.net, refunded_before, after, split.total)
        commission = part(share.commission, refunded_before, after, split.total)
        if share.seller_id is None:
            legs.debit("sales_income", net)
        else:
            legs.debit("seller_pending", net, share.seller_id, SELLER_FALLBACKS)
            legs.debit("commission_income", commission)
        taken += net + commission
    rounding = amount - tax - taken
    if confirmed_total is not None:
        unpaid = invoice.amount_total - confirmed_total
        if unpaid > 0:
            unpaid_tax = invoice.amount_tax - part(
                invoice.amount_tax, ZERO, confirmed_total, invoice.amount_total
            )
            legs.credit(*_receivable(invoice, unpaid))
            legs.debit("tax_payable", unpaid_tax)
            rounding += unpaid - unpaid_tax
    legs.net_debit("sales_clearing", rounding)
    credit_note = refund.credit_note
    return _posting("REFUND", str(refund.uuid), legs, reference("refund", refund.uuid),
                    f"{credit_note.name} refunds {payment.name} on {invoice.name}",
                    actor_id)  # fmt: skip


def reference(kind: str, public_id: Any) -> str:
    """What a posting names as its cause: ``<kind>:<public id>`` of the document (``invoice``,
    ``payment``, ``credit-note``, ``refund``)."""
    return f"{kind}:{public_id}"


def references_of(
    invoices: Iterable[AccountMove], payments: Iterable[Payment], refunds: Iterable[Refund]
) -> list[str]:
    """The references of every posting these documents of an order may have caused: its
    invoices', its credit notes' (a reversal names the first of its notes), its payments' and
    its refunds'."""
    return [
        *(
            reference("invoice" if move.move_type == "out_invoice" else "credit-note", move.uuid)
            for move in invoices
        ),
        *(reference("payment", payment.uuid) for payment in payments),
        *(reference("refund", refund.uuid) for refund in refunds),
    ]


def _posting(
    operation: str,
    nonce: str,
    legs: _Legs,
    reference: str,
    memo: str | None,
    actor_id: int | None,
) -> Posting | None:
    built = legs.legs()
    if len(built) < 2:  # nothing moves (a zero invoice)
        return None
    return Posting(operation, nonce, built, reference, memo, actor_id)


def sum_amounts(records: Iterable[Any]) -> Decimal:
    """The sum of the records' ``amount`` (payments, refunds, or rows of them)."""
    return sum((record.amount for record in records), ZERO)
