"""Refunds of confirmed payments (PAYMENTS.md §4): a partial credit note and the ledger reversal.

Staff refund a confirmed (``paid``) payment, in part or whole: ``0 < amount <= payment amount
- refunds``, checked under the payment's row lock, taken in the one order every writer uses
(order -> invoices -> payment), so concurrent refunds of one payment serialise and can never
give back more than it brought. The same transaction writes the refund (``pending``), its
credit note ``RINV/...`` (gap-free, numbered last) and one ``REFUND`` posting
(:mod:`.postings`). The money goes back through the payment's method (staff send it by hand,
then mark the refund done: ``succeeded``, as they confirm payments), or, for a payment from the
customer's wallet or when staff choose it as the ``destination``, straight into the wallet: that
refund is ``succeeded`` at once, in the same transaction as its posting.

Once the refunds of an invoice cover every confirmed payment, the invoice is ``reversed`` (its
payments still in process are cancelled, what was never paid is reversed on the ledger in the
same posting) and its order may be cancelled.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

from sqlalchemy import Select, func, select

from app.db import Session, transaction, utcnow
from app.errors import Conflict, Invalid, NotFound
from app.events import emit
from app.http import Page, keyset_page
from app.security import Principal
from modules.ledger.posting import post

from . import idempotency, numbering, postings
from .config import marketplace_settings
from .idempotency import IdempotentRequest
from .models import AccountMove, AccountMoveLine, Payment, Refund
from .payments import held_methods, loaded_order_checkout
from .services import (
    STAFF_ROLES,
    Render,
    _check_amount,
    _get,
    _invoice_event,
    _payments_of,
    _year,
    get_payment,
    lock_documents,
    refused_by_database,
)

ZERO = Decimal("0.00")
CENT = Decimal("0.01")


class NotRefundable(Conflict):
    code = "payment-not-refundable"
    title = "The payment cannot be refunded"


class RefundExceedsPayment(Invalid):
    code = "refund-exceeds-payment"
    title = "The refund is more than what remains refundable"


class InvalidDestination(Invalid):
    code = "invalid-refund-destination"
    title = "The refund cannot go back that way"


@dataclass(frozen=True)
class RefundRequest:
    reason: str
    amount: Decimal | None = None
    #: A method holding the customer's money (``wallet``) to send it to instead of the
    #: payment's own method; None: the payment's method.
    destination: str | None = None


def create_refund(
    actor: Principal,
    payment_uuid: uuid.UUID,
    request: RefundRequest,
    idempotent: IdempotentRequest | None,
    render: Render,
) -> tuple[int, dict[str, Any]]:
    """Refund (part of) a confirmed payment: the refund, its credit note and its posting.

    Returns 201 and the rendered refund, or the first answer for a repeated
    ``Idempotency-Key``.
    """
    now = utcnow()
    with refused_by_database(), transaction():
        key = idempotency.begin(idempotent)
        if key.replay is not None:
            return key.replay.status_code, key.replay.body
        payment = _get(Payment, payment_uuid, "payment")
        lock_documents(payment.invoice.order_id, payment.invoice_id)
        Session().refresh(payment, with_for_update={"of": Payment})
        invoice = payment.invoice
        Session().refresh(invoice)
        if payment.state != "paid":
            raise NotRefundable(
                f"payment {payment.name} is {payment.state}: only a confirmed payment is refunded",
                state=payment.state,
            )
        earlier = _refunds_of_invoice(invoice.id)
        amount = _checked_amount(payment, request.amount, refundable(payment, earlier))
        destination = _destination(payment, request.destination)
        held = held_methods().get(destination)
        if held is not None:
            held.open_for(payment.customer_id, payment.currency)
        payments = _payments_of(invoice)
        refunded_before = postings.sum_amounts(earlier)
        confirmed = postings.sum_amounts(p for p in payments if p.state == "paid")
        # Refunds never exceed their payments, so reaching the confirmed total means covering it.
        covers_all = refunded_before + amount == confirmed
        postings.require_posted(invoice)
        postings.fix_split(invoice)  # an invoice from before the ledger: its sellers, now
        credit_note = _credit_note(invoice, amount, refunded_before)
        refund = Refund(
            uuid=uuid.uuid4(),
            payment=payment,
            payment_id=payment.id,
            invoice_id=invoice.id,
            credit_note=credit_note,
            customer_id=payment.customer_id,
            amount=amount,
            currency=payment.currency,
            reason=request.reason,
            destination=destination,
            state="pending" if held is None else "succeeded",
            created_at=now,
            created_by_id=actor.user_id,
            confirmed_at=None if held is None else now,
            confirmed_by_id=None if held is None else actor.user_id,
        )
        Session().add(refund)
        if covers_all:
            _reverse_invoice(invoice, payments, now)
        Session().flush()
        numbering.number_document(credit_note, "RINV", _year(now))
        emit("refund.created", refund_event(refund))
        if held is not None:
            emit("refund.succeeded", refund_event(refund))
        else:
            checkout = loaded_order_checkout()
            if checkout is not None:
                checkout.refund_created(refund)
        if covers_all:
            emit("invoice.reversed", _invoice_event(invoice))
        body = render(refund)
        key.complete(201, body)
        # Last: the ledger's locks come after the credit-note counter's.
        posting = postings.refund(
            invoice,
            payment,
            refund,
            refunded_before,
            confirmed_total=confirmed if covers_all else None,
            actor_id=actor.user_id,
        )
        if posting is not None:
            post(posting)
    return 201, body


def refundable(payment: Payment, refunds: Iterable[Refund]) -> Decimal:
    """What remains refundable on ``payment``, given every refund of it (others are ignored):
    what a refund takes when no amount is given, and the most one may take."""
    return payment.amount - postings.sum_amounts(r for r in refunds if r.payment_id == payment.id)


def _checked_amount(payment: Payment, amount: Decimal | None, remaining: Decimal) -> Decimal:
    if amount is None:
        if remaining <= 0:
            raise NotRefundable(
                f"payment {payment.name} is refunded in full already", state=payment.state
            )
        return remaining
    _check_amount(amount, payment.currency, "amount")
    if amount > remaining:
        raise RefundExceedsPayment(
            f"{amount} {payment.currency} is more than the {remaining} still refundable "
            f"on payment {payment.name}",
            errors={"amount": f"at most {remaining}"},
            refundable=str(remaining),
        )
    return amount


def _destination(payment: Payment, wanted: str | None) -> str:
    """The method the refund goes back through: the payment's, or one holding the customer's
    money (their wallet), unless the payment module says the money was not the customer's."""
    if wanted is None or wanted == payment.method:
        return payment.method
    held = held_methods()
    if wanted in held and payment.customer_id is None:
        raise InvalidDestination(
            f"the payer of {payment.name} has no account, so no {wanted} to send it to",
            errors={"destination": f"{payment.method}, the payment's own method"},
        )
    checkout = loaded_order_checkout() if wanted in held else None
    refused = checkout.holder_refund_refused(payment) if checkout is not None else None
    if refused is not None:
        raise InvalidDestination(
            f"a refund of {payment.name} goes back through {payment.method}: {refused}",
            errors={"destination": f"{payment.method}, the payment's own method"},
        )
    if wanted not in held:
        choices = sorted({payment.method, *held})
        raise InvalidDestination(
            f"a refund of {payment.name} goes back through {' or '.join(choices)}",
            errors={"destination": f"one of {', '.join(choices)}"},
        )
    return wanted


def _reverse_invoice(invoice: AccountMove, payments: Sequence[Payment], now: Any) -> None:
    """Every confirmed payment is refunded: the invoice is reversed and takes no more money."""
    invoice.payment_state = "reversed"
    invoice.amount_residual = ZERO
    for payment in payments:
        if payment.state == "in_process":
            payment.state = "canceled"
            payment.cancelled_at = now


def _credit_note(invoice: AccountMove, amount: Decimal, refunded_before: Decimal) -> AccountMove:
    """A partial credit note for ``amount``: the invoice's lines scaled, tax split as the ledger
    splits it, each amount exact (the parts add up to the refund)."""
    tax = postings.part(
        invoice.amount_tax, refunded_before, refunded_before + amount, invoice.amount_total
    )
    untaxed = amount - tax
    lines = list(invoice.lines)
    # Split over what each line has left to credit, not over its invoiced amount: the cents
    # each split rounds then never pile up on one line (one seller) across many refunds, no
    # line is credited more than it was invoiced, and the last refund credits exactly the rest.
    credited = _credited_per_line(invoice)
    subtotals = _allocate(
        untaxed,
        [line.price_subtotal - credited.get(line.sequence, (ZERO, ZERO))[0] for line in lines],
    )
    taxes = _allocate(
        tax, [line.price_tax - credited.get(line.sequence, (ZERO, ZERO))[1] for line in lines]
    )
    today = utcnow().astimezone(marketplace_settings().timezone).date()
    credit_note = AccountMove(
        move_type="out_refund",
        state="posted",
        payment_state="paid",  # settled by the refund
        order_id=invoice.order_id,
        customer_id=invoice.customer_id,
        payer_name=invoice.payer_name,
        payer_email=invoice.payer_email,
        issuer_id=invoice.issuer_id,
        currency=invoice.currency,
        invoice_date=today,
        invoice_date_due=today,
        amount_untaxed=untaxed,
        amount_tax=tax,
        amount_total=amount,
        amount_residual=ZERO,
        # The invoice's default percent only: the sellers' own percents (InvoiceCommission rows)
        # are not copied, so this is not how the refund splits among sellers. Refunds split by
        # the original invoice (postings.split_of(invoice), its commission rows included).
        commission_percent=invoice.commission_percent,
        reversed_entry_id=invoice.id,
        lines=[
            AccountMoveLine(
                sequence=line.sequence,
                product_id=line.product_id,
                seller_id=line.seller_id,
                name=f"Refund: {line.name}"[:200],
                quantity=Decimal(1),
                price_unit=subtotal,
                price_subtotal=subtotal,
                price_tax=line_tax,
                price_total=subtotal + line_tax,
                tax_percent=line.tax_percent,
            )
            for line, subtotal, line_tax in zip(lines, subtotals, taxes, strict=True)
        ],
    )
    Session().add(credit_note)
    return credit_note


def _credited_per_line(invoice: AccountMove) -> dict[int, tuple[Decimal, Decimal]]:
    """Untaxed and tax already credited per invoice line (by sequence) by its credit notes.

    Summed here, not in SQL: SQLite would sum NUMERIC as floats.
    """
    rows = Session().execute(
        select(AccountMoveLine.sequence, AccountMoveLine.price_subtotal, AccountMoveLine.price_tax)
        .join(AccountMove, AccountMove.id == AccountMoveLine.move_id)
        .where(AccountMove.reversed_entry_id == invoice.id, AccountMove.move_type == "out_refund")
    )
    credited: dict[int, tuple[Decimal, Decimal]] = {}
    for sequence, subtotal, tax in rows:
        before = credited.get(sequence, (ZERO, ZERO))
        credited[sequence] = (before[0] + subtotal, before[1] + tax)
    return credited


def _allocate(total: Decimal, weights: Sequence[Decimal]) -> list[Decimal]:
    """``total`` split in proportion to ``weights``, in cents that add up exactly (the largest
    remainders get the cents rounding down left over; ties to the first)."""
    whole = sum(weights, ZERO)
    if not weights:
        return []
    if whole == 0:
        return [total] + [ZERO] * (len(weights) - 1)
    exact = [total * weight / whole for weight in weights]
    parts = [value.quantize(CENT, rounding=ROUND_DOWN) for value in exact]
    left = int((total - sum(parts, ZERO)) / CENT)
    by_remainder = sorted(range(len(parts)), key=lambda i: parts[i] - exact[i])
    for index in by_remainder[:left]:
        parts[index] += CENT
    return parts


def _refunds_of_invoice(invoice_id: int) -> list[Refund]:
    return list(
        Session().scalars(
            select(Refund)
            .where(Refund.invoice_id == invoice_id)
            .order_by(Refund.id)
            .execution_options(populate_existing=True)
        )
    )


@dataclass(frozen=True)
class Received:
    """What an invoice's payments brought in, as its payments and refunds say (their states,
    as the API shows them): ``paid``, its confirmed (``paid``) payments less the refunds of them
    sent back (``succeeded``); ``in_process``, its payments registered but not confirmed (no
    money seen yet: a transfer announced, a provider's page opened)."""

    paid: Decimal
    in_process: Decimal


def received(invoice: AccountMove) -> Received:
    """What ``invoice``'s payments brought in (:class:`Received`); the one place it is summed.

    Summed here, not in SQL: SQLite would sum NUMERIC as floats."""
    payments = _payments_of(invoice)
    sent_back = Session().scalars(
        select(Refund.amount).where(Refund.invoice_id == invoice.id, Refund.state == "succeeded")
    )
    confirmed = postings.sum_amounts(p for p in payments if p.state == "paid")
    return Received(
        paid=confirmed - sum(sent_back, ZERO),
        in_process=postings.sum_amounts(p for p in payments if p.state == "in_process"),
    )


def unrefunded_confirmed(payments: Sequence[Payment]) -> list[Payment]:
    """Of ``payments``, the confirmed ones not refunded in full: money that has to go back
    before their invoice is reversed or their order cancelled."""
    refunded = refunded_per_payment([p.id for p in payments])
    return [p for p in payments if p.state == "paid" and refunded.get(p.id, ZERO) < p.amount]


def refunded_per_payment(payment_ids: Sequence[int]) -> dict[int, Decimal]:
    """The refunded total of each of these payments (absent: nothing refunded)."""
    if not payment_ids:
        return {}
    rows = Session().execute(
        select(Refund.payment_id, func.sum(Refund.amount))
        .where(Refund.payment_id.in_(payment_ids))
        .group_by(Refund.payment_id)
    )
    return {payment_id: total for payment_id, total in rows}


def provider_refunded(refund_uuid: uuid.UUID, reference: str) -> Refund:
    """The provider that took the payment sent the refund back (its ``reference``): the refund
    ``succeeded``, as staff mark it done. Once: a refund done already is left as it is."""
    with refused_by_database(), transaction():
        refund = _locked_refund(refund_uuid)
        if refund.state == "succeeded":
            return refund
        refund.state = "succeeded"
        refund.provider_reference = reference[:100]
        refund.confirmed_at = utcnow()
        Session().flush()
        emit("refund.succeeded", refund_event(refund))
    return refund


def _locked_refund(refund_uuid: uuid.UUID) -> Refund:
    refund = _get(Refund, refund_uuid, "refund")
    lock_documents(refund.payment.invoice.order_id, refund.payment.invoice_id)
    Session().refresh(refund.payment, with_for_update={"of": Payment})
    Session().refresh(refund, with_for_update={"of": Refund})
    return refund


def mark_refund_done(actor: Principal, refund_uuid: uuid.UUID) -> Refund:
    """Staff sent the money back through the payment's method: the refund ``succeeded``."""
    with refused_by_database(), transaction():
        refund = _locked_refund(refund_uuid)
        if refund.state == "succeeded":
            return refund  # marking it twice is harmless
        refund.state = "succeeded"
        refund.confirmed_at = utcnow()
        refund.confirmed_by_id = actor.user_id
        Session().flush()
        emit("refund.succeeded", refund_event(refund))
    return refund


# -- reading ------------------------------------------------------------------------------------


def _visible_refunds(actor: Principal) -> Select[tuple[Refund]]:
    """Staff see every refund; anyone else the refunds of their own payments."""
    statement = select(Refund)
    if actor.has_role(*STAFF_ROLES):
        return statement
    return statement.where(Refund.customer_id == actor.user_id)


def refunds_of(actor: Principal, payments: Sequence[Payment]) -> list[Refund]:
    """The refunds of ``payments`` (an order's, as :func:`.services.get_order` gave them) that
    ``actor`` may see, oldest first: staff every one, anyone else those of their own payments."""
    if not payments:
        return []
    return list(
        Session().scalars(
            _visible_refunds(actor)
            .where(Refund.payment_id.in_([payment.id for payment in payments]))
            .order_by(Refund.id)
        )
    )


def get_refund(actor: Principal, refund_uuid: uuid.UUID) -> Refund:
    refund = Session().scalars(_visible_refunds(actor).where(Refund.uuid == refund_uuid)).first()
    if refund is None:
        raise NotFound("there is no such refund")
    return refund


def list_refunds(
    actor: Principal, payment_uuid: uuid.UUID, *, limit: int, cursor: str | None
) -> Page:
    """The refunds of a payment, oldest first: for staff, and the payment's customer."""
    payment = get_payment(actor, payment_uuid)
    if not actor.has_role(*STAFF_ROLES) and payment.customer_id != actor.user_id:
        raise NotFound("there is no such payment")
    statement = _visible_refunds(actor).where(Refund.payment_id == payment.id)
    return keyset_page(statement, [Refund.created_at, Refund.id], limit=limit, cursor=cursor)


def refund_event(refund: Refund) -> dict[str, Any]:
    return {
        "refund": refund.uuid,
        "payment": refund.payment.uuid,
        "credit_note": refund.credit_note.name,
        "state": refund.state,
        "destination": refund.destination,
        "provider_reference": refund.provider_reference,
        "amount": refund.amount,
        "currency": refund.currency,
    }
