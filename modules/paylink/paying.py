"""The public side of a payment link: what its page shows, and paying through it.

A page shows the invoice's number, the amount the link pays, the currency, the seller's display
name, the due date, the methods that can take it, and the status: nothing about the customer.

Who sees what:

- a link that does not exist, is expired, revoked, used (a single-use link whose payment
  succeeded) or closed (its invoice paid, reversed or cancelled) does not exist for anyone;
- except for the browser that started a payment through it: it keeps seeing that payment's
  status (``processing``, ``paid``, ``failed``), found by a random cookie of that browser whose
  hash the payment's attempt row holds. The page the provider sends the payer back to
  (``/pay/return/<attempt>``) shows the same;
- and for a browser that saw the link while it took payments (it holds that page's proof,
  :func:`seen_proof`, a cookie only the server can compute, handed out with the live page):
  once the link is used, or its invoice paid, it is told ``paid`` (without anyone's payment
  details), and ``in_progress`` while a payment through it is still in flight. So both payers
  of a single-use link learn how it ended; a browser that never saw it live still gets the 404.

Paying takes the link's row lock first, then (through the payment module) the invoice's order
and invoices: two payers of one single-use link at once make one payment; the second finds it
in flight and is shown ``in_progress``. The state is checked there, at every use, whatever the
subscribers have written yet. One browser starts one payment at a time through a link: a second
submit while its payment waits (a double click, the back button) starts nothing and shows it.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from flask import current_app, url_for
from sqlalchemy import select

from app.db import Session, read_only, transaction, utcnow
from app.errors import Conflict, Invalid, NotFound
from modules.marketplace import services as marketplace
from modules.marketplace.models import AccountMove, AccountMoveLine
from modules.payment import services as payment
from modules.payment.adapters import adapters
from modules.payment.models import PaymentProvider
from modules.payment.providers import list_providers, sandbox_refused
from modules.seller.models import SellerProfile
from modules.seller.profiles import default_display_name
from modules.user.models import User

from .config import paylink_settings
from .models import PaymentLink, PaymentLinkAttempt
from .services import locked_link, payable, token_digest

IN_FLIGHT = ("pending", "processing")
FORM_PURPOSE = b"lapak.paylink.form"
SEEN_PURPOSE = b"lapak.paylink.seen"


class LinkGone(NotFound):
    """No such link, or it takes no payment and this browser paid nothing through it."""

    code = "payment-link-not-found"
    title = "There is no such payment link"


class LinkBusy(Conflict):
    """A payment through the link (or on its invoice) is in flight: none is started now."""

    code = "payment-link-busy"
    title = "A payment through this link is in progress"


class MethodRefused(Invalid):
    code = "payment-method-refused"
    title = "This payment method cannot take this payment"


@dataclass(frozen=True)
class Method:
    code: str
    name: str


@dataclass(frozen=True)
class PaymentShown:
    """The payment this browser started through the link, as its payer may see it."""

    reference: str | None
    state: str
    amount: Decimal
    #: The provider's page to go back to, while the payment waits there.
    continue_url: str | None
    #: What to do for a payment the payer makes by hand (a bank transfer's details).
    instructions: dict[str, str] | None


@dataclass(frozen=True)
class PayView:
    link: uuid.UUID
    #: ``open`` (the form), ``in_progress`` (someone's payment is in flight), ``processing``
    #: (this browser's is), ``paid`` (this browser's succeeded), ``failed`` (this browser's
    #: did not: the form again if the link still takes payments).
    status: str
    invoice_number: str
    amount_due: Decimal
    currency: str
    merchant: str
    due_date: date
    can_pay: bool
    payment: PaymentShown | None
    #: The link takes payments now (its page hands out :func:`seen_proof`).
    live: bool = False

    def as_json(self, methods: list[Method]) -> dict[str, Any]:
        shown = self.payment
        return {
            "status": self.status,
            "invoice_number": self.invoice_number,
            "amount_due": str(self.amount_due),
            "currency": self.currency,
            "merchant": self.merchant,
            "due_date": self.due_date.isoformat(),
            "methods": [method.code for method in methods] if self.can_pay else [],
            "payment": None
            if shown is None
            else {"reference": shown.reference, "state": shown.state, "amount": str(shown.amount)},
        }


# -- the payer's browser --------------------------------------------------------------------------


def payer_hash(cookie: str) -> str:
    """What an attempt keeps of its payer's cookie."""
    return hashlib.sha256(cookie.encode("utf-8", "replace")).hexdigest()


def _bound(purpose: bytes, cookie: str, link: uuid.UUID) -> str:
    """An HMAC of the browser's cookie and the link, keyed by the app's secret for ``purpose``."""
    key = hmac.new(current_app.secret_key.encode(), purpose, hashlib.sha256).digest()
    message = link.bytes + cookie.encode("utf-8", "replace")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def form_token(cookie: str, link: uuid.UUID) -> str:
    """The pay form's token: bound to the browser's cookie and the link, keyed by the app's
    secret (a cross-site page can neither read the cookie nor compute this)."""
    return _bound(FORM_PURPOSE, cookie, link)


def seen_proof(cookie: str, link: uuid.UUID) -> str:
    """What a browser holding ``cookie`` gets (as a cookie of the link's path) when it is shown
    the link while the link takes payments: later, it proves that browser saw it live."""
    return _bound(SEEN_PURPOSE, cookie, link)


def seen_valid(cookie: str | None, link: uuid.UUID, sent: str | None) -> bool:
    if not cookie or not sent:
        return False
    return hmac.compare_digest(sent.encode("utf-8", "replace"), seen_proof(cookie, link).encode())


def form_token_valid(cookie: str | None, link: uuid.UUID, sent: str | None) -> bool:
    if not cookie or not sent:
        return False
    return hmac.compare_digest(sent.encode("utf-8", "replace"), form_token(cookie, link).encode())


# -- reading --------------------------------------------------------------------------------------


def find_link(token: str) -> PaymentLink | None:
    """The link of ``token``, looked up by its digest."""
    return (
        Session()
        .scalars(select(PaymentLink).where(PaymentLink.token_hash == token_digest(token)))
        .first()
    )


def pay_view(token: str, cookie: str | None, seen: str | None = None) -> PayView | None:
    """What the page of ``token`` shows to the browser holding ``cookie`` (and ``seen``, its
    proof of having seen the link live); None: nothing (the same "no such link" for every
    reason)."""
    with read_only(use_replica=False):  # a payer back from paying must see their payment
        link = find_link(token)
        if link is None:
            return None
        payer = payer_hash(cookie) if cookie else None
        return _view(link, payer, seen=seen_valid(cookie, link.uuid, seen))


def attempt_view(attempt_uuid: uuid.UUID) -> PayView | None:
    """What the page the provider sends the payer back to shows (its id is its secret)."""
    with read_only(use_replica=False):
        attempt = (
            Session()
            .scalars(select(PaymentLinkAttempt).where(PaymentLinkAttempt.uuid == attempt_uuid))
            .first()
        )
        if attempt is None:
            return None
        return _view(attempt.link, attempt.payer_hash)


def _attempts(link: PaymentLink) -> list[PaymentLinkAttempt]:
    return list(
        Session().scalars(
            select(PaymentLinkAttempt)
            .where(PaymentLinkAttempt.link_id == link.id)
            .order_by(PaymentLinkAttempt.id.desc())
            .execution_options(populate_existing=True)
        )
    )


def _view(link: PaymentLink, payer: str | None, *, seen: bool = False) -> PayView | None:
    invoice = link.invoice
    attempts = _attempts(link)
    mine = [a for a in attempts if payer is not None and hmac.compare_digest(a.payer_hash, payer)]
    takes = takes_payments(link, attempts)
    busy = in_flight(link, attempts)
    due = min(link.amount, invoice.amount_residual)
    shown = None
    if mine:
        latest = mine[0]
        shown = _shown(latest)
        status = {"success": "paid", "pending": "processing", "processing": "processing"}.get(
            latest.transaction.state, "failed"
        )
        if status != "failed":
            due = latest.amount
    elif takes:
        status = "in_progress" if busy else "open"
    else:
        ended = _outcome(link, attempts) if seen else None
        if ended is None:
            return None
        status, due = ended
    can_pay = status in ("open", "failed") and takes and not busy
    return PayView(
        link=link.uuid,
        status=status,
        invoice_number=invoice.name or "",
        amount_due=due if due > 0 else link.amount,
        currency=link.currency,
        merchant=merchant_name(invoice),
        due_date=invoice.invoice_date_due,
        can_pay=can_pay,
        payment=shown,
        live=takes,
    )


def _outcome(link: PaymentLink, attempts: list[PaymentLinkAttempt]) -> tuple[str, Decimal] | None:
    """How a link that takes no more payments ended, for a browser that saw it live: ``paid``
    (through it: what was paid; its invoice paid another way: the link's amount), or
    ``in_progress`` while a payment through it waits (none revoked); None: nothing to tell
    (revoked, expired or closed with nothing paid, or its invoice reversed)."""
    if link.invoice.payment_state == "reversed":
        return None  # refunded or cancelled: "paid" would mislead
    paid = sum((a.amount for a in attempts if a.transaction.state == "success"), Decimal(0))
    if paid > 0:
        return "paid", paid
    if link.invoice.payment_state == "paid":
        return "paid", link.amount
    if link.state != "revoked" and any(a.transaction.state in IN_FLIGHT for a in attempts):
        return "in_progress", link.amount
    return None


def takes_payments(link: PaymentLink, attempts: list[PaymentLinkAttempt]) -> bool:
    """Active, not expired, its invoice payable, and (single use) not used: checked here at
    every use, whatever the subscribers have marked on the link yet."""
    if link.state != "active" or link.expires_at <= utcnow() or not payable(link.invoice):
        return False
    return not (link.single_use and any(a.transaction.state == "success" for a in attempts))


def in_flight(link: PaymentLink, attempts: list[PaymentLinkAttempt]) -> bool:
    """A payment through a single-use link waits for its money, or nothing is left to pay
    (the invoice's payments in process cover it)."""
    if link.single_use and any(a.transaction.state in IN_FLIGHT for a in attempts):
        return True
    return link.invoice.amount_residual <= 0


def _shown(attempt: PaymentLinkAttempt) -> PaymentShown:
    tx = attempt.transaction
    action = tx.action or {}
    continue_url = None
    instructions = None
    if tx.state == "pending" and action.get("type") == "redirect":
        continue_url = action.get("url")
    if tx.state in IN_FLIGHT and action.get("type") == "bank_transfer":
        names = ("bank_name", "account_holder", "account_number", "reference", "instructions")
        instructions = {name: str(action[name]) for name in names if action.get(name)}
    return PaymentShown(tx.reference, tx.state, tx.amount, continue_url, instructions)


def merchant_name(invoice: AccountMove) -> str:
    """The seller's display name when the invoice is one seller's alone; else the platform's
    (the merchant of record)."""
    sellers = set(
        Session().scalars(
            select(AccountMoveLine.seller_id).where(AccountMoveLine.move_id == invoice.id)
        )
    )
    if len(sellers) != 1 or None in sellers:
        return paylink_settings().merchant_name
    (seller_id,) = sellers
    name = Session().scalar(
        select(SellerProfile.display_name).where(SellerProfile.user_id == seller_id)
    )
    if name:
        return name
    user = Session().get(User, seller_id)
    return default_display_name(user) if user is not None else paylink_settings().merchant_name


def methods_for(currency: str) -> list[Method]:
    """The providers a payer without an account can pay ``currency`` with: enabled (or in
    test), taking the currency, not a sandbox in production, and not paying from money the
    customer holds (the wallet) nor settling at once."""
    registered = {
        code: adapter
        for code, adapter in adapters().items()
        if adapter.method.holder_purpose is None
        and not adapter.settles_at_once
        and not sandbox_refused(adapter)
    }
    rows = list(
        Session().scalars(
            select(PaymentProvider)
            .where(PaymentProvider.code.in_(sorted(registered)))
            .order_by(PaymentProvider.code)
        )
    )
    if {row.code for row in rows} != set(registered):
        rows = [row for row in list_providers() if row.code in registered]  # made on first use
    return [
        Method(row.code, row.name)
        for row in rows
        if row.state != "disabled" and currency in (row.currencies or [])
    ]


# -- paying ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    attempt: uuid.UUID
    #: Where the payer goes now: the provider's page, or (nothing to do there) the return page.
    go_to: str


def prepare() -> None:
    """What paying needs before the request's session holds a connection (the year's payment
    numbers, made once on a connection of their own)."""
    payment.prepare_guest_payment()


def start_payment(token: str, cookie: str, provider: str) -> Started:
    """Start a payment through the link of ``token`` with ``provider`` for the browser holding
    ``cookie`` (whose form token the caller checked).

    :class:`LinkGone` if the link takes no payment (and this browser paid nothing through it),
    :class:`LinkBusy` when a payment is in flight, :class:`MethodRefused` for a method the page
    does not offer. Call :func:`prepare` first.
    """
    with marketplace.refused_by_database(), transaction():
        session = Session()
        link_id = session.scalar(
            select(PaymentLink.id)
            .where(PaymentLink.token_hash == token_digest(token))
            .with_for_update()
        )
        if link_id is None:
            raise LinkGone()
        link = locked_link(link_id)
        session.refresh(link.invoice)
        attempts = _attempts(link)
        payer = payer_hash(cookie)
        mine = [a for a in attempts if hmac.compare_digest(a.payer_hash, payer)]
        if not takes_payments(link, attempts):
            if mine:
                raise LinkBusy("this browser's payment through the link is shown instead")
            raise LinkGone()
        if any(a.transaction.state in IN_FLIGHT for a in mine):
            # A second submit from this browser (a double click, the back button): its payment
            # waits already, and the page shows it; any kind of link.
            raise LinkBusy("this browser's payment through the link is in flight")
        if in_flight(link, attempts):
            raise LinkBusy()
        if provider not in {method.code for method in methods_for(link.currency)}:
            raise MethodRefused(
                "choose one of the methods the page offers", errors={"provider": "not offered"}
            )
        attempt_uuid = uuid.uuid4()
        back = url_for("paylink_pages.returned", attempt_id=attempt_uuid)
        try:
            tx = payment.pay_invoice_as_guest(
                link.invoice_id, provider, at_most=link.amount, return_url=back,
                expires_by=link.expires_at,  # cancelled by the expiry job if it outlives the link
            )  # fmt: skip
        except Conflict as refused:  # the invoice's payments in process cover it by now
            raise LinkBusy(str(refused)) from None
        session.add(
            PaymentLinkAttempt(
                uuid=attempt_uuid,
                link_id=link.id,
                transaction_id=tx.id,
                payer_hash=payer,
                amount=tx.amount,
                created_at=utcnow(),
            )
        )
        action = tx.action or {}
        go_to = action.get("url") if action.get("type") == "redirect" else None
    return Started(attempt_uuid, go_to or back)
