"""Payment links for staff and sellers: make one for a posted invoice (its URL shown once), list
and read them (never their token), revoke them. Links close by themselves when their invoice is
paid, reversed or cancelled, and count the payments made through them (the subscribers below);
the pay page checks the state again at every use (:mod:`.paying`), so a late subscriber never
lets a closed link take money.

Who may: staff and admins for any invoice; a seller for the standalone invoices they issued
(``issuer_id``), as the marketplace lets only an invoice's issuer (or staff) manage it, and only
while they may issue (verified) to make or revoke one. An order's invoice is the platform's, not
its sellers': a seller with a line in it neither makes, sees nor revokes its links (they would
bill the other sellers' lines too). Anyone else asking about a link or an invoice they may not
see is told it does not exist.

Tokens are derived, not stored: ``token = base64url(HMAC-SHA256(secret key, "lapak.paylink:" +
link uuid))`` (256 bits, 43 characters), where the link's uuid is a fresh ``uuid4`` (122 random
bits from the OS) and the key is ``LAPAK_SECRET_KEY``. The database keeps only the token's
SHA-256 (how a request finds its link), so:

- a copy of the database alone reveals no token (nor can one be computed from it without the
  key), and the uuids the API, the events and the webhooks show are no use without the key;
- the URL of a link that is still active can be shown again without writing anything
  (:func:`active_link_url`, for a printed invoice, inside ``read_only()``), and a replay of a
  creation (the same ``Idempotency-Key``) answers the same URL;
- changing ``LAPAK_SECRET_KEY`` invalidates every link made before: their tokens no longer
  match their hashes (the pages answer 404); make new links after rotating the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Select, exists, func, select, update

from app.db import Session, transaction, utcnow
from app.errors import Conflict, Invalid, NotFound
from app.events import emit
from app.http import Page, keyset_page
from app.security import Principal
from modules.marketplace import idempotency
from modules.marketplace import services as marketplace
from modules.marketplace.idempotency import IdempotentRequest
from modules.marketplace.invoices import InvoicingNotAllowed
from modules.marketplace.issuing import register_pay_url_source, why_not_issuing
from modules.marketplace.models import AccountMove
from modules.payment import services as payment
from modules.payment.config import public_url
from modules.payment.models import PaymentTransaction

from .config import paylink_settings
from .models import LINK_STATES, PaymentLink, PaymentLinkAttempt

log = logging.getLogger(__name__)

STAFF_ROLES = ("staff", "admin")
#: Who may make, read and revoke links (sellers: for the standalone invoices they issued).
MAKERS = (*STAFF_ROLES, "seller")
#: What a token is the HMAC of, before the link's uuid.
TOKEN_PURPOSE = "lapak.paylink:"  # noqa: S105 - a label, not a secret
#: The invoice payment states that take no more payment.
SETTLED = ("paid", "reversed")

Render = Callable[[PaymentLink], dict[str, Any]]


class LinkNotFound(NotFound):
    code = "payment-link-not-found"
    title = "There is no such payment link"


class InvoiceNotPayable(Conflict):
    code = "invoice-not-payable"
    title = "The invoice takes no payment"


class LinkNotActive(Conflict):
    code = "payment-link-not-active"
    title = "The payment link no longer takes payments"


# -- tokens ---------------------------------------------------------------------------------------


def link_token(link_uuid: uuid.UUID) -> str:
    """The token of the link ``link_uuid``: ``base64url(HMAC-SHA256(LAPAK_SECRET_KEY,
    "lapak.paylink:" + uuid))`` without padding (256 bits, 43 characters). Unguessable without
    the key, whatever is known of the link; never stored (only :func:`token_digest` of it)."""
    message = (TOKEN_PURPOSE + str(link_uuid)).encode()
    digest = hmac.new(current_app.secret_key.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_digest(token: str) -> str:
    """What is stored of a token, and how a request finds its link (hex SHA-256): an index
    lookup on the digest, so the time taken says nothing about how much of a guess was right."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def pay_url(token: str) -> str | None:
    """The pay page's absolute URL (under ``LAPAK_PUBLIC_URL``, else the server's bound
    address: never the request's ``Host``)."""
    return public_url("paylink_pages.page", token=token)


# -- what a link says -----------------------------------------------------------------------------


def payable(invoice: AccountMove) -> bool:
    """Whether ``invoice`` can take a payment now, as far as its own state goes."""
    return (
        invoice.move_type == "out_invoice"
        and invoice.state == "posted"
        and invoice.payment_state not in SETTLED
    )


def status_of(link: PaymentLink, now: datetime | None = None) -> str:
    """``active``, ``expired``, ``revoked``, ``used`` or ``closed`` (also when its invoice was
    settled another way and the subscriber that closes it has not run yet)."""
    if link.state != "active":
        return link.state
    if link.expires_at <= (now or utcnow()):
        return "expired"
    if not payable(link.invoice):
        return "closed"
    return "active"


def event_payload(link: PaymentLink, invoice: AccountMove) -> dict[str, Any]:
    """What the link's events carry: never its token nor its URL."""
    return {
        "payment_link": link.uuid,
        "invoice": invoice.uuid,
        "invoice_number": invoice.name,
        "amount": link.amount,
        "currency": link.currency,
        "single_use": link.single_use,
        "expires_at": link.expires_at,
        "state": link.state,
    }


# -- making a link --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkRequest:
    invoice: uuid.UUID
    amount: Decimal | None = None
    expires_at: datetime | None = None
    single_use: bool = True


@dataclass(frozen=True)
class Created:
    """A creation's answer: the rendered link, and its token."""

    status: int
    body: dict[str, Any]
    token: str


def create_link(
    actor: Principal, request: LinkRequest, idempotent: IdempotentRequest | None, render: Render
) -> Created:
    """A link for a posted invoice with something due: at most what is due (all of it when no
    amount is given), expiring in ``LAPAK_PAYLINK_DEFAULT_DAYS`` unless told, single use unless
    told. Emits ``payment_link.created``. The token is not in ``body`` (nor in what the
    idempotency store keeps): a replay derives it again."""
    with marketplace.refused_by_database(), transaction():
        key = idempotency.begin(idempotent)
        if key.replay is not None:
            token = link_token(uuid.UUID(str(key.replay.body["id"])))
            return Created(key.replay.status_code, key.replay.body, token)
        invoice = _invoice_for(actor, request.invoice)
        token, link = _make_link(
            invoice, request.amount, request.expires_at, request.single_use, actor.user_id
        )
        body = render(link)
        key.complete(201, body)
    return Created(201, body, token)


def _make_link(
    invoice: AccountMove,
    amount: Decimal | None,
    expires_at: datetime | None,
    single_use: bool,
    created_by_id: int | None,
) -> tuple[str, PaymentLink]:
    """Check and write a new link in the caller's transaction; its token and row."""
    if not payable(invoice):
        raise InvoiceNotPayable(
            f"invoice {invoice.name or ''} takes no payment: it is {invoice.payment_state}",
            payment_state=invoice.payment_state,
        )
    due = invoice.amount_residual
    if due <= 0:
        raise InvoiceNotPayable(
            f"invoice {invoice.name} has nothing due now (its payments are in process)",
            payment_state=invoice.payment_state,
        )
    amount = due if amount is None else amount
    if amount <= 0 or amount > due:
        raise Invalid(
            f"a link pays more than 0 and at most the {due} {invoice.currency} due",
            errors={"amount": f"more than 0, at most {due}"},
        )
    settings = paylink_settings()
    now = utcnow()
    latest = now + timedelta(days=settings.max_days)
    expires_at = now + timedelta(days=settings.default_days) if expires_at is None else expires_at
    if not now < expires_at <= latest:
        raise Invalid(
            f"a link expires in the future, within {settings.max_days} days",
            errors={"expires_at": f"after now, at most {settings.max_days} days ahead"},
        )
    link_uuid = uuid.uuid4()  # os.urandom: 122 random bits
    token = link_token(link_uuid)
    link = PaymentLink(
        uuid=link_uuid,
        token_hash=token_digest(token),
        invoice_id=invoice.id,
        invoice=invoice,
        amount=amount,
        currency=invoice.currency,
        single_use=single_use,
        state="active",
        uses=0,
        amount_paid=Decimal(0),
        expires_at=expires_at,
        created_at=now,
        created_by_id=created_by_id,
    )
    Session().add(link)
    Session().flush()
    emit("payment_link.created", event_payload(link, invoice))
    return token, link


def active_link_url(invoice_id: int) -> str | None:
    """The pay URL a printed invoice shows: that of the invoice's newest link that takes
    payments (active, not expired, not used, its invoice payable), or None when it has none.

    Reads only (its token is derived again, :func:`link_token`): safe inside ``read_only()``
    and on a GET. It shows a link someone allowed to made; it makes none (whom a printed
    invoice shows it to: :func:`print_link`).
    """
    session = Session()
    invoice = session.get(AccountMove, invoice_id)
    if invoice is None or not payable(invoice):
        return None
    used = exists().where(
        PaymentLinkAttempt.link_id == PaymentLink.id,
        PaymentLinkAttempt.transaction_id == PaymentTransaction.id,
        PaymentTransaction.state == "success",
    )
    link_uuid = session.scalar(
        select(PaymentLink.uuid)
        .where(
            PaymentLink.invoice_id == invoice_id,
            PaymentLink.state == "active",
            PaymentLink.expires_at > utcnow(),
            ~(PaymentLink.single_use & used),
        )
        .order_by(PaymentLink.created_at.desc(), PaymentLink.id.desc())
        .limit(1)
    )
    return pay_url(link_token(link_uuid)) if link_uuid is not None else None


def print_link(invoice: AccountMove, viewer: Principal) -> str | None:
    """The "Pay online" link printed on ``invoice`` for ``viewer``: its newest active link, for
    those who may see its links (staff, its issuing seller) and for its customer, who pays it;
    not for a seller with a line in an order's invoice (the platform's: not their link)."""
    if not (
        viewer.has_role(*STAFF_ROLES)
        or (invoice.issuer_id is not None and invoice.issuer_id == viewer.user_id)
        or (invoice.customer_id is not None and invoice.customer_id == viewer.user_id)
    ):
        return None
    return active_link_url(invoice.id)


def install_print_link(app: Flask, _settings: object) -> None:
    """A printed invoice's "Pay online" link is its newest active payment link
    (:func:`print_link`)."""
    register_pay_url_source(app, print_link)


# -- reading and revoking -------------------------------------------------------------------------


def _invoice_for(actor: Principal, invoice_uuid: uuid.UUID) -> AccountMove:
    """The invoice (not a credit note) ``actor`` may make links for, as the database has it:
    staff any; a seller one they issued (an order's has no issuer: the platform's), while they
    may issue."""
    found = (
        select(AccountMove)
        .where(AccountMove.uuid == invoice_uuid, AccountMove.move_type == "out_invoice")
        .execution_options(populate_existing=True)
    )
    if not actor.has_role(*STAFF_ROLES):
        found = found.where(AccountMove.issuer_id == actor.user_id)
    invoice = Session().scalars(found).first()
    if invoice is None:
        raise NotFound("there is no such invoice")
    _may_still_issue(actor)
    return invoice


def _may_still_issue(actor: Principal) -> None:
    """A seller makes links only while they may issue invoices (verified)."""
    if actor.has_role(*STAFF_ROLES):
        return
    why = why_not_issuing(actor.user_id)
    if why is not None:
        raise InvoicingNotAllowed(why)


def visible_links(actor: Principal) -> Select[tuple[PaymentLink]]:
    """The links ``actor`` may see: staff all, a seller those of the invoices they issued."""
    statement = select(PaymentLink)
    if actor.has_role(*STAFF_ROLES):
        return statement
    return statement.where(
        exists().where(
            AccountMove.id == PaymentLink.invoice_id, AccountMove.issuer_id == actor.user_id
        )
    )


@dataclass(frozen=True)
class LinkFilter:
    invoice: uuid.UUID | None = None
    status: str | None = None


def list_links(actor: Principal, filters: LinkFilter, *, limit: int, cursor: str | None) -> Page:
    """Newest first, keyset-paged; ``status`` as the links show it (``expired`` is an active
    link past its expiry)."""
    statement = visible_links(actor)
    if filters.invoice is not None:
        statement = statement.where(
            PaymentLink.invoice_id
            == select(AccountMove.id).where(AccountMove.uuid == filters.invoice).scalar_subquery()
        )
    now = utcnow()
    if filters.status == "expired":
        statement = statement.where(PaymentLink.state == "active", PaymentLink.expires_at <= now)
    elif filters.status == "active":
        statement = statement.where(PaymentLink.state == "active", PaymentLink.expires_at > now)
    elif filters.status in LINK_STATES:
        statement = statement.where(PaymentLink.state == filters.status)
    return keyset_page(
        statement,
        [PaymentLink.created_at, PaymentLink.id],
        limit=limit,
        cursor=cursor,
        descending=True,
    )


def get_link(actor: Principal, link_uuid: uuid.UUID) -> PaymentLink:
    link = Session().scalars(visible_links(actor).where(PaymentLink.uuid == link_uuid)).first()
    if link is None:
        raise LinkNotFound("there is no such payment link")
    return link


def revoke_link(actor: Principal, link_uuid: uuid.UUID) -> PaymentLink:
    """The link takes no more payments, and the payments started through it that still wait
    for the payer (``pending``: a bank transfer nobody made, a gateway page left open) are
    cancelled through the payment module, in the same transaction: their amounts are due on
    the invoice again (nothing was posted for them), so a new link can be made. One the
    provider is already capturing (``processing``) goes on. An expired link may be revoked
    (to cancel those). Once revoked, revoking again changes nothing; a used or closed link
    (also one whose invoice was settled before the subscriber closing it ran) is a 409."""
    with marketplace.refused_by_database(), transaction():
        found = visible_links(actor).where(PaymentLink.uuid == link_uuid)
        link_id = Session().scalar(found.with_only_columns(PaymentLink.id).with_for_update())
        if link_id is None:
            raise LinkNotFound("there is no such payment link")
        # No verification asked: a seller sent back to review still stops their own links.
        link = locked_link(link_id)
        if link.state == "revoked":
            return link
        Session().refresh(link.invoice)
        status = status_of(link)
        if status not in ("active", "expired"):
            raise LinkNotActive(f"the link is {status}: nothing to revoke", state=status)
        link.state = "revoked"
        link.ended_at = utcnow()
        link.revoked_by_id = actor.user_id
        waiting = Session().scalars(
            select(PaymentLinkAttempt.transaction_id)
            .join(PaymentTransaction, PaymentTransaction.id == PaymentLinkAttempt.transaction_id)
            .where(PaymentLinkAttempt.link_id == link.id, PaymentTransaction.state == "pending")
            .order_by(PaymentLinkAttempt.transaction_id)
        )
        for tx_id in list(waiting):
            payment.cancel_guest_transaction(tx_id, "its payment link was revoked")
    return link


def locked_link(link_id: int) -> PaymentLink:
    """The link as the database has it, after the caller took its row lock."""
    return (
        Session()
        .scalars(
            select(PaymentLink)
            .where(PaymentLink.id == link_id)
            .execution_options(populate_existing=True)
        )
        .one()
    )


# -- what happens to links (outbox subscribers) ---------------------------------------------------


def count_payment(payload: dict[str, Any]) -> None:
    """``payment.succeeded``: a payment through a link succeeded. Counted on the link once
    (under its row lock), a single-use link is then ``used``, and ``payment_link.paid`` is
    emitted. Other transactions are none of this module's business."""
    tx_uuid = _as_uuid(payload.get("transaction"))
    if tx_uuid is None:
        return
    session = Session()
    with transaction():
        found = session.execute(
            select(PaymentLinkAttempt.id, PaymentLinkAttempt.link_id)
            .join(PaymentTransaction, PaymentTransaction.id == PaymentLinkAttempt.transaction_id)
            .where(PaymentTransaction.uuid == tx_uuid)
        ).first()
        if found is None:
            return
        attempt_id, link_id = found
        session.execute(select(PaymentLink.id).where(PaymentLink.id == link_id).with_for_update())
        link = locked_link(link_id)
        attempt = session.scalars(
            select(PaymentLinkAttempt)
            .where(PaymentLinkAttempt.id == attempt_id)
            .execution_options(populate_existing=True)
        ).one()
        if attempt.paid_at is not None:
            return  # counted already (a redelivered event)
        now = utcnow()
        attempt.paid_at = now
        link.uses += 1
        link.amount_paid += attempt.amount
        if link.state == "active" and link.single_use:
            link.state = "used"
            link.ended_at = now
        emit(
            "payment_link.paid",
            {
                **event_payload(link, link.invoice),
                "transaction": tx_uuid,
                "reference": attempt.transaction.reference,
                "payment": payload.get("payment"),
                "paid": attempt.amount,
                "uses": link.uses,
                "amount_paid": link.amount_paid,
            },
        )


def close_for_paid_invoice(payload: dict[str, Any]) -> None:
    """``invoice.paid``: the invoice's active links close (``invoice paid``)."""
    invoice_uuid = _as_uuid(payload.get("invoice"))
    if invoice_uuid is not None:
        _close(select(AccountMove.id).where(AccountMove.uuid == invoice_uuid), "invoice paid")


def close_for_reversed_invoice(payload: dict[str, Any]) -> None:
    """``invoice.reversed``: the reversed invoice's active links close (``invoice reversed``).
    Its payload names the credit note when an order is cancelled, the invoice itself when
    refunds cover its payments: either way the invoice is the credit note's reversed entry, or
    the named move itself."""
    named = _as_uuid(payload.get("invoice"))
    if named is not None:
        reversed_invoice = select(
            func.coalesce(AccountMove.reversed_entry_id, AccountMove.id)
        ).where(AccountMove.uuid == named)
        _close(reversed_invoice, "invoice reversed")


def _close(invoice_id: Any, reason: str) -> int:
    with transaction():
        result = Session().execute(
            update(PaymentLink)
            .where(
                PaymentLink.invoice_id == invoice_id.scalar_subquery(),
                PaymentLink.state == "active",
            )
            .values(state="closed", closed_reason=reason, ended_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    closed = result.rowcount or 0
    if closed:
        log.info("closed %d payment link(s): %s", closed, reason)
    return closed


def _as_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value is not None else None
    except ValueError:
        return None
