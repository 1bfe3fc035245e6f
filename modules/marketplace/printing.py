"""The printable invoice: ``GET /api/v1/marketplace/invoices/{id}/print``, one HTML page that a
browser prints on A4 paper, or saves as a PDF.

Any invoice or credit note the caller may see prints: a standalone one with its seller's display
name (:mod:`.issuing`), an order's as the platform's with each line's seller. The page shows the
payer, the dates, the lines with their PPN percent, PPN per rate, the totals, what is paid (the
confirmed payments less the refunds sent back, :func:`.refunds.received`), what is in process
and what is due (``amount_residual``, as the API shows it), the memo, and a "Pay online" link
when a module provides one for the invoice (:func:`.issuing.pay_url`; printed only while
something is due).

Who the invoice is to is printed as the viewer may know it (:func:`_payer`): the customer's name
and email for staff and for the customer themself; for the seller who issued a standalone
invoice, the payer's name they typed; for anyone else (a seller with a line in an order) the
customer's reference only, as the API shows it to them. A seller never reads a customer's email
here.

The page runs no script and fetches nothing: its one stylesheet is inline and allowed by its
hash in a strict Content-Security-Policy, every value is escaped by the template, and the page
is not cached (it names the payer). The template and stylesheet live in the module's
``templates/marketplace/`` and are read by a Jinja environment of their own, so the page prints
with or without the web client loaded.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Response
from jinja2 import Environment, PackageLoader, select_autoescape

from app.security import Principal

from .issuing import pay_url, seller_names
from .models import AccountMove
from .refunds import received
from .services import STAFF_ROLES

#: Whose invoice it is when no seller issued it: the platform's own.
PLATFORM_NAME = "Lapak"
_TEMPLATES = Environment(
    loader=PackageLoader("modules.marketplace", "templates"),
    autoescape=select_autoescape(("html",)),
    trim_blocks=True,
    lstrip_blocks=True,
)
CSS = (Path(__file__).parent / "templates" / "marketplace" / "invoice_print.css").read_text()
_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
#: What people read for the states the API names.
STATUS = {
    "draft": "Draft",
    "cancel": "Cancelled",
    "not_paid": "Not paid",
    "partial": "Partially paid",
    "in_payment": "In payment",
    "paid": "Paid",
    "reversed": "Reversed",
}
#: An invoice whose payments are all registered, none confirmed ("Partially paid" would say
#: money came in).
IN_PROCESS = "Payment in process"
#: What is still open to pay online.
PAYABLE = ("not_paid", "partial")


@dataclass(frozen=True)
class PrintedLine:
    description: str
    sold_by: str | None
    quantity: str
    price_unit: str
    tax_percent: str
    subtotal: str


def printable(viewer: Principal, invoice: AccountMove) -> Response:
    """The print-ready page of ``invoice`` (one ``viewer`` may see), with its headers."""
    html = render(viewer, invoice)
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def render(viewer: Principal, invoice: AccountMove) -> str:
    """The page's HTML."""
    lines = list(invoice.lines)
    order_tax = invoice.order.tax_percent if invoice.order is not None else None
    names = seller_names(
        {line.seller_id for line in lines if line.seller_id is not None}
        | ({invoice.issuer_id} if invoice.issuer_id is not None else set())
    )
    standalone = invoice.standalone
    taxes: dict[Decimal | None, Decimal] = {}
    printed = []
    for line in lines:
        rate = line.tax_percent if line.tax_percent is not None else order_tax
        taxes[rate] = taxes.get(rate, Decimal(0)) + line.price_tax
        # A seller's own invoice is theirs throughout; an order's names each line's seller.
        sold_by = None if standalone or line.seller_id is None else names.get(line.seller_id)
        printed.append(
            PrintedLine(
                description=line.name,
                sold_by=sold_by,
                quantity=_quantity(line.quantity),
                price_unit=_money(line.price_unit),
                tax_percent=_percent(rate),
                subtotal=_money(line.price_subtotal),
            )
        )
    credit_note = invoice.move_type == "out_refund"
    kind = "Credit note" if credit_note else "Invoice"
    number = invoice.name or ("Draft" if invoice.state == "draft" else "Not numbered")
    posted = invoice.state == "posted"
    status_key = invoice.payment_state if posted else invoice.state
    owed = posted and not credit_note and invoice.payment_state != "reversed"
    # Money is paid once confirmed, not when a payment is registered (which already lowers
    # what is due): an announced transfer or an opened gateway page is "in process".
    brought = received(invoice) if owed else None
    paid = brought.paid if brought is not None else Decimal(0)
    in_process = brought.in_process if brought is not None else Decimal(0)
    status = STATUS.get(status_key, status_key.replace("_", " ").capitalize())
    if status_key in ("partial", "in_payment") and paid == 0 and in_process > 0:
        status = IN_PROCESS  # the residual fell, but no money was received yet
    currency = invoice.currency
    link = None
    if owed and invoice.payment_state in PAYABLE and invoice.amount_residual > 0:
        link = _safe_url(pay_url(invoice, viewer))
    payer_name, payer_email = _payer(invoice, viewer)
    issuer = names.get(invoice.issuer_id) if invoice.issuer_id is not None else PLATFORM_NAME
    return _TEMPLATES.get_template("marketplace/invoice_print.html").render(
        css=CSS,
        title=f"{kind} {number} — {issuer}",
        watermark={"draft": "DRAFT", "cancel": "CANCELLED"}.get(invoice.state),
        issuer=issuer,
        issuer_note="Invoiced through Lapak" if invoice.issuer_id is not None else None,
        kind=kind,
        number=number,
        status=status,
        status_class=status_key,
        payer_name=payer_name,
        payer_email=payer_email,
        invoice_date=invoice.invoice_date.isoformat(),
        due_date=invoice.invoice_date_due.isoformat(),
        order=invoice.order.name if invoice.order is not None else None,
        reverses=invoice.reversed_entry.name if invoice.reversed_entry is not None else None,
        currency=currency,
        lines=printed,
        untaxed=f"{currency} {_money(invoice.amount_untaxed)}",
        taxes=_tax_rows(taxes, currency),
        total=f"{currency} {_money(invoice.amount_total)}",
        paid=f"{currency} {_money(paid)}" if paid > 0 else None,
        in_process=f"{currency} {_money(in_process)}" if in_process > 0 else None,
        due=f"{currency} {_money(invoice.amount_residual)}" if owed else None,
        pay_url=link,
        memo=invoice.memo,
        footer=f"{kind} {number} · reference {invoice.uuid}",
    )


def _tax_rows(taxes: dict[Decimal | None, Decimal], currency: str) -> list[tuple[str, str]]:
    """PPN per rate, highest rate first; rates that add nothing (0%) are left out, unless
    nothing is taxed at all."""
    rows = [
        (_percent(rate), f"{currency} {_money(amount)}")
        for rate, amount in sorted(taxes.items(), key=lambda item: -(item[0] or Decimal(0)))
        if amount != 0
    ]
    return rows or [("", f"{currency} {_money(Decimal(0))}")]


def _payer(invoice: AccountMove, viewer: Principal) -> tuple[str, str | None]:
    """Who the invoice is to, and their email, as ``viewer`` may read them.

    Staff, and the customer themself: the customer's name and email (a payer without an
    account: the name and email the issuer typed). The seller who issued a standalone invoice
    to a payer without an account: the name they typed, no email. Any other seller (a line of
    theirs in an order; or their own invoice to a customer with an account): the customer's
    reference only, as the API shows it to them, so printing a draft reveals nobody's name or
    email."""
    customer = invoice.customer
    staff = viewer.has_role(*STAFF_ROLES)
    if customer is not None:
        if staff or customer.id == viewer.user_id:
            return (customer.name or "").strip() or customer.email, customer.email
        return f"Customer {customer.uuid}", None
    if staff:
        return invoice.payer_name or "", invoice.payer_email
    if invoice.issuer_id is not None and invoice.issuer_id == viewer.user_id:
        return invoice.payer_name or "", None
    return "Customer", None  # (none else sees an invoice to a payer without an account)


def _safe_url(url: Any) -> str | None:
    """Only an absolute http(s) URL is printed as a link (never a ``javascript:`` one)."""
    if not isinstance(url, str) or not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return url


def _money(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def _quantity(quantity: Decimal) -> str:
    text = format(quantity.normalize(), "f")
    return text


def _percent(rate: Decimal | None) -> str:
    if rate is None:
        return "—"
    return f"{format(rate.normalize(), 'f')}%"
