"""Orders, invoices and payments: placing, paying, confirming, cancelling and reading them.

Placing an order is one transaction in three steps, as an Odoo user would click through them:

1. ``order``: the sale order, confirmed (``sale``), priced from the catalogue;
2. ``invoice``: the customer invoice, posted, with the order's lines and totals;
3. ``payment``: the payment registered against the invoice (``in_process``), which makes the
   invoice ``in_payment`` (paid in full, not yet matched) or ``partial``.

Numbers are taken last (:mod:`.numbering`), so the invoice counter's row lock is held only for
the few statements before commit. A failure at any step rolls the whole transaction back, number
included, and is reported with the step's name.

Row locks are always taken in the same order, order -> invoice -> payments, so confirming,
cancelling and paying the same order serialise instead of deadlocking.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import Select, and_, bindparam, exists, or_, select, true
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.orm import lazyload, make_transient_to_detached

from app.db import (
    DriverStatement,
    Session,
    adopt_written,
    held_locks,
    insert_record,
    insert_records,
    is_unavailable,
    transaction,
    utcnow,
)
from app.errors import (
    Conflict,
    DomainError,
    Invalid,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    ValueNotStorable,
)
from app.events import emit, emit_many
from app.http import KeysetListing, Page
from app.security import Principal
from modules.fetch.rates import convert, rates
from modules.ledger.posting import post
from modules.user.models import User

from . import commissions, idempotency, numbering, postings
from .config import marketplace_settings
from .idempotency import IdempotentRequest
from .models import (
    CURRENCY_PLACES,
    AccountMove,
    AccountMoveLine,
    Payment,
    Product,
    SaleOrder,
    SaleOrderLine,
)
from .payments import loaded_order_checkout, order_checkout, payment_method
from .pricing import LineAmounts, line_amounts, round_money, totals
from .schemas import ORDER_SUMMARY_COLUMNS

STAFF_ROLES = ("staff", "admin")
CATALOGUE_CURRENCY = "IDR"


class PriceChanged(Conflict):
    code = "price-changed"
    title = "The price is not the catalogue price"


class OverPayment(Invalid):
    code = "payment-exceeds-residual"
    title = "The payment is more than the amount due"


class StepFailed(ServiceUnavailable):
    code = "order-step-failed"
    title = "The order could not be completed"


class PaymentStartedMeanwhile(Conflict):
    """Nothing is down: a payer started a payment between the cancellation of those in flight
    and the invoice's lock. The same request again cancels it too."""

    code = "payment-started-meanwhile"
    title = "A payment was started meanwhile: try again"


# -- requests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineRequest:
    product: str
    quantity: Decimal
    price_unit: Decimal | None = None


@dataclass(frozen=True)
class PaymentRequest:
    method: str | None = None
    amount: Decimal | None = None
    reference: str | None = None
    #: Pay through this provider (the ``payment`` module's): the method is the provider's and
    #: the answer carries its transaction with the ``action`` for the payer.
    provider: str | None = None


@dataclass(frozen=True)
class OrderRequest:
    lines: Sequence[LineRequest]
    payment: PaymentRequest
    currency: str = CATALOGUE_CURRENCY
    customer: uuid.UUID | None = None


@dataclass
class Placed:
    """What placing an order made."""

    order: SaleOrder
    invoice: AccountMove
    payment: Payment


@dataclass(frozen=True)
class OrderFilter:
    state: str | None = None
    payment_state: str | None = None
    customer: uuid.UUID | None = None
    since: datetime | None = None
    before: datetime | None = None
    total_min: Decimal | None = None
    total_max: Decimal | None = None
    number: str | None = None

    @classmethod
    def of(cls, query: Mapping[str, Any]) -> OrderFilter:
        """The filters of a listing's query arguments (as ``OrderQuerySchema`` loads them)."""
        return cls(**{f.name: query[f.name] for f in dataclasses.fields(cls)})


Render = Callable[[Any], dict[str, Any]]


# -- placing an order -------------------------------------------------------------------------


def place_order(
    actor: Principal,
    request: OrderRequest,
    idempotent: IdempotentRequest | None,
    render: Render,
) -> tuple[int, dict[str, Any]]:
    """Create the confirmed order, its posted invoice and the registered payment, atomically.

    Returns the status and the rendered body (201), or the first answer for a repeated
    ``Idempotency-Key``.
    """
    now = utcnow()
    numbering.prepare_year(("SO", "PAY"), _year(now))
    with refused_by_database(), transaction():
        key = idempotency.begin(idempotent)
        if key.replay is not None:
            return key.replay.status_code, key.replay.body
        with _step("numbering"):
            numbers = numbering.take_unique(("SO", "PAY"), _year(now))
        with _step("order"):
            order = _create_order(actor, request, numbers["SO"], now)
        with _step("invoice"):
            invoice = _post_invoice(order)
        with _step("payment"):
            payment_request = request.payment
            if (payment_request.method is None) == (payment_request.provider is None):
                raise Invalid(
                    "a payment names its method or its provider (one of them)",
                    errors={"payment.method": "a method, or else a provider"},
                )
            if payment_request.provider is not None:
                method = order_checkout().method_for(payment_request.provider, order.currency)
                payment_request = dataclasses.replace(payment_request, method=method)
            payment = _register_payment(
                invoice,
                payment_request,
                numbers["PAY"],
                now,
                new_invoice=True,
                registered=payment_request.provider is not None,
            )
        _write_placed(order, invoice, payment)
        checkout: dict[str, Any] | None = None
        if payment_request.provider is not None:
            with _step("payment"):
                checkout = order_checkout().start(
                    actor, payment, {"provider": payment_request.provider}
                )
        order.payment_state = invoice.payment_state  # the answer renders these objects
        events = [
            ("order.confirmed", _order_event(order)),
            ("payment.registered", _payment_event(payment)),
        ]
        # From here to the commit the invoice counter is locked: nothing but the number, the
        # events (one INSERT; one of them needs the number) and an Idempotency-Key's answer.
        with _step("numbering"):
            numbering.number_document(invoice, "INV", _year(order.date_order))
        emit_many([*events, ("invoice.posted", _invoice_event(invoice))])
        if key.keyed:
            body = _with_checkout(render(Placed(order, invoice, payment)), checkout)
            key.complete(201, body)
        with _step("ledger"):  # last: the ledger's locks come after the invoice counter's
            _post(postings.invoice_post(invoice, actor.user_id))
    settled = order_checkout().after_placing(checkout) if checkout is not None else None
    if settled is not None:
        # The payment settled (or failed) after the order: the answer shows them as they are.
        with transaction():
            placed = Placed(*(_reloaded(record) for record in (order, invoice, payment)))
            body = _with_checkout(render(placed), settled)
            key.complete(201, body)
    elif not key.keyed:
        # committed objects; no query needed
        body = _with_checkout(render(Placed(order, invoice, payment)), checkout)
    return 201, body


def _reloaded(record: Any) -> Any:
    model = type(record)
    return (
        Session()
        .scalars(
            select(model).where(model.id == record.id).execution_options(populate_existing=True)
        )
        .one()
    )


def _with_checkout(body: dict[str, Any], checkout: dict[str, Any] | None) -> dict[str, Any]:
    """The answer, with the provider transaction when the order pays through a provider."""
    if checkout is not None:
        body["transaction"] = checkout
    return body


@contextlib.contextmanager
def _step(name: str) -> Iterator[None]:
    """Name the step a failure happened in, in the problem the client gets."""
    try:
        yield
    except DomainError as error:
        _in_step(name, error)
        raise
    except DataError as error:
        # A value of the request does not fit its column (an amount too large to store): the
        # input's fault, so a 422, never "try again".
        raise _in_step(name, ValueNotStorable()) from error
    except DBAPIError as error:
        # The database refused a statement of this step; the client can retry, and must not
        # see SQL. The original error stays in the log through the exception chain.
        raise _in_step(
            name,
            StepFailed(
                f"the database refused this step ({type(error.orig).__name__}); "
                "nothing was saved, try again"
            ),
        ) from error


def _in_step(name: str, error: DomainError) -> DomainError:
    error.extra.setdefault("step", name)
    if error.detail and not error.detail.startswith(f"{name}: "):
        error.detail = f"{name}: {error.detail}"
    return error


@contextlib.contextmanager
def refused_by_database() -> Iterator[None]:
    """A write the database refused (a deadlock, a lock timeout, a value out of range), at any
    statement or at the commit: 422 for a value that cannot be stored, else an honest 503 that
    says nothing was saved; never a 500. Put it outside ``transaction()``, so the commit is in."""
    try:
        yield
    except DataError as error:
        raise ValueNotStorable() from error
    except DBAPIError as error:
        if is_unavailable(error):
            raise  # the database is down: the app answers database-unavailable (503)
        raise StepFailed(
            f"the database refused the change ({type(error.orig).__name__}); nothing was "
            "saved, try again"
        ) from error


def _write_placed(order: SaleOrder, invoice: AccountMove, payment: Payment) -> None:
    """Insert a new order, its invoice and payment: five plain INSERTs (and the sellers' own
    commission percents when its lines have sellers, see :mod:`.commissions`).

    The objects were built outside the session and stay so (they render the answer); the
    unit of work would cost several times what these statements do, on the busiest path.
    """
    with _step("order"):
        insert_record(order)
        insert_records(order.lines, order_id=order.id)
    with _step("invoice"):
        invoice.order_id = order.id
        insert_record(invoice)
        insert_records(invoice.lines, move_id=invoice.id)
        commissions.fix_for(invoice)  # nothing at all for an invoice without sellers' lines
    with _step("payment"):
        payment.invoice_id = invoice.id
        insert_record(payment)


def _create_order(actor: Principal, request: OrderRequest, number: str, now: datetime) -> SaleOrder:
    settings = marketplace_settings()
    customer_id = _customer_for(actor, request.customer)
    currency = request.currency.strip().upper()
    if currency not in CURRENCY_PLACES:
        raise Invalid(
            f"orders are in {' or '.join(CURRENCY_PLACES)}, not {request.currency!r}",
            errors={"currency": f"one of {', '.join(CURRENCY_PLACES)}"},
        )
    if not request.lines:
        raise Invalid("an order needs at least one line", errors={"lines": "at least one"})
    if len(request.lines) > settings.max_lines:
        raise Invalid(
            f"an order has at most {settings.max_lines} lines",
            errors={"lines": f"at most {settings.max_lines}"},
        )
    if currency == CATALOGUE_CURRENCY:
        rate, rate_source = Decimal(1), None
    else:
        quote = rates().current_rate(CATALOGUE_CURRENCY, currency)
        rate, rate_source = quote.rate, quote.source
    products = _products_for(request.lines)
    customer = _order_customer(actor, customer_id)  # now: rendering must not query later
    order = SaleOrder(
        uuid=uuid.uuid4(),  # set now, not at flush: the events are built before the flush
        name=number,
        customer=customer,
        state="sale",
        customer_id=customer_id,
        created_by_id=actor.user_id,
        currency=currency,
        currency_rate=rate,
        rate_source=rate_source,
        tax_percent=settings.tax_percent,
        date_order=now,
    )
    amounts: list[LineAmounts] = []
    for index, (line, product) in enumerate(zip(request.lines, products, strict=True)):
        quantity = _checked_quantity(line.quantity, index, settings.max_quantity)
        price_unit = _catalogue_price(product, currency, rate)
        if line.price_unit is not None and line.price_unit != price_unit:
            raise PriceChanged(
                f"line {index}: {product.name} costs {price_unit} {currency}, "
                f"not {line.price_unit}; order again with the current price",
                line=index,
                product=str(product.uuid),
                current_price=str(price_unit),
                currency=currency,
            )
        line_amount = line_amounts(quantity, price_unit, settings.tax_percent, currency)
        amounts.append(line_amount)
        order.lines.append(
            SaleOrderLine(
                sequence=index,
                product_id=product.id,
                product=product,
                name=product.name,
                quantity=quantity,
                price_unit=price_unit,
                price_subtotal=line_amount.subtotal,
                price_tax=line_amount.tax,
                price_total=line_amount.total,
            )
        )
    order_totals = totals(amounts)
    order.amount_untaxed = order_totals.untaxed
    order.amount_tax = order_totals.tax
    order.amount_total = order_totals.total
    return order


def _post_invoice(order: SaleOrder) -> AccountMove:
    settings = marketplace_settings()
    invoice_date = order.date_order.astimezone(settings.timezone).date()
    invoice = AccountMove(
        uuid=uuid.uuid4(),
        move_type="out_invoice",
        state="posted",
        payment_state="not_paid",
        order=order,
        customer=order.customer,
        customer_id=order.customer_id,
        currency=order.currency,
        invoice_date=invoice_date,
        invoice_date_due=invoice_date + timedelta(days=settings.due_days),
        amount_untaxed=order.amount_untaxed,
        amount_tax=order.amount_tax,
        amount_total=order.amount_total,
        amount_residual=order.amount_total,
        commission_percent=settings.commission_percent,
        lines=[_move_line(line, order.tax_percent) for line in order.lines],
    )
    return invoice


def _move_line(
    line: SaleOrderLine | AccountMoveLine, tax_percent: Decimal | None = None
) -> AccountMoveLine:
    """An invoice line of an order line (taxed at the order's ``tax_percent``), or a copy of an
    invoice line (for its credit note)."""
    copied = isinstance(line, AccountMoveLine)
    return AccountMoveLine(
        sequence=line.sequence,
        product_id=line.product_id,
        product=line.product,
        name=line.name,
        quantity=line.quantity,
        price_unit=line.price_unit,
        price_subtotal=line.price_subtotal,
        price_tax=line.price_tax,
        price_total=line.price_total,
        tax_percent=line.tax_percent if copied else tax_percent,
        # An invoice line keeps the seller it had; an order line takes the product's.
        seller_id=line.seller_id if copied else line.product.seller_id,
    )


def _post(posting: postings.Posting | None) -> None:
    if posting is not None:
        post(posting)


def _register_payment(
    invoice: AccountMove,
    request: PaymentRequest,
    number: str,
    now: datetime,
    *,
    new_invoice: bool = False,
    registered: bool = False,
    written: bool = False,
) -> Payment:
    """Register a payment on a posted invoice (locked by the caller, or just created).

    ``registered``: the method may be a provider module's (see :mod:`.payments`)."""
    if request.method is None:
        raise Invalid("a payment needs a method", errors={"payment.method": "required"})
    method = payment_method(request.method, registered=registered)
    if invoice.state != "posted":
        raise Conflict(
            f"invoice {invoice.name or '(a draft)'} takes no payment: it is {invoice.state}, "
            "not posted",
            state=invoice.state,
        )
    if invoice.payment_state in ("paid", "in_payment", "reversed"):
        raise Conflict(
            f"invoice {invoice.name or ''} takes no payment: it is {invoice.payment_state}".strip(),
            payment_state=invoice.payment_state,
        )
    if method.holder_purpose is not None and invoice.customer_id is None:
        raise Invalid(
            f"{method.label} pays from money a customer holds here; this invoice's payer has "
            "no account: pay it another way",
            errors={"payment.method": f"not {method.code} for a payer without an account"},
        )
    amount = invoice.amount_residual if request.amount is None else request.amount
    _check_amount(amount, invoice.currency, "payment.amount")
    if amount > invoice.amount_residual:
        raise OverPayment(
            f"{amount} {invoice.currency} is more than the {invoice.amount_residual} due",
            errors={"payment.amount": f"at most {invoice.amount_residual}"},
            residual=str(invoice.amount_residual),
        )
    method.check(amount, invoice.currency, request.reference)
    payment = Payment(
        uuid=uuid.uuid4(),
        name=number,
        state="in_process",
        invoice=invoice,
        customer_id=invoice.customer_id,
        customer=invoice.customer,
        method=method.code,
        amount=amount,
        currency=invoice.currency,
        reference=request.reference,
        created_at=now,
    )
    invoice.amount_residual -= amount
    if new_invoice:  # nothing written yet: the whole order is written at once
        invoice.payment_state = "in_payment" if invoice.amount_residual == 0 else "partial"
        return payment
    if written:  # one plain INSERT now; later changes are the next flush's UPDATE
        earlier = _payment_rows(invoice)
        payment.invoice_id = invoice.id
        insert_record(payment)
        adopt_written(payment)
        rows = [*earlier, PaymentRow.of(payment)]
    else:
        Session().add(payment)
        Session().flush()
        rows = _payment_rows(invoice)
    invoice.payment_state = _payment_state(invoice, rows)
    return payment


def _payment_state(invoice: AccountMove, payments: Sequence[Payment | PaymentRow]) -> str:
    """Odoo's rule: residual 0 -> paid when every payment is matched, else in_payment."""
    if invoice.payment_state == "reversed":
        return "reversed"
    if invoice.amount_residual == 0:
        live = [p for p in {p.id: p for p in payments}.values() if p.state != "canceled"]
        return "paid" if live and all(p.state == "paid" for p in live) else "in_payment"
    if invoice.amount_residual < invoice.amount_total:
        return "partial"
    return "not_paid"


class PaymentRow(NamedTuple):
    id: int
    state: str
    amount: Decimal
    confirmed_at: datetime | None

    @classmethod
    def of(cls, payment: Payment) -> PaymentRow:
        return cls(payment.id, payment.state, payment.amount, payment.confirmed_at)


def _payment_rows(invoice: AccountMove) -> list[PaymentRow]:
    """The invoice's payments as the database has them, without loading them (or what they
    join) as objects: what its payment state and the capture's split need."""
    rows = _PAYMENT_ROWS.rows(Session().connection(), {"invoice_id": invoice.id})
    return [PaymentRow(*row) for row in rows]


_PAYMENT_ROWS = DriverStatement(
    select(Payment.id, Payment.state, Payment.amount, Payment.confirmed_at)
    .where(Payment.invoice_id == bindparam("invoice_id"))
    .order_by(Payment.id)
)


def _payments_of(invoice: AccountMove) -> list[Payment]:
    if invoice.id is None:
        return []
    return list(
        Session().scalars(
            select(Payment)
            .where(Payment.invoice_id == invoice.id)
            .order_by(Payment.id)
            .execution_options(populate_existing=True)
        )
    )


# -- after the order ----------------------------------------------------------------------------


def register_payment(
    actor: Principal,
    invoice_uuid: uuid.UUID,
    request: PaymentRequest,
    idempotent: IdempotentRequest | None,
    render: Render,
) -> tuple[int, dict[str, Any]]:
    """A further payment on a partially paid invoice."""
    now = utcnow()
    numbering.prepare_year(("PAY",), _year(now))
    with refused_by_database(), transaction():
        key = idempotency.begin(idempotent)
        if key.replay is not None:
            return key.replay.status_code, key.replay.body
        invoice = _visible_invoice(actor, invoice_uuid)
        if invoice.move_type != "out_invoice":
            raise Conflict("a credit note takes no payment")
        lock_documents(invoice.order_id, invoice.id)
        Session().refresh(invoice)
        number = numbering.take_unique(("PAY",), _year(now))["PAY"]
        payment = _register_payment(invoice, request, number, now)
        emit("payment.registered", _payment_event(payment))
        body = render(payment)
        key.complete(201, body)
    return 201, body


def confirm_payment(actor: Principal | None, payment_uuid: uuid.UUID) -> Payment:
    """Staff saw the money: the payment is matched (``paid``) and the invoice follows.

    ``actor`` None: a payment provider confirmed it (the ``payment`` module, inside its own
    transaction, which this one joins).
    """
    with refused_by_database(), transaction():
        return _confirm(actor, _get(Payment, payment_uuid, "payment"))


def confirm_provider_payment(payment: Payment) -> Payment:
    """A payment provider confirmed ``payment`` (the ``payment`` module, inside its own
    transaction, which this joins): as :func:`confirm_payment` by no one."""
    with transaction():
        return _confirm(None, payment)


def _confirm(actor: Principal | None, payment: Payment) -> Payment:
    actor_id = actor.user_id if actor is not None else None
    if lock_documents(payment.invoice.order_id, payment.invoice_id):
        Session().refresh(payment.invoice)
    if ("payment", payment.uuid) not in held_locks():
        # Lock the payment row only: its joined relationships are outer joins, which FOR
        # UPDATE cannot lock.
        Session().refresh(payment, with_for_update={"of": Payment})
        held_locks()["payment", payment.uuid] = True
    invoice = payment.invoice
    if payment.state == "paid":
        return payment  # confirming twice is harmless
    if payment.state == "canceled":
        raise Conflict(f"payment {payment.name} was cancelled with its order", state=payment.state)
    if actor is not None and payment_method(payment.method, registered=True).holder_purpose:
        # Money the customer holds (their wallet) is drawn by its transaction only, under
        # the wallet's checks; staff cancel the transaction instead.
        raise Conflict(
            f"payment {payment.name} is paid by its {payment.method} transaction, not by staff",
            state=payment.state,
        )
    postings.require_posted(invoice)
    written = _payment_rows(invoice)
    payment.state = "paid"
    payment.confirmed_at = postings.confirmation_time(
        utcnow(), (row for row in written if row.id != payment.id)
    )
    payment.confirmed_by_id = actor_id
    # As they are written with the invoice's state (this one as it is now).
    payments = [PaymentRow.of(payment) if row.id == payment.id else row for row in written]
    invoice.payment_state = _payment_state(invoice, payments)
    events = [("payment.confirmed", _payment_event(payment))]
    if invoice.payment_state == "paid":
        events.append(("invoice.paid", _invoice_event(invoice)))
    emit_many(events)
    postings.fix_split(invoice)
    before = postings.confirmed_before(payment, payments, invoice.created_at)
    _post(postings.payment_capture(invoice, payment, before, actor_id))
    return payment


def register_provider_payment(invoice: AccountMove, method: str, amount: Decimal | None) -> Payment:
    """A payment through a provider module's ``method`` on ``invoice`` (one the caller read
    through :func:`get_invoice`, as its actor may see it), registered ``in_process`` as any
    other, in the caller's transaction (the ``payment`` module's, which also writes the provider
    transaction). Written by the caller's next flush (with its provider transaction). Confirmed
    by :func:`confirm_provider_payment`, or given back by :func:`release_payment` if the
    provider fails it."""
    now = utcnow()
    numbering.prepare_year(("PAY",), _year(now))
    with transaction():
        if invoice.move_type != "out_invoice":
            raise Conflict("a credit note takes no payment")
        if lock_documents(invoice.order_id, invoice.id):
            Session().refresh(invoice)
        number = numbering.take_unique(("PAY",), _year(now))["PAY"]
        request = PaymentRequest(method=method, amount=amount)
        payment = _register_payment(invoice, request, number, now, registered=True, written=True)
        held_locks()["payment", payment.uuid] = True  # written by this transaction
        emit("payment.registered", _payment_event(payment))
    return payment


def release_payment(payment_id: int, reason: str) -> Payment:
    """A registered payment whose money will not come (its provider failed or it expired):
    ``canceled``, and its amount is due again on the invoice. Nothing was posted for it, so
    nothing is reversed. Joins the caller's transaction; a confirmed payment is refused."""
    with transaction():
        payment = Session().get(Payment, payment_id)
        if payment is None:
            raise NotFound("there is no such payment")
        lock_documents(payment.invoice.order_id, payment.invoice_id)
        Session().refresh(payment, with_for_update={"of": Payment})
        invoice = payment.invoice
        Session().refresh(invoice)
        if payment.state == "canceled":
            return payment
        if payment.state == "paid":
            raise Conflict(f"payment {payment.name} is confirmed already", state=payment.state)
        payment.state = "canceled"
        payment.cancelled_at = utcnow()
        if invoice.payment_state != "reversed":
            invoice.amount_residual += payment.amount
        Session().flush()
        invoice.payment_state = _payment_state(invoice, _payments_of(invoice))
        emit("payment.cancelled", {**_payment_event(payment), "reason": reason})
    return payment


def cancel_order(actor: Principal, order_uuid: uuid.UUID) -> SaleOrder:
    """Cancel the payments, reverse the invoice with a credit note, cancel the order.

    Refused while a confirmed payment is not refunded in full: that money has to go back first.
    """
    with refused_by_database(), transaction():
        order = _visible_order(actor, order_uuid)
        if not actor.has_role(*STAFF_ROLES) and order.customer_id != actor.user_id:
            raise PermissionDenied("only staff and the order's customer can cancel it")
        checkout = loaded_order_checkout()
        if checkout is not None and order.state != "cancel":
            # Its provider transactions in flight go with it (rolled back if refused below).
            checkout.order_cancelling(order.id)
        _lock_order_and_invoice(order.id)
        Session().refresh(order)
        if order.state == "cancel":
            return order
        invoices = _invoices_of(order)
        payments = [p for invoice in invoices for p in _payments_of(invoice)]
        from .refunds import unrefunded_confirmed  # refunds builds on this module

        confirmed = unrefunded_confirmed(payments)
        if confirmed:
            raise Conflict(
                f"order {order.name} has a confirmed payment ({confirmed[0].name}); "
                "it cannot be cancelled until the money is refunded",
                payment=confirmed[0].name,
            )
        refuse_started_meanwhile(payments)
        for invoice in invoices:
            if invoice.state == "posted" and invoice.payment_state != "reversed":
                postings.require_posted(invoice)
        now = utcnow()
        for payment in payments:
            if payment.state == "in_process":
                payment.state = "canceled"
                payment.cancelled_at = now
        credit_notes, reversed_invoices = [], []
        for invoice in invoices:
            if invoice.state == "posted" and invoice.payment_state != "reversed":
                reversed_invoices.append(invoice)
                credit_notes.append(_reverse(invoice))
        order.state = "cancel"
        order.cancelled_at = now
        Session().flush()
        for credit_note in credit_notes:
            numbering.number_document(credit_note, "RINV", _year(now))
        emit("order.cancelled", _order_event(order))
        for credit_note in credit_notes:
            emit("invoice.reversed", _invoice_event(credit_note))
        # Nothing is confirmed on these invoices: the receivable holds all of each.
        _post(
            postings.invoice_reversal(
                [(invoice, Decimal(0)) for invoice in reversed_invoices],
                credit_notes,
                actor.user_id,
            )
        )
    return order


def refuse_started_meanwhile(payments: Sequence[Payment]) -> None:
    """Under the invoice's lock, before cancelling its payments in process: refuse (a 409 to
    retry) when a provider transaction in flight pays one of them. It was started after the
    payment module cancelled the transactions in flight (they are locked before their
    invoice, never after it, so that was done before the invoice's lock, and a payer could
    start one in between); cancelling its payment alone would leave the transaction open to
    take the payer's money for a cancelled invoice. The retry cancels it, in that order."""
    checkout = loaded_order_checkout()
    waiting = [payment.id for payment in payments if payment.state == "in_process"]
    if checkout is None or not waiting:
        return
    started = checkout.payments_in_flight(waiting)
    if started:
        raise PaymentStartedMeanwhile(
            "a payment through a provider was started meanwhile; nothing was changed, try again"
        )


def _reverse(invoice: AccountMove) -> AccountMove:
    today = utcnow().astimezone(marketplace_settings().timezone).date()
    credit_note = AccountMove(
        move_type="out_refund",
        state="posted",
        payment_state="paid",  # settled by the invoice it reverses, as Odoo reconciles them
        order_id=invoice.order_id,
        customer_id=invoice.customer_id,
        payer_name=invoice.payer_name,
        payer_email=invoice.payer_email,
        issuer_id=invoice.issuer_id,
        currency=invoice.currency,
        invoice_date=today,
        invoice_date_due=today,
        amount_untaxed=invoice.amount_untaxed,
        amount_tax=invoice.amount_tax,
        amount_total=invoice.amount_total,
        amount_residual=Decimal(0),
        reversed_entry_id=invoice.id,
        lines=[_move_line(line) for line in invoice.lines],
    )
    Session().add(credit_note)
    invoice.payment_state = "reversed"
    invoice.amount_residual = Decimal(0)
    return credit_note


def lock_documents(order_id: int | None, invoice_id: int) -> bool:
    """Lock an invoice's documents in the one order every writer uses: its order, then the
    order's invoices (:func:`_lock_order_and_invoice`); a standalone invoice (no order), its own
    row. False when this transaction holds them already (then what it read of them since is
    current). A standalone invoice's credit notes are only ever written under its lock."""
    if order_id is not None:
        return _lock_order_and_invoice(order_id)
    held = held_locks()
    if ("invoice", invoice_id) in held:
        return False
    _LOCK_INVOICE.rows(Session().connection(), {"invoice_id": invoice_id})
    held["invoice", invoice_id] = True
    return True


_LOCK_INVOICE = DriverStatement(
    select(AccountMove.id).where(AccountMove.id == bindparam("invoice_id")).with_for_update()
)


def _lock_order_and_invoice(order_id: int) -> bool:
    """Row locks in the one order every writer uses: the order, then its invoices. False when
    this transaction holds them already (then what it read of them since is current)."""
    held = held_locks()
    if ("order", order_id) in held:
        return False
    connection = Session().connection()
    _LOCK_ORDER.rows(connection, {"order_id": order_id})
    _LOCK_INVOICES.rows(connection, {"order_id": order_id})
    held["order", order_id] = True
    return True


_LOCK_ORDER = DriverStatement(
    select(SaleOrder.id).where(SaleOrder.id == bindparam("order_id")).with_for_update()
)
_LOCK_INVOICES = DriverStatement(
    select(AccountMove.id)
    .where(AccountMove.order_id == bindparam("order_id"))
    .order_by(AccountMove.id)
    .with_for_update()
)


def lock_invoice(invoice_id: int) -> None:
    """Lock an invoice's order and invoices (a standalone invoice: itself), in the order every
    writer takes them (for a module about to change a payment of it: the wallet, before its
    own row)."""
    found = (
        Session().execute(select(AccountMove.order_id).where(AccountMove.id == invoice_id)).first()
    )
    if found is not None:
        lock_documents(found.order_id, invoice_id)


def _invoices_of(order: SaleOrder) -> list[AccountMove]:
    return list(
        Session().scalars(
            select(AccountMove)
            .where(AccountMove.order_id == order.id, AccountMove.move_type == "out_invoice")
            .order_by(AccountMove.id)
            .execution_options(populate_existing=True)
        )
    )


# -- reading ------------------------------------------------------------------------------------


_ORDERS = SaleOrder.__table__
_INVOICES = AccountMove.__table__
#: The payment state of the order's latest invoice: ``SaleOrder.payment_state``, on the tables.
_latest_payment_state = (
    select(_INVOICES.c.payment_state)
    .where(_INVOICES.c.order_id == _ORDERS.c.id, _INVOICES.c.move_type == "out_invoice")
    .order_by(_INVOICES.c.id.desc())
    .limit(1)
    .correlate(_ORDERS)
    .scalar_subquery()
)
#: What a listed order shows (``schemas.order_summary``): plain columns of the tables, so the
#: page is read as rows with no entity to hydrate nor ORM step. The customer's public id only,
#: not their whole row (hash included).
ORDER_SUMMARIES = (
    select(
        _ORDERS.c.id,
        _ORDERS.c.uuid,
        _ORDERS.c.name,
        _ORDERS.c.state,
        User.__table__.c.uuid.label("customer"),
        _ORDERS.c.currency,
        _ORDERS.c.currency_rate,
        _ORDERS.c.tax_percent,
        _ORDERS.c.date_order,
        _ORDERS.c.amount_untaxed,
        _ORDERS.c.amount_tax,
        _ORDERS.c.amount_total,
        _ORDERS.c.cancelled_at,
        _latest_payment_state.label("payment_state"),
    )
    .select_from(_ORDERS)
    .outerjoin(User.__table__, User.__table__.c.id == _ORDERS.c.customer_id)
)


_ORDER_PAGES = KeysetListing([_ORDERS.c.date_order, _ORDERS.c.id], descending=True)
_USERS = User.__table__
#: Each filter of :class:`OrderFilter` as a condition on the order, its value the parameter of
#: the same name.
_ORDER_FILTERS: dict[str, Any] = {
    "state": _ORDERS.c.state == bindparam("state"),
    "customer": _ORDERS.c.customer_id
    == select(_USERS.c.id).where(_USERS.c.uuid == bindparam("customer")).scalar_subquery(),
    "since": _ORDERS.c.date_order >= bindparam("since"),
    "before": _ORDERS.c.date_order < bindparam("before"),
    "total_min": _ORDERS.c.amount_total >= bindparam("total_min"),
    "total_max": _ORDERS.c.amount_total <= bindparam("total_max"),
    "number": _ORDERS.c.name.like(bindparam("number"), escape="\\"),
    # The very expression each order shows, so the filter and the listing never disagree.
    "payment_state": _latest_payment_state == bindparam("payment_state"),
}


if tuple(c.key for c in ORDER_SUMMARIES.selected_columns) != ORDER_SUMMARY_COLUMNS:
    raise RuntimeError("schemas.order_summary reads other columns than ORDER_SUMMARIES has")


def list_orders(actor: Principal, filters: OrderFilter, *, limit: int, cursor: str | None) -> Page:
    """Orders the actor may see, newest first, filtered, one page of rows (not entities) with
    the columns of :data:`ORDER_SUMMARIES`."""
    values = _filter_values(filters)
    viewer = _viewer(actor)
    params = values if viewer == "staff" else {**values, "viewer_id": actor.user_id}
    given = tuple(values)

    def build() -> Select[Any]:
        statement = _narrowed(viewer, ORDER_SUMMARIES)
        return statement.where(*(_ORDER_FILTERS[name] for name in given))

    return _ORDER_PAGES.page((viewer, given), build, params, limit=limit, cursor=cursor)


def _filter_values(filters: OrderFilter) -> dict[str, Any]:
    """The filters given, as the parameters of :data:`_ORDER_FILTERS`, in its order."""
    values: dict[str, Any] = {}
    for name in _ORDER_FILTERS:
        value = getattr(filters, name)
        if value is None or value == "":
            continue
        values[name] = like_pattern(value) if name == "number" else value
    return values


def like_pattern(part: str) -> str:
    """A ``LIKE ... ESCAPE '\\'`` pattern matching the numbers that hold ``part`` (upper-cased;
    its ``%``, ``_`` and ``\\`` taken literally)."""
    escaped = part.strip().upper().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _visible_orders(actor: Principal) -> Select[tuple[SaleOrder]]:
    return _only_visible(actor, select(SaleOrder))


def _only_visible(actor: Principal, statement: Select[Any]) -> Select[Any]:
    """``statement`` (of sale orders) narrowed to the orders ``actor`` may see."""
    viewer = _viewer(actor)
    narrowed = _narrowed(viewer, statement)
    return narrowed if viewer == "staff" else narrowed.params(viewer_id=actor.user_id)


def _viewer(actor: Principal) -> str:
    """Which orders ``actor`` sees: ``staff`` all, ``seller`` those with their products,
    ``customer`` their own."""
    if actor.has_role(*STAFF_ROLES):
        return "staff"
    return "seller" if actor.has_role("seller") else "customer"


def _narrowed(viewer: str, statement: Select[Any]) -> Select[Any]:
    """``statement`` (of sale orders) narrowed to what ``viewer`` sees, the viewer's user id
    left as the parameter ``viewer_id``."""
    if viewer == "staff":
        return statement
    if viewer == "seller":
        lines, products = SaleOrderLine.__table__.c, Product.__table__.c
        return statement.where(
            exists().where(
                lines.order_id == _ORDERS.c.id,
                lines.product_id == products.id,
                products.seller_id == bindparam("viewer_id"),
            )
        )
    return statement.where(_ORDERS.c.customer_id == bindparam("viewer_id"))


def _visible_order(actor: Principal, order_uuid: uuid.UUID) -> SaleOrder:
    order = Session().scalars(_visible_orders(actor).where(SaleOrder.uuid == order_uuid)).first()
    if order is None:
        raise NotFound("there is no such order")
    return order


@dataclass(frozen=True)
class OrderDetail:
    order: SaleOrder
    invoices: list[AccountMove]
    payments: list[Payment]


def get_order(actor: Principal, order_uuid: uuid.UUID) -> OrderDetail:
    """The order with its invoice, credit notes and payments."""
    order = _visible_order(actor, order_uuid)
    moves = invoices_of(order)
    payments = list(
        Session().scalars(
            select(Payment)
            .where(Payment.invoice_id.in_([move.id for move in moves]))
            .order_by(Payment.id)
        )
    )
    return OrderDetail(order, moves, payments)


def visible_moves(viewer: str) -> Any:
    """The condition on ``marketplace_account_move`` of the invoices and credit notes ``viewer``
    (see :func:`_viewer`) sees, the viewer's user id left as the parameter ``viewer_id``:

    - staff: every one;
    - a seller: those of the orders with their products, and the standalone ones they issued
      (drafts included);
    - a customer: those of their own orders, and the standalone ones addressed to them once
      posted (a draft or a cancelled draft is the issuer's own business).
    """
    if viewer == "staff":
        return true()
    of_orders = _INVOICES.c.order_id.in_(_narrowed(viewer, select(_ORDERS.c.id)))
    if viewer == "seller":
        own = _INVOICES.c.issuer_id == bindparam("viewer_id")
    else:
        own = and_(
            _INVOICES.c.order_id.is_(None),
            _INVOICES.c.customer_id == bindparam("viewer_id"),
            _INVOICES.c.state == "posted",
        )
    return or_(of_orders, own)


def viewer_params(actor: Principal) -> dict[str, Any]:
    """The parameters of :func:`visible_moves` for ``actor``."""
    return {} if _viewer(actor) == "staff" else {"viewer_id": actor.user_id}


def _visible_invoice(actor: Principal, invoice_uuid: uuid.UUID) -> AccountMove:
    invoice = (
        Session()
        .scalars(
            select(AccountMove)
            .where(AccountMove.uuid == invoice_uuid)
            .where(visible_moves(_viewer(actor))),
            viewer_params(actor),
        )
        .first()
    )
    if invoice is None:
        raise NotFound("there is no such invoice")
    return invoice


def get_invoice(actor: Principal, invoice_uuid: uuid.UUID) -> AccountMove:
    return _visible_invoice(actor, invoice_uuid)


def invoice_to_pay(actor: Principal, invoice_uuid: uuid.UUID) -> AccountMove:
    """The invoice ``actor`` may see and pay (staff any, customers their own), its order and
    invoices (a standalone invoice: itself) locked in the caller's transaction, read once under
    the locks: what a payment module pays. A standalone invoice's payer may have no account:
    only staff pay it here (a payment link pays it for its payer)."""
    viewer = _viewer(actor)
    params = {"uuid": invoice_uuid} | viewer_params(actor)
    found = _VISIBLE_INVOICE[viewer].rows(Session().connection(), params)
    if not found:
        raise NotFound("there is no such invoice")
    ((invoice_id, order_id, customer_id),) = found
    if not actor.has_role(*STAFF_ROLES) and customer_id != actor.user_id:
        raise PermissionDenied("customers pay their own invoices")
    lock_documents(order_id, invoice_id)
    return Session().scalars(_INVOICE_TO_PAY, {"invoice_id": invoice_id}).one()


#: Read under its locks, as the database has it. Its order is not read to pay it (only its
#: id): not joined, loaded if something asks. Built once (on every payment's path).
_INVOICE_TO_PAY = (
    select(AccountMove)
    .options(lazyload(AccountMove.order))
    .where(AccountMove.id == bindparam("invoice_id"))
    .execution_options(populate_existing=True)
)

_VISIBLE_INVOICE = {
    viewer: DriverStatement(
        select(AccountMove.id, AccountMove.order_id, AccountMove.customer_id)
        .where(AccountMove.uuid == bindparam("uuid"))
        .where(visible_moves(viewer))
    )
    for viewer in ("staff", "seller", "customer")
}


def get_payment(actor: Principal, payment_uuid: uuid.UUID) -> Payment:
    visible_invoices = select(_INVOICES.c.id).where(visible_moves(_viewer(actor)))
    payment = (
        Session()
        .scalars(
            select(Payment)
            .where(Payment.uuid == payment_uuid)
            .where(Payment.invoice_id.in_(visible_invoices)),
            viewer_params(actor),
        )
        .first()
    )
    if payment is None:
        raise NotFound("there is no such payment")
    return payment


def invoices_of(order: SaleOrder) -> list[AccountMove]:
    """The order's invoice and credit notes, oldest first."""
    return list(
        Session().scalars(
            select(AccountMove).where(AccountMove.order_id == order.id).order_by(AccountMove.id)
        )
    )


def payments_of(invoice: AccountMove) -> list[Payment]:
    return _payments_of(invoice)


# -- helpers ------------------------------------------------------------------------------------


def _get(model: Any, public_id: uuid.UUID, what: str) -> Any:
    found = Session().scalars(select(model).where(model.uuid == public_id)).first()
    if found is None:
        raise NotFound(f"there is no such {what}")
    return found


def _order_customer(actor: Principal, customer_id: int) -> User:
    """The order's customer as the answer shows it (its public id), without a query when the
    caller is that customer (the Principal has the id and public id) or it is loaded already
    (staff named it)."""
    session = Session()
    known = session.identity_map.get(session.identity_key(User, customer_id))
    if known is not None or customer_id != actor.user_id:
        return known or session.get(User, customer_id)
    customer = User(id=customer_id, uuid=actor.user_uuid)
    make_transient_to_detached(customer)  # stands for the stored row; never inserted
    return customer


def _customer_for(actor: Principal, named: uuid.UUID | None) -> int:
    if not actor.has_role(*STAFF_ROLES):
        if named is not None and named != actor.user_uuid:
            raise PermissionDenied(
                "customers order for themselves; only staff name a customer",
                errors={"customer": "not allowed"},
            )
        if not actor.has_role("customer"):
            raise PermissionDenied("only customers and staff place orders")
        return actor.user_id
    if named is None:
        raise Invalid("staff must name the customer", errors={"customer": "required for staff"})
    return active_customer(named).id


def active_customer(
    named: uuid.UUID | int, refusal: str = "the customer is unknown, inactive or not a customer"
) -> User:
    """The active user with the ``customer`` role named by public id (a request's) or by id (a
    document's); 422 ``refusal`` naming the ``customer`` field otherwise."""
    column = User.uuid if isinstance(named, uuid.UUID) else User.id
    customer = Session().scalars(select(User).where(column == named)).first()
    if customer is None or not customer.active or customer.role != "customer":
        raise Invalid(refusal, errors={"customer": "an active customer's id"})
    return customer


#: What an order reads of a product (the answer shows its public id; the lines copy the rest).
_PRODUCT_COLUMNS = (
    Product.id,
    Product.uuid,
    Product.feed_uuid,
    Product.name,
    Product.list_price,
    Product.active,
    Product.seller_id,
)


@functools.cache
def _products_by_id(count: int) -> DriverStatement:
    """The products of ``count`` lines, by public id (``u0``...) or feed uuid (``f0``...):
    one statement per line count, built once (every order runs one), read by the driver."""
    return DriverStatement(
        select(*_PRODUCT_COLUMNS).where(
            or_(
                Product.uuid.in_(
                    [bindparam(f"u{i}", type_=Product.uuid.type) for i in range(count)]
                ),
                Product.feed_uuid.in_(
                    [bindparam(f"f{i}", type_=Product.feed_uuid.type) for i in range(count)]
                ),
            )
        )
    )


def _product_of(row: Sequence[Any]) -> Product:
    """A product as the database has it (the columns an order reads), outside the session: it
    stands for the stored row, as a loaded record would, and is never inserted."""
    product = Product(
        **{column.key: value for column, value in zip(_PRODUCT_COLUMNS, row, strict=True)}
    )
    make_transient_to_detached(product)
    return product


def _products_for(lines: Sequence[LineRequest]) -> list[Product]:
    """Each line's product, by public id or feed uuid; 422 naming the lines that fail."""
    wanted = [line.product.strip().lower() for line in lines]
    params: dict[str, Any] = {}
    for position, value in enumerate(wanted):
        try:
            params[f"u{position}"] = uuid.UUID(value)
        except ValueError:
            params[f"u{position}"] = None
        params[f"f{position}"] = value
    found = _products_by_id(len(wanted)).rows(Session().connection(), params)
    index: dict[str, Product] = {}
    for row in found:
        product = _product_of(row)
        index[str(product.uuid)] = product
        if product.feed_uuid:
            index.setdefault(product.feed_uuid, product)
    errors = {}
    products = []
    for position, value in enumerate(wanted):
        product = index.get(value)
        if product is None and params[f"u{position}"] is not None:
            product = index.get(str(params[f"u{position}"]))
        if product is None:
            errors[f"lines.{position}.product"] = "unknown product"
        elif not product.active:
            errors[f"lines.{position}.product"] = f"{product.name} is no longer sold"
        else:
            products.append(product)
    if errors:
        raise Invalid("some products cannot be ordered", errors=errors)
    return products


def _catalogue_price(product: Product, currency: str, rate: Decimal) -> Decimal:
    if currency == CATALOGUE_CURRENCY:
        return round_money(product.list_price, currency)
    return convert(product.list_price, rate, CURRENCY_PLACES[currency])


def _checked_quantity(quantity: Decimal, index: int, maximum: Decimal) -> Decimal:
    field_name = f"lines.{index}.quantity"
    if not quantity.is_finite() or quantity <= 0:
        raise Invalid("a quantity is more than zero", errors={field_name: "must be > 0"})
    if quantity > maximum:
        raise Invalid(f"at most {maximum} per line", errors={field_name: f"at most {maximum}"})
    if quantity != quantity.quantize(Decimal("0.001")):
        raise Invalid("at most three decimals", errors={field_name: "at most 3 decimals"})
    return quantity


def _check_amount(amount: Decimal, currency: str, field_name: str) -> None:
    places = CURRENCY_PLACES[currency]
    if not amount.is_finite() or amount <= 0:
        raise Invalid("a payment is more than zero", errors={field_name: "must be > 0"})
    if amount != round_money(amount, currency):
        raise Invalid(
            f"{currency} amounts have {places} decimals", errors={field_name: f"{places} decimals"}
        )


def _year(moment: datetime) -> int:
    return moment.astimezone(marketplace_settings().timezone).year


def _order_event(order: SaleOrder) -> dict[str, Any]:
    return {
        "order": order.uuid,
        "name": order.name,
        "state": order.state,
        "customer_id": order.customer_id,
        "currency": order.currency,
        "amount_total": order.amount_total,
    }


def _invoice_event(invoice: AccountMove) -> dict[str, Any]:
    return {
        "invoice": invoice.uuid,
        "name": invoice.name,
        "move_type": invoice.move_type,
        "payment_state": invoice.payment_state,
        "currency": invoice.currency,
        "amount_total": invoice.amount_total,
        "amount_residual": invoice.amount_residual,
    }


def _payment_event(payment: Payment) -> dict[str, Any]:
    return {
        "payment": payment.uuid,
        "name": payment.name,
        "state": payment.state,
        "invoice": payment.invoice.uuid,
        "method": payment.method,
        "amount": payment.amount,
        "currency": payment.currency,
    }
