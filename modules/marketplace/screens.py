"""The marketplace's web screens, at ``/web/marketplace/``: orders and invoices.

* The order list: the REST list's filters, read by its own query schema, and keyset pages from
  the same service, on a replica. Staff see every order, sellers those with their products,
  customers their own (the service decides). Next and previous links carry the service's
  cursors: the list's own in ``cursor``, those of the pages before it in ``back`` (the last
  :data:`MAX_BACK`; further back, "First page").
* An order: its lines, invoice and credit notes, payments, refunds and the ledger's postings
  of those documents, each shown as the REST API dumps it (the same schemas), so every figure
  is the API's Decimal string.
* Actions, with the services the API calls: confirm a payment, refund one, mark a refund sent
  back (staff), cancel the order (staff, or its customer). A refund and a cancel ask for the
  document's number typed out (money goes back, or the order ends); a refund form carries a
  nonce used as the API's ``Idempotency-Key``, so a form sent twice refunds once. A refusal
  shows the service's message on the order's page again, with what was typed, and changes
  nothing; each action is audited (``app.log.audit``) with its outcome. A payment or refund
  is looked up through the order in the address: one of another order is not found.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from app.db import read_only
from app.dumping import fast_dump
from app.errors import Conflict, DomainError, Invalid, NotFound, PermissionDenied
from app.http import InvalidCursor, status_of
from app.log import audit
from app.screens import load_form
from app.security import Principal, authenticate, requires
from modules.ledger import services as ledger
from modules.ledger.schemas import TransactionSchema

from . import idempotency, postings, refunds, services
from .models import INVOICE_PAYMENT_STATES, ORDER_STATES, Payment, Refund
from .payments import all_methods, held_methods
from .schemas import (
    OrderDetailSchema,
    OrderQuerySchema,
    RefundInSchema,
    RefundSchema,
    order_summary_page,
)

log = logging.getLogger(__name__)

screens = Blueprint(
    "marketplace_screens",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

STAFF = services.STAFF_ROLES
#: Who may open the screens: what each sees is the service's rule.
VIEWERS = (*STAFF, "seller", "customer")
#: How many earlier pages the list remembers for its "Previous" link.
MAX_BACK = 30
PAGE_SIZES = (20, 50, 100)
#: The list's filters: the REST list's query arguments (``from``/``to`` are its data keys).
FILTERS = ("number", "state", "payment_state", "customer", "from", "to", "total_min", "total_max")

_QUERY = OrderQuerySchema()
_REFUND_FORM = RefundInSchema()
_DETAIL = OrderDetailSchema()
_REFUND = RefundSchema()
#: As the API renders a refund: the answer an Idempotency-Key keeps is the same.
_RENDER_REFUND = fast_dump(_REFUND)
_POSTING = TransactionSchema()

#: What people read for the states the API names.
LABELS = {
    "order": {"draft": "Quotation", "sale": "Confirmed", "cancel": "Cancelled"},
    "payment_state": {
        "not_paid": "Not paid",
        "partial": "Partially paid",
        "in_payment": "In payment",
        "paid": "Paid",
        "reversed": "Reversed",
    },
    "payment": {"in_process": "In process", "paid": "Confirmed", "canceled": "Cancelled"},
    "refund": {"pending": "Pending", "succeeded": "Sent back"},
    "move": {"out_invoice": "Invoice", "out_refund": "Credit note"},
}


@dataclass
class Refused:
    """A refused action, shown on the order's page again: the service's message, the fields it
    names and what was typed (``form``: which form, e.g. ``refund:<payment id>``)."""

    form: str
    message: str
    errors: dict[str, list[str]] = field(default_factory=dict)
    values: Mapping[str, str] = field(default_factory=dict)


@screens.context_processor
def _helpers() -> dict[str, Any]:
    return {"label": _label}


def _label(kind: str, value: str | None) -> str:
    if value is None:
        return "—"
    return LABELS[kind].get(value, value.replace("_", " ").capitalize())


# -- the list -----------------------------------------------------------------------------------


@screens.get("/")
@requires(*VIEWERS, browser=True)
@read_only()
def orders() -> ResponseReturnValue:
    """Orders the user may see, newest first, filtered as the REST list filters them."""
    actor = authenticate()
    given = {
        name: value.strip()
        for name, value in request.args.items()
        if name in (*FILTERS, "limit", "cursor") and value.strip()
    }
    back = request.args.getlist("back")[-MAX_BACK:]
    shown: dict[str, Any] = {
        "given": given,
        "errors": {},
        "items": [],
        "states": ORDER_STATES,
        "payment_states": INVOICE_PAYMENT_STATES,
        "page_sizes": PAGE_SIZES,
        "staff": actor.has_role(*STAFF),
        "customer_filter": not _is_customer(actor),
        "next_url": None,
        "previous_url": None,
        "first_url": None,
    }
    try:
        args = load_form(_QUERY, request.args)
    except Invalid as error:
        shown["errors"] = _messages(error.errors)
        flash("Some filters are not valid: see the fields marked below.", "error")
        return render_template("marketplace/orders.html", **shown), 422
    if args["limit"] not in PAGE_SIZES:
        # A size the schema accepts but the select does not offer (a link, an address typed):
        # offered too, so the select shows the size the page has.
        shown["page_sizes"] = tuple(sorted({*PAGE_SIZES, args["limit"]}))
    if "limit" in given:
        given["limit"] = str(args["limit"])  # "07" is 7, as the select names it
    try:
        page = services.list_orders(
            actor, services.OrderFilter.of(args), limit=args["limit"], cursor=args["cursor"]
        )
    except InvalidCursor:
        flash("That page link is out of date: here is the first page.", "warning")
        return redirect(url_for(".orders", **_without(given, "cursor")), 303)
    shown["items"] = order_summary_page(page.items, page.next_cursor)["items"]
    filtered = _without(given, "cursor")
    if page.next_cursor is not None:
        shown["next_url"] = url_for(
            ".orders", **filtered, cursor=page.next_cursor, back=[*back, given.get("cursor", "")]
        )
    if "cursor" in given:
        earlier = back[-1] if back else ""
        shown["previous_url"] = url_for(
            ".orders", **filtered, **({"cursor": earlier} if earlier else {}), back=back[:-1]
        )
        shown["first_url"] = url_for(".orders", **filtered)
    return render_template("marketplace/orders.html", **shown), 200


def _without(given: Mapping[str, str], *names: str) -> dict[str, str]:
    return {name: value for name, value in given.items() if name not in names}


def _is_customer(actor: Principal) -> bool:
    return not actor.has_role(*STAFF, "seller")


def _messages(messages: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """A refusal's messages by field (a text or a list of them), as lists of text."""
    return {
        str(name): [str(m) for m in (value if isinstance(value, list) else [value])]
        for name, value in (messages or {}).items()
    }


# -- an order -----------------------------------------------------------------------------------


@screens.get("/orders/<uuid:order_id>")
@requires(*VIEWERS, browser=True)
@read_only()
def order(order_id: uuid.UUID) -> str:
    """An order with its documents, payments, refunds and postings; its actions for those who
    may take them."""
    return _order_page(order_id)


def _order_page(order_id: uuid.UUID, refused: Refused | None = None) -> str:
    actor = authenticate()
    detail = services.get_order(actor, order_id)
    its_refunds = refunds.refunds_of(actor, detail.payments)
    references = postings.references_of(detail.invoices, detail.payments, its_refunds)
    staff = actor.has_role(*STAFF)
    shown = _DETAIL.dump(detail)
    number_of = {str(payment.uuid): payment.name for payment in detail.payments}
    refundable = {
        str(payment.uuid): format(refunds.refundable(payment, its_refunds), "f")
        for payment in detail.payments
        if staff and payment.state == "paid"
    }
    return render_template(
        "marketplace/order.html",
        order=shown["order"],
        invoices=shown["invoices"],
        payments=shown["payments"],
        refunds=[_REFUND.dump(refund) for refund in its_refunds],
        postings=[
            _POSTING.dump(view) for view in ledger.transactions_referring_to(actor, references)
        ],
        payment_numbers=number_of,
        invoice_numbers={str(move.uuid): move.name for move in detail.invoices},
        refundable={key: amount for key, amount in refundable.items() if Decimal(amount) > 0},
        destinations=_destinations(),
        methods={code: method.label for code, method in all_methods().items()},
        customer_email=detail.order.customer.email if staff else None,
        staff=staff,
        may_cancel=detail.order.state != "cancel"
        and (staff or detail.order.customer_id == actor.user_id),
        refused=refused,
        nonce=uuid.uuid4().hex,
    )


def _destinations() -> dict[str, str]:
    """Where a refund may go instead of the payment's own method (the customer's wallet)."""
    return {code: method.label for code, method in held_methods().items()}


def _refused_page(order_id: uuid.UUID, refused: Refused, error: DomainError) -> tuple[str, int]:
    """The order's page again, showing why an action was refused (nothing was changed)."""
    flash(refused.message, "error")
    with read_only():
        return _order_page(order_id, refused), status_of(error)


def _refusal(error: DomainError) -> str:
    """The service's message, as a sentence."""
    text = error.detail or error.title
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


# -- actions ------------------------------------------------------------------------------------

#: What a refused action may be: the service's own refusals (an order or payment the user
#: cannot see is not found, and the shell shows that page).
REFUSALS = (Invalid, Conflict, PermissionDenied)


@screens.post("/orders/<uuid:order_id>/payments/<uuid:payment_id>/confirm")
@requires(*STAFF, browser=True)
def confirm_payment(order_id: uuid.UUID, payment_id: uuid.UUID) -> ResponseReturnValue:
    """Staff saw the money come in: the payment is confirmed (as ``POST .../confirm``)."""
    actor = authenticate()
    _payment_of(actor, order_id, payment_id)
    try:
        payment = services.confirm_payment(actor, payment_id)
    except REFUSALS as error:
        _audit(
            "marketplace.payment.confirm", "refused", actor, payment=payment_id, problem=error.code
        )
        return _refused_page(order_id, Refused(f"confirm:{payment_id}", _refusal(error)), error)
    _audit("marketplace.payment.confirm", "success", actor, payment=payment_id)
    flash(f"Payment {payment.name} is confirmed.", "success")
    return redirect(url_for(".order", order_id=order_id, _anchor="payments"), 303)


@screens.post("/orders/<uuid:order_id>/payments/<uuid:payment_id>/refund")
@requires(*STAFF, browser=True)
def refund(order_id: uuid.UUID, payment_id: uuid.UUID) -> ResponseReturnValue:
    """Refund (part of) a confirmed payment, as ``POST /payments/{id}/refunds`` does; the form's
    nonce is its Idempotency-Key."""
    actor = authenticate()
    values = {
        name: request.form.get(name, "") for name in ("amount", "reason", "destination", "confirm")
    }
    form = f"refund:{payment_id}"
    payment = _payment_of(actor, order_id, payment_id)
    try:
        body = load_form(_REFUND_FORM, request.form)
        if values["confirm"].strip() != payment.name:
            raise Invalid(
                f"type the payment's number, {payment.name}, to confirm the refund",
                errors={"confirm": f"type {payment.name}"},
            )
        nonce = request.form.get("nonce", "").strip()
        if not nonce:
            raise Invalid("the form is incomplete: reload the page and try again")
        # "7000" and "7000.00" are one request (an empty amount, all that remains, its own).
        amount = body["amount"]
        asked = {**body, "amount": None if amount is None else format(amount.normalize(), "f")}
        idempotent = idempotency.request_for(
            actor.user_id, f"payment-refunds:{payment_id}", nonce, asked
        )
        _, answer = refunds.create_refund(
            actor,
            payment_id,
            refunds.RefundRequest(
                reason=body["reason"], amount=body["amount"], destination=body["destination"]
            ),
            idempotent,
            _RENDER_REFUND,
        )
    except idempotency.IdempotencyKeyReused as error:
        _audit("marketplace.refund", "refused", actor, payment=payment_id, problem=error.code)
        message = "This form was sent already with other values: reload the page to refund again."
        return _refused_page(order_id, Refused(form, message, {}, values), error)
    except REFUSALS as error:
        _audit("marketplace.refund", "refused", actor, payment=payment_id, problem=error.code)
        refused = Refused(form, _refusal(error), _messages(error.errors), values)
        return _refused_page(order_id, refused, error)
    _audit("marketplace.refund", "success", actor, payment=payment_id, refund=answer["id"],
           amount=answer["amount"], currency=answer["currency"])  # fmt: skip
    _flash_once(
        f"Refunded {answer['amount']} {answer['currency']} of payment {payment.name}: "
        f"credit note {answer['credit_note_number']}.",
        "success",
    )
    return redirect(url_for(".order", order_id=order_id, _anchor="refunds"), 303)


@screens.post("/orders/<uuid:order_id>/refunds/<uuid:refund_id>/done")
@requires(*STAFF, browser=True)
def refund_done(order_id: uuid.UUID, refund_id: uuid.UUID) -> ResponseReturnValue:
    """Staff sent the money back: the refund is marked done (as ``POST /refunds/{id}/done``)."""
    actor = authenticate()
    _refund_of(actor, order_id, refund_id)
    try:
        done = refunds.mark_refund_done(actor, refund_id)
    except REFUSALS as error:
        _audit("marketplace.refund.done", "refused", actor, refund=refund_id, problem=error.code)
        return _refused_page(order_id, Refused(f"done:{refund_id}", _refusal(error)), error)
    _audit("marketplace.refund.done", "success", actor, refund=refund_id)
    flash(f"The refund of {done.amount} {done.currency} is marked sent back.", "success")
    return redirect(url_for(".order", order_id=order_id, _anchor="refunds"), 303)


@screens.post("/orders/<uuid:order_id>/cancel")
@requires(*VIEWERS, browser=True)
def cancel(order_id: uuid.UUID) -> ResponseReturnValue:
    """Cancel the order (as ``POST /orders/{id}/cancel``): staff, or the order's customer."""
    actor = authenticate()
    typed = request.form.get("confirm", "")
    try:
        number = services.get_order(actor, order_id).order.name
        if typed.strip() != number:
            raise Invalid(
                f"type the order's number, {number}, to confirm the cancellation",
                errors={"confirm": f"type {number}"},
            )
        services.cancel_order(actor, order_id)
    except REFUSALS as error:
        _audit("marketplace.order.cancel", "refused", actor, order=order_id, problem=error.code)
        refused = Refused("cancel", _refusal(error), _messages(error.errors), {"confirm": typed})
        return _refused_page(order_id, refused, error)
    _audit("marketplace.order.cancel", "success", actor, order=order_id)
    flash(f"Order {number} is cancelled.", "success")
    return redirect(url_for(".order", order_id=order_id), 303)


def _payment_of(actor: Principal, order_id: uuid.UUID, payment_id: uuid.UUID) -> Payment:
    """The payment, if it is one of the order's in the address (and the actor sees the order);
    else not found, before anything is done: an action reports on the order it names."""
    for payment in services.get_order(actor, order_id).payments:
        if payment.uuid == payment_id:
            return payment
    raise NotFound(f"order {order_id} has no payment {payment_id}")


def _refund_of(actor: Principal, order_id: uuid.UUID, refund_id: uuid.UUID) -> Refund:
    """The refund, if it is one of the order's in the address; else not found (as above)."""
    for refund in refunds.refunds_of(actor, services.get_order(actor, order_id).payments):
        if refund.uuid == refund_id:
            return refund
    raise NotFound(f"order {order_id} has no refund {refund_id}")


def _flash_once(message: str, category: str) -> None:
    """Flash ``message`` unless it waits to be shown already: a form sent twice (a double
    click) is answered twice with the same refund, which is one thing to tell."""
    if (category, message) not in session.get("_flashes", []):
        flash(message, category)


def _audit(event: str, outcome: str, actor: Principal, **fields: Any) -> None:
    audit(
        log,
        event,
        outcome,
        user=str(actor.user_uuid),
        ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent", "")[:200],
        via="web",
        **{name: str(value) for name, value in fields.items()},
    )
