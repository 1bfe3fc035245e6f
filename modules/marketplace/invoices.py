"""Standalone invoices: invoices made without an order, as Odoo's ``account.move`` made by hand.

Staff issue the platform's (its own sales: lines without a seller, income when paid); a verified
seller issues their own (every line theirs: once a payment is confirmed, their share less the
commission reaches their pending balance, exactly as an order line of theirs does). The customer
is a user with the ``customer`` role, or a payer without an account (a name and an email); such a
payer's receivable is the platform's ``guest_receivable`` (:mod:`.postings`).

The states and the function that moves each, which checks the current state first:

| function | from | to | who |
| --- | --- | --- | --- |
| :func:`create_invoice` | | ``draft`` | staff (the platform's); a verified seller (their own) |
| :func:`update_invoice` | ``draft`` | ``draft`` | its issuer (staff: the platform's) |
| :func:`post_invoice` | ``draft`` | ``posted`` | its issuer, or staff |
| :func:`cancel_invoice` | ``draft`` | ``cancel`` | its issuer, or staff |
| :func:`reverse_invoice` | ``posted``, nothing confirmed | ``reversed`` | its issuer, or staff |

A posted invoice is never edited: it is paid (``POST /invoices/{id}/payments``, the payment
module's providers) or reversed, when refunds (``POST /payments/{id}/refunds``, credit notes
``RINV``) cover its confirmed payments, through the very services an order's invoice goes
through, or at once by a credit note for the whole of it while nothing is confirmed (as an
order's invoice is when its order is cancelled).

Posting does what placing an order does for its invoice, in the same order: the commission
fixed (and the sellers' own percents), the gap-free ``INV`` number last but the events and the
answer, then the ``INVOICE_POST`` posting (:func:`.postings.invoice_post`), all in one
transaction.

Every writer of a standalone invoice, its payments and refunds locks the invoice's row first
(:func:`.services.lock_documents`), so posting, paying and refunding one serialise.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, delete, select
from sqlalchemy.orm import selectinload

from app.db import Session, transaction, utcnow
from app.errors import Conflict, Invalid, PermissionDenied
from app.events import emit
from app.http import Page, keyset_page
from app.security import Principal
from modules.user.models import User
from modules.user.services import normalize_email

from . import commissions, idempotency, numbering, postings
from .config import marketplace_settings
from .idempotency import IdempotentRequest
from .issuing import why_not_issuing
from .models import CURRENCY_PLACES, AccountMove, AccountMoveLine
from .payments import loaded_order_checkout
from .pricing import line_amounts, round_money, totals
from .refunds import unrefunded_confirmed
from .services import (
    STAFF_ROLES,
    Render,
    _invoice_event,
    _payments_of,
    _post,
    _reverse,
    _viewer,
    _visible_invoice,
    active_customer,
    like_pattern,
    lock_documents,
    refuse_started_meanwhile,
    refused_by_database,
    viewer_params,
    visible_moves,
)

#: The largest amount a NUMERIC(18, 2) column holds.
MAX_AMOUNT = Decimal("9999999999999999.99")
HUNDRED = Decimal(100)
#: What a request may give a draft (the schemas' fields).
FIELDS = ("customer", "payer_name", "payer_email", "lines", "currency", "due_date", "memo")
PAYER_FIELDS = ("customer", "payer_name", "payer_email")


class InvoicingNotAllowed(PermissionDenied):
    code = "invoicing-not-allowed"
    title = "This seller may not issue invoices"


class NotADraft(Conflict):
    code = "invoice-not-draft"
    title = "Only a draft invoice can be changed, posted or cancelled"


class NotPosted(Conflict):
    code = "invoice-not-posted"
    title = "Only a posted invoice is reversed"


class NotStandalone(Conflict):
    code = "invoice-of-an-order"
    title = "An order's invoice is changed through its order"


class CreditNote(Conflict):
    code = "invoice-is-credit-note"
    title = "A credit note is not changed, posted, cancelled or reversed"


@dataclass(frozen=True)
class InvoiceFilter:
    state: str | None = None
    payment_state: str | None = None
    move_type: str | None = None
    standalone: bool | None = None
    customer: uuid.UUID | None = None
    seller: uuid.UUID | None = None
    number: str | None = None

    @classmethod
    def of(cls, query: Mapping[str, Any]) -> InvoiceFilter:
        """The filters of a listing's query arguments (as ``InvoiceQuerySchema`` loads them)."""
        return cls(**{f.name: query[f.name] for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class _Payer:
    customer: User | None = None
    name: str | None = None
    email: str | None = None


# -- making and changing a draft ----------------------------------------------------------------


def create_invoice(
    actor: Principal,
    values: Mapping[str, Any],
    idempotent: IdempotentRequest | None,
    render: Render,
) -> tuple[int, dict[str, Any]]:
    """A new draft invoice: staff's for the platform, a verified seller's for their own sales.

    ``values``: as ``InvoiceCreateSchema`` loads them. Returns 201 and the rendered invoice, or
    the first answer for a repeated ``Idempotency-Key``.
    """
    with refused_by_database(), transaction():
        key = idempotency.begin(idempotent)
        if key.replay is not None:
            return key.replay.status_code, key.replay.body
        issuer_id = _issuer_for(actor)
        today = _today()
        invoice = AccountMove(
            uuid=uuid.uuid4(),
            move_type="out_invoice",
            state="draft",
            payment_state="not_paid",
            issuer_id=issuer_id,
            created_by_id=actor.user_id,
            invoice_date=today,
            created_at=utcnow(),
        )
        _apply(invoice, {name: values.get(name) for name in FIELDS}, today)
        Session().add(invoice)
        Session().flush()
        emit("invoice.created", invoice_event(invoice))
        body = render(invoice)
        key.complete(201, body)
    return 201, body


def update_invoice(
    actor: Principal, invoice_uuid: uuid.UUID, changes: Mapping[str, Any]
) -> AccountMove:
    """Change a draft (its issuer only; a seller while they may issue): the fields given;
    ``lines`` replaces every line."""
    with refused_by_database(), transaction():
        invoice = _locked_standalone(actor, invoice_uuid)
        _may_change(actor, invoice)
        _require_draft(invoice, "changed")
        if invoice.issuer_id is not None:  # (its issuer: _may_change let only them)
            why = why_not_issuing(invoice.issuer_id)
            if why is not None:
                raise InvoicingNotAllowed(why)
        _apply(invoice, {name: changes[name] for name in FIELDS if name in changes}, _today())
        Session().flush()
    return invoice


def _apply(invoice: AccountMove, values: Mapping[str, Any], today: date) -> None:
    """Set a draft's fields from ``values`` (those present), checking each; nothing is set
    when one is refused (the transaction rolls back)."""
    settings = marketplace_settings()
    if any(name in values for name in PAYER_FIELDS):
        payer = _payer({name: values.get(name) for name in PAYER_FIELDS})
        invoice.customer = payer.customer
        invoice.customer_id = payer.customer.id if payer.customer is not None else None
        invoice.payer_name, invoice.payer_email = payer.name, payer.email
    if "currency" in values:
        invoice.currency = (values["currency"] or "IDR").strip().upper()
    if "due_date" in values:
        due = values["due_date"] or today + timedelta(days=settings.due_days)
        if due < today:
            raise Invalid(
                f"the due date is today ({today}) or later",
                errors={"due_date": f"{today} or later"},
            )
        invoice.invoice_date_due = due
    if "memo" in values:
        invoice.memo = (values["memo"] or "").strip() or None
    if "lines" in values or "currency" in values:
        lines = values["lines"] if "lines" in values else _line_values(invoice)
        _set_lines(invoice, lines)


def _payer(given: Mapping[str, Any]) -> _Payer:
    """The customer named by id, or a payer's name and email: one or the other."""
    customer_id = given.get("customer")
    name = (given.get("payer_name") or "").strip()
    email = (given.get("payer_email") or "").strip()
    if customer_id is not None:
        if name or email:
            raise Invalid(
                "an invoice is to a customer with an account, or to a payer named with an "
                "email: not both",
                errors={"customer": "leave it out to name a payer without an account"},
            )
        return _Payer(customer=active_customer(customer_id))
    missing = {
        field: "required without a customer"
        for field, value in (("payer_name", name), ("payer_email", email))
        if not value
    }
    if missing:
        raise Invalid(
            "name the customer (their user id), or the payer without an account by name and email",
            errors={"customer": "a customer's id, or else payer_name and payer_email", **missing},
        )
    try:
        display, _ = normalize_email(email)
    except Invalid:
        raise Invalid(
            "the payer's email is not a valid email address",
            errors={"payer_email": "a valid email address"},
        ) from None
    return _Payer(name=name, email=display)


def _line_values(invoice: AccountMove) -> list[dict[str, Any]]:
    """The draft's lines as a request gives them (to price them again in a new currency)."""
    return [
        {
            "description": line.name,
            "quantity": line.quantity,
            "price_unit": line.price_unit,
            "tax_percent": line.tax_percent,
        }
        for line in invoice.lines
    ]


def _set_lines(invoice: AccountMove, lines: Sequence[Mapping[str, Any]]) -> None:
    """Price ``lines`` in the invoice's currency and make them its lines (replacing any), each
    the issuer's (a seller's sales) or the platform's; the totals follow. Every line's problem
    is named at once."""
    settings = marketplace_settings()
    currency = invoice.currency
    if currency not in CURRENCY_PLACES:
        raise Invalid(
            f"invoices are in {' or '.join(CURRENCY_PLACES)}",
            errors={"currency": f"one of {', '.join(CURRENCY_PLACES)}"},
        )
    if not lines:
        raise Invalid("an invoice needs at least one line", errors={"lines": "at least one"})
    if len(lines) > settings.max_lines:
        raise Invalid(
            f"an invoice has at most {settings.max_lines} lines",
            errors={"lines": f"at most {settings.max_lines}"},
        )
    places = CURRENCY_PLACES[currency]
    errors: dict[str, str] = {}
    made: list[AccountMoveLine] = []
    amounts = []
    for index, line in enumerate(lines):
        field = f"lines.{index}"
        description = (line.get("description") or "").strip()
        quantity: Decimal = line["quantity"]
        price_unit: Decimal = line["price_unit"]
        tax_percent: Decimal = (
            settings.tax_percent if line.get("tax_percent") is None else line["tax_percent"]
        )
        if not description:
            errors[f"{field}.description"] = "must not be blank"
        if not quantity.is_finite() or quantity <= 0:
            errors[f"{field}.quantity"] = "must be > 0"
        elif quantity > settings.max_quantity:
            errors[f"{field}.quantity"] = f"at most {settings.max_quantity}"
        elif quantity != quantity.quantize(Decimal("0.001")):
            errors[f"{field}.quantity"] = "at most 3 decimals"
        if not price_unit.is_finite() or price_unit < 0:
            errors[f"{field}.price_unit"] = "must be 0 or more"
        elif price_unit != round_money(price_unit, currency):
            errors[f"{field}.price_unit"] = f"{currency} amounts have {places} decimals"
        if not tax_percent.is_finite() or not 0 <= tax_percent < HUNDRED:
            errors[f"{field}.tax_percent"] = "0 to 99.99"
        if any(name.startswith(f"{field}.") for name in errors):
            continue
        amount = line_amounts(quantity, price_unit, tax_percent, currency)
        if amount.total > MAX_AMOUNT:
            errors[f"{field}.quantity"] = "the line's total is more than an amount can hold"
            continue
        amounts.append(amount)
        made.append(
            AccountMoveLine(
                sequence=index,
                product_id=None,
                name=description,
                quantity=quantity,
                price_unit=price_unit,
                price_subtotal=amount.subtotal,
                price_tax=amount.tax,
                price_total=amount.total,
                tax_percent=tax_percent,
                seller_id=invoice.issuer_id,
            )
        )
    if errors:
        raise Invalid("some invoice lines are not valid", errors=errors)
    invoice_totals = totals(amounts)
    if invoice_totals.total > MAX_AMOUNT:
        raise Invalid(
            "the invoice's total is more than an amount can hold",
            errors={"lines": f"a total of at most {MAX_AMOUNT}"},
        )
    if invoice.id is not None:  # a draft's old lines go; the new ones are written instead
        Session().execute(delete(AccountMoveLine).where(AccountMoveLine.move_id == invoice.id))
        Session().expire(invoice, ["lines"])
    invoice.lines = made
    invoice.amount_untaxed = invoice_totals.untaxed
    invoice.amount_tax = invoice_totals.tax
    invoice.amount_total = invoice_totals.total
    invoice.amount_residual = invoice_totals.total


# -- posting and cancelling ---------------------------------------------------------------------


def post_invoice(
    actor: Principal,
    invoice_uuid: uuid.UUID,
    idempotent: IdempotentRequest | None,
    render: Render,
) -> tuple[int, dict[str, Any]]:
    """Post a draft: dated today, numbered ``INV/<year>/<n>`` (gap-free), owed on the ledger.

    Its issuer or staff; a seller's invoice only while the seller may issue. Returns 200 and
    the rendered invoice, or the first answer for a repeated ``Idempotency-Key``.
    """
    settings = marketplace_settings()
    now = utcnow()
    with refused_by_database(), transaction():
        key = idempotency.begin(idempotent)
        if key.replay is not None:
            return key.replay.status_code, key.replay.body
        invoice = _locked_standalone(actor, invoice_uuid)
        _may_manage(actor, invoice, "posts")
        _require_draft(invoice, "posted")
        if invoice.issuer_id is not None:
            why = why_not_issuing(invoice.issuer_id)
            if why is not None:
                if invoice.issuer_id == actor.user_id:
                    raise InvoicingNotAllowed(why)
                raise Conflict(f"the invoice's seller may not issue invoices: {why}")
        if invoice.customer_id is not None:
            # The receivable posted is the customer's: one who can no longer log in to pay it
            # (deactivated since the draft was written) is not billed.
            active_customer(
                invoice.customer_id,
                "the invoice's customer is no longer an active customer: change the draft's "
                "customer first",
            )
        today = now.astimezone(settings.timezone).date()
        if invoice.amount_total <= 0:
            raise Invalid(
                "an invoice of nothing is not posted: give a line a price",
                errors={"lines": "a total of more than 0"},
            )
        if invoice.invoice_date_due < today:
            raise Invalid(
                f"the due date ({invoice.invoice_date_due}) has passed: change it first",
                errors={"due_date": f"{today} or later"},
            )
        invoice.state = "posted"
        invoice.invoice_date = today
        invoice.payment_state = "not_paid"
        invoice.amount_residual = invoice.amount_total
        # Fixed now, as an order's invoice fixes it: every payment and refund splits by it.
        invoice.commission_percent = settings.commission_percent
        Session().flush()
        commissions.fix_for(invoice)
        # From here to the commit the invoice counter is locked (see services.place_order).
        numbering.number_document(invoice, "INV", today.year)
        emit("invoice.posted", invoice_event(invoice))
        body = render(invoice)
        key.complete(200, body)
        _post(postings.invoice_post(invoice, actor.user_id))  # last: after the counter's lock
    return 200, body


def cancel_invoice(actor: Principal, invoice_uuid: uuid.UUID) -> AccountMove:
    """Give a draft up (its issuer or staff): ``cancel``, never numbered, nothing posted.

    Cancelling a cancelled draft again changes nothing; a posted invoice is refused (its
    payments are refunded instead, and a credit note reverses it).
    """
    with refused_by_database(), transaction():
        invoice = _locked_standalone(actor, invoice_uuid)
        _may_manage(actor, invoice, "cancels")
        if invoice.state == "cancel":
            return invoice
        _require_draft(invoice, "cancelled")
        invoice.state = "cancel"
        Session().flush()
        emit("invoice.cancelled", invoice_event(invoice))
    return invoice


def reverse_invoice(actor: Principal, invoice_uuid: uuid.UUID) -> AccountMove:
    """Reverse a posted invoice nothing was confirmed on (its issuer or staff): a credit note
    ``RINV`` for the whole of it, its payments in process cancelled (and their provider
    transactions in flight), the receivable given back on the ledger (``INVOICE_REVERSAL``).

    Refused while a confirmed payment is not refunded in full (refund it: once refunds cover
    every confirmed payment the invoice is reversed already), and (409, try again) when a payer
    started a provider payment between its transactions' cancelling and its lock
    (:func:`.services.refuse_started_meanwhile`). Reversing it again changes nothing.
    """
    now = utcnow()
    with refused_by_database(), transaction():
        invoice = _standalone(actor, invoice_uuid)
        _may_manage(actor, invoice, "reverses")
        checkout = loaded_order_checkout()
        if checkout is not None and invoice.payment_state != "reversed":
            # Its provider transactions in flight go with it (before its row lock, as every
            # writer takes them; rolled back if refused below).
            checkout.invoice_reversing(invoice.id)
        lock_documents(None, invoice.id)
        Session().refresh(invoice)
        _require_invoice(invoice)  # _standalone refused one already; checked where money moves
        if invoice.state != "posted":
            raise NotPosted(
                f"this invoice is {invoice.state}: only a posted invoice is reversed"
                + ("; cancel the draft instead" if invoice.state == "draft" else ""),
                state=invoice.state,
            )
        if invoice.payment_state == "reversed":
            return invoice
        payments = _payments_of(invoice)
        confirmed = unrefunded_confirmed(payments)
        if confirmed:
            raise Conflict(
                f"{invoice.name} has a confirmed payment ({confirmed[0].name}); it is reversed "
                "once refunds cover it",
                payment=confirmed[0].name,
            )
        refuse_started_meanwhile(payments)
        postings.require_posted(invoice)
        for payment in payments:
            if payment.state == "in_process":
                payment.state = "canceled"
                payment.cancelled_at = now
        credit_note = _reverse(invoice)
        Session().flush()
        numbering.number_document(credit_note, "RINV", now.astimezone(_timezone()).year)
        emit("invoice.reversed", _invoice_event(credit_note))
        # Nothing is confirmed on it: the receivable holds all of it.
        _post(postings.invoice_reversal([(invoice, Decimal(0))], [credit_note], actor.user_id))
    return invoice


def _issuer_for(actor: Principal) -> int | None:
    """Who issues what ``actor`` makes: the platform (None) for staff, the seller themself."""
    if actor.has_role(*STAFF_ROLES):
        return None
    if actor.has_role("seller"):
        why = why_not_issuing(actor.user_id)
        if why is not None:
            raise InvoicingNotAllowed(why)
        return actor.user_id
    raise PermissionDenied("staff issue the platform's invoices, sellers their own")


def _standalone(actor: Principal, invoice_uuid: uuid.UUID) -> AccountMove:
    """The standalone invoice ``actor`` sees (an order's is refused, and so is a credit note:
    a standalone invoice's credit notes are written by its refunds and its reversal, settled
    at once, and nothing changes them)."""
    invoice = _visible_invoice(actor, invoice_uuid)
    if not invoice.standalone:
        raise NotStandalone(
            f"{invoice.name} is an order's: it changes with its order (cancel it, or refund "
            "its payments)"
        )
    _require_invoice(invoice)
    return invoice


def _require_invoice(invoice: AccountMove) -> None:
    """Refuse a credit note: it is never changed, posted, cancelled nor reversed (reversing one
    would give back on the ledger a receivable that was never owed)."""
    if invoice.move_type != "out_invoice":
        raise CreditNote(
            f"{invoice.name or 'this document'} is a credit note: nothing changes it (a refund "
            "or a reversal wrote it, settled)"
        )


def _locked_standalone(actor: Principal, invoice_uuid: uuid.UUID) -> AccountMove:
    """The standalone invoice ``actor`` sees, its row locked and read again under the lock."""
    invoice = _standalone(actor, invoice_uuid)
    lock_documents(None, invoice.id)
    Session().refresh(invoice)
    return invoice


def _may_manage(actor: Principal, invoice: AccountMove, verb: str) -> None:
    """Post or cancel: staff any; a seller their own."""
    if actor.has_role(*STAFF_ROLES):
        return
    if actor.has_role("seller") and invoice.issuer_id == actor.user_id:
        return
    raise PermissionDenied(f"only the invoice's issuer or staff {verb} it")


def _may_change(actor: Principal, invoice: AccountMove) -> None:
    """Change a draft: only its issuer (the seller who issued it; staff, the platform's)."""
    if invoice.issuer_id is None:
        if actor.has_role(*STAFF_ROLES):
            return
        raise PermissionDenied("staff change the platform's draft invoices")
    if invoice.issuer_id != actor.user_id:
        raise PermissionDenied("only the seller who issued a draft invoice changes it")


def _require_draft(invoice: AccountMove, what: str) -> None:
    if invoice.state != "draft":
        number = invoice.name or "this invoice"
        raise NotADraft(
            f"{number} is {invoice.state}: only a draft is {what}"
            + ("; a posted invoice is never edited" if invoice.state == "posted" else ""),
            state=invoice.state,
        )


def _today() -> date:
    return utcnow().astimezone(_timezone()).date()


def _timezone() -> Any:
    return marketplace_settings().timezone


def invoice_event(invoice: AccountMove) -> dict[str, Any]:
    """An invoice's event payload: as an order's invoice's, with its state and its issuer."""
    return {
        **_invoice_event(invoice),
        "state": invoice.state,
        "seller": invoice.issuer.uuid if invoice.issuer is not None else None,
    }


# -- reading ------------------------------------------------------------------------------------

_INVOICES = AccountMove.__table__
_USERS = User.__table__


def list_invoices(
    actor: Principal, filters: InvoiceFilter, *, limit: int, cursor: str | None
) -> Page:
    """Invoices and credit notes ``actor`` sees (:func:`.services.visible_moves`), newest
    first, filtered; one page, without their lines."""
    statement = (
        select(AccountMove)
        .where(visible_moves(_viewer(actor)))
        .options(selectinload(AccountMove.issuer), selectinload(AccountMove.reversed_entry))
    )
    if filters.state:
        statement = statement.where(AccountMove.state == filters.state)
    if filters.payment_state:
        statement = statement.where(AccountMove.payment_state == filters.payment_state)
    if filters.move_type:
        statement = statement.where(AccountMove.move_type == filters.move_type)
    if filters.standalone is not None:
        statement = statement.where(
            AccountMove.order_id.is_(None)
            if filters.standalone
            else AccountMove.order_id.is_not(None)
        )
    if filters.customer:
        statement = statement.where(
            AccountMove.customer_id
            == select(_USERS.c.id).where(_USERS.c.uuid == filters.customer).scalar_subquery()
        )
    if filters.seller:
        statement = statement.where(
            and_(
                AccountMove.order_id.is_(None),
                AccountMove.issuer_id
                == select(_USERS.c.id).where(_USERS.c.uuid == filters.seller).scalar_subquery(),
            )
        )
    if filters.number:
        statement = statement.where(AccountMove.name.like(bindparam("number"), escape="\\"))
        statement = statement.params(number=like_pattern(filters.number))
    params = viewer_params(actor)
    if params:
        statement = statement.params(**params)
    return keyset_page(
        statement,
        [AccountMove.created_at, AccountMove.id],
        limit=limit,
        cursor=cursor,
        descending=True,
    )
