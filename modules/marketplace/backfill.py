"""``lapak ledger backfill``: post the marketplace's history from before the ledger, once.

A database upgraded to the ledger holds invoices, confirmed payments and credit notes that
were never posted. This posts each, in the order it happened (invoices, then confirmations,
then credit notes and refunds, by time), each in its own transaction and under the same row
locks as the live change, with the postings the live code would have written
(:mod:`.postings`). What is posted already is skipped: each posting's nonce is its cause, so
running it again (or after a partial run) posts nothing twice.

Run it right after ``lapak db upgrade``, before serving: a payment of an invoice not yet posted
cannot be confirmed (the customer's receivable would not hold it).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select

from app.db import Session, transaction
from modules.ledger.models import Transaction
from modules.ledger.posting import Posting, post

from . import postings
from .models import AccountMove, Payment, Refund
from .services import _lock_order_and_invoice, _payments_of, lock_documents

ZERO = Decimal("0.00")


def run() -> int:
    """Post every invoice, confirmed payment, credit note and refund not posted yet; returns
    how many transactions were written."""
    history = _history()
    written = 0
    for _moment, _rank, _id, build in history:
        with transaction():
            posting = build()
            if posting is not None and not post(posting).replayed:
                written += 1
    return written


def _history() -> list[tuple[datetime, int, int, Callable[[], Posting | None]]]:
    session = Session()
    events: list[tuple[datetime, int, int, Callable[[], Posting | None]]] = []
    refund_notes = select(Refund.credit_note_id)
    for invoice_id, order_id, at in session.execute(
        select(AccountMove.id, AccountMove.order_id, AccountMove.created_at).where(
            AccountMove.move_type == "out_invoice", AccountMove.state == "posted"
        )
    ):
        events.append((at, 0, invoice_id, _invoice(order_id, invoice_id)))
    for payment_id, order_id, invoice_id, at in session.execute(
        # A payment confirmed without a time (never written so, but) goes with its invoice.
        select(
            Payment.id,
            AccountMove.order_id,
            AccountMove.id,
            func.coalesce(Payment.confirmed_at, AccountMove.created_at),
        )
        .join(AccountMove, AccountMove.id == Payment.invoice_id)
        .where(Payment.state == "paid")
    ):
        events.append((at, 1, payment_id, _capture(order_id, invoice_id, payment_id)))
    # An order's cancellation wrote its credit notes together: one posting for them. (A
    # standalone invoice's credit notes are left out: its reversal's are posted live, as
    # INVOICE_REVERSAL, and standalone invoices never come from before the ledger; its refunds'
    # are the refunds' below.)
    cancelled: dict[int, tuple[datetime, int]] = {}
    for note_id, order_id, at in session.execute(
        select(AccountMove.id, AccountMove.order_id, AccountMove.created_at)
        .where(
            AccountMove.move_type == "out_refund",
            AccountMove.id.not_in(refund_notes),
            AccountMove.order_id.is_not(None),
        )
        .order_by(AccountMove.id)
    ):
        cancelled.setdefault(order_id, (at, note_id))
    for order_id, (at, note_id) in cancelled.items():
        events.append((at, 2, note_id, _reversal(order_id)))
    for refund_id, order_id, invoice_id, at in session.execute(
        select(Refund.id, AccountMove.order_id, AccountMove.id, Refund.created_at).join(
            AccountMove, AccountMove.id == Refund.invoice_id
        )
    ):
        events.append((at, 2, refund_id, _refund(order_id, invoice_id, refund_id)))
    events.sort(key=lambda event: event[:3])
    Session().rollback()  # the reads end here; each posting has its own transaction
    return events


def _posted(operation: str, nonce: object) -> bool:
    return (
        Session().scalar(
            select(Transaction.id).where(
                Transaction.operation == operation, Transaction.nonce == str(nonce)
            )
        )
        is not None
    )


def _invoice(order_id: int | None, invoice_id: int) -> Callable[[], Posting | None]:
    def build() -> Posting | None:
        lock_documents(order_id, invoice_id)
        invoice = Session().get(AccountMove, invoice_id)
        if _posted("INVOICE_POST", invoice.uuid):
            return None
        made_by = invoice.order.created_by_id if invoice.order else invoice.created_by_id
        return postings.invoice_post(invoice, made_by)

    return build


def _capture(
    order_id: int | None, invoice_id: int, payment_id: int
) -> Callable[[], Posting | None]:
    def build() -> Posting | None:
        lock_documents(order_id, invoice_id)
        payment = Session().get(Payment, payment_id)
        if _posted("PAYMENT_CAPTURE", payment.uuid):
            return None
        invoice = payment.invoice
        postings.fix_split(invoice)
        before = postings.confirmed_before(payment, _payments_of(invoice), invoice.created_at)
        return postings.payment_capture(invoice, payment, before, payment.confirmed_by_id)

    return build


def _reversal(order_id: int) -> Callable[[], Posting | None]:
    def build() -> Posting | None:
        _lock_order_and_invoice(order_id)
        notes = list(
            Session().scalars(
                select(AccountMove)
                .where(
                    AccountMove.order_id == order_id,
                    AccountMove.move_type == "out_refund",
                    AccountMove.id.not_in(select(Refund.credit_note_id)),
                )
                .order_by(AccountMove.id)
            )
        )
        if not notes or _posted("INVOICE_REVERSAL", notes[0].uuid):
            return None
        invoices = [(note.reversed_entry, ZERO) for note in notes]
        return postings.invoice_reversal(invoices, notes, None)

    return build


def _refund(order_id: int | None, invoice_id: int, refund_id: int) -> Callable[[], Posting | None]:
    def build() -> Posting | None:
        lock_documents(order_id, invoice_id)
        refund = Session().get(Refund, refund_id)
        if _posted("REFUND", refund.uuid):
            return None
        payment = refund.payment
        invoice = payment.invoice
        postings.fix_split(invoice)
        refunds = Session().execute(
            select(Refund.id, Refund.amount).where(Refund.invoice_id == invoice.id)
        )
        refunded_before = postings.refunded_before(refund, refunds)
        confirmed = postings.sum_amounts(
            p
            for p in _payments_of(invoice)
            if p.state == "paid" and p.confirmed_at is not None
            and p.confirmed_at <= refund.created_at
        )  # fmt: skip
        covers_all = refunded_before + refund.amount == confirmed
        return postings.refund(
            invoice,
            payment,
            refund,
            refunded_before,
            confirmed_total=confirmed if covers_all else None,
            actor_id=refund.created_by_id,
        )

    return build
