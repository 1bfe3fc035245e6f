"""Paying invoices through providers: starting transactions, provider notifications, staff
actions, expiry, and reading transactions (providers: :mod:`.providers`; saved methods:
:mod:`.tokens`).

Row locks: a provider transaction first, then (through the marketplace) the order, the invoice
and the payment: nothing locks them the other way round, so no deadlock.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Select, bindparam, exists, inspect, select

from app.db import (
    Session,
    adopt_written,
    after_commit,
    get_database,
    insert_record,
    transaction,
    update_record,
    utcnow,
)
from app.errors import Conflict, Invalid, NotFound, Unauthenticated
from app.events import emit
from app.http import Page, keyset_page
from app.jobs import enqueue_later
from app.security import Principal
from modules.marketplace import idempotency, numbering, refunds
from modules.marketplace import services as marketplace
from modules.marketplace.config import marketplace_settings
from modules.marketplace.idempotency import IdempotentRequest
from modules.marketplace.models import AccountMove, AccountMoveLine, Payment, Refund
from modules.user.models import User

from .adapters import Adapter, InstantAdapter, Notification, Start, adapter_for, adapters
from .config import public_url
from .models import PaymentProvider, PaymentToken, PaymentTransaction
from .providers import (
    ProviderUnavailable,
    fee_for,
    get_provider,
    provider_secrets,
    sandbox_refused,
    usable,
)
from .tokens import save_token, usable_token
from .transitions import LATE_SUCCESS_MESSAGE, InvalidTransition, event_payload, transition

log = logging.getLogger(__name__)

STAFF_ROLES = ("staff", "admin")
HUNDRED = Decimal(100)
#: How far a notification's timestamp may be from our clock (seconds), either way.
SIGNATURE_WINDOW_SECONDS = 300
SIGNATURE_VERSION = "v1"

Render = Callable[[Any], dict[str, Any]]


class AmountMismatch(Conflict):
    code = "amount-mismatch"
    title = "The notification's amount or currency is not the transaction's"


class NothingDue(Conflict):
    code = "nothing-due"
    title = "The invoice has nothing due now"


class BadSignature(Unauthenticated):
    code = "bad-signature"
    title = "The notification's signature is not valid"


# -- starting a transaction -------------------------------------------------------------------


@dataclass(frozen=True)
class PayRequest:
    invoice: uuid.UUID
    provider: str
    amount: Decimal | None = None
    token: uuid.UUID | None = None
    save_method: bool = False


def pay_invoice(
    actor: Principal, request: PayRequest, idempotent: IdempotentRequest | None, render: Render
) -> tuple[int, dict[str, Any]]:
    """Start paying an invoice through a provider: the accounting payment is registered
    (``in_process``, the amount reserved on the invoice) and the provider transaction made, with
    its ``action`` for the payer. Returns the status and the rendered transaction (201), or the
    first answer for a repeated ``Idempotency-Key``."""
    notify_url = _notify_url(request.provider)
    # Before the transaction holds a connection: the year's first payment makes its sequence
    # on a connection of its own.
    numbering.prepare_year(("PAY",), utcnow().astimezone(marketplace_settings().timezone).year)
    with marketplace.refused_by_database(), transaction():
        key = idempotency.begin(idempotent)
        if key.replay is not None:
            return key.replay.status_code, key.replay.body
        invoice = marketplace.invoice_to_pay(actor, request.invoice)
        provider, adapter = usable(request.provider, invoice.currency)
        start = Start(notify_url=notify_url)
        token = None
        if invoice.customer_id is None and (request.token is not None or request.save_method):
            raise Invalid(
                "this invoice's payer has no account: no saved method pays it, and none is saved",
                errors={"token" if request.token is not None else "save_method": "not for a "
                        "payer without an account"},
            )  # fmt: skip
        if request.token is not None:
            token = usable_token(invoice.customer_id, request.token, provider)
            start = Start(notify_url=notify_url, provider_token=token.provider_token)
        payment = marketplace.register_provider_payment(
            invoice, adapter.method.code, request.amount
        )
        tx = _start(
            actor, provider, adapter, start, payment=payment, token=token,
            tokenize=request.save_method,
        )  # fmt: skip
        if adapter.settles_at_once:
            update_record(tx, action=cast(InstantAdapter, adapter).settle(provider, tx))
        body = render(tx)
        key.complete(201, body)
    return 201, body


def pay_invoice_as_guest(
    invoice_id: int,
    provider_code: str,
    *,
    at_most: Decimal,
    return_url: str | None,
    expires_by: datetime | None = None,
) -> PaymentTransaction:
    """Start paying an invoice for a payer who is not logged in, whom the caller vouches for
    (a payment link, checked under its own row lock), in the caller's transaction.

    The invoice's order and invoices are locked here, in the order every writer takes them,
    and the invoice is read under those locks; the amount is what is due, but at most
    ``at_most``. The transaction is ``guest``: it is the invoice's customer's payment, but no
    method of theirs is used, offered or saved (the payer's card is not theirs), and nobody
    is recorded as having started it. A provider paying from money the customer holds (the
    wallet), or settling at once, is refused: a guest must never draw on the customer's
    money. ``expires_by``: the transaction expires then at the latest (when the link it was
    started through does), and the expiry job cancels it if it still waits for the payer. Call
    :func:`prepare_guest_payment` before the caller's transaction begins.
    """
    marketplace.lock_invoice(invoice_id)
    invoice = Session().scalars(_INVOICE, {"invoice_id": invoice_id}).one()
    provider, adapter = usable(provider_code, invoice.currency)
    if adapter.method.holder_purpose is not None or adapter.settles_at_once:
        raise ProviderUnavailable(
            f"the provider {provider_code!r} pays from the customer's own money: not for a guest",
            errors={"provider": "not for a payer who is not logged in"},
        )
    amount = min(at_most, invoice.amount_residual)
    if amount <= 0:
        raise NothingDue(
            f"invoice {invoice.name} has nothing due now", payment_state=invoice.payment_state
        )
    payment = marketplace.register_provider_payment(invoice, adapter.method.code, amount)
    start = Start(notify_url=_notify_url(provider_code), return_url=return_url)
    return _start(
        None, provider, adapter, start, payment=payment, guest=True, expires_by=expires_by
    )


def cancel_guest_transaction(tx_id: int, reason: str) -> bool:
    """Give up a guest's transaction that still waits for its payer (``pending``), in the
    caller's transaction, as a payer's cancel does (:func:`cancel_transaction`): ``canceled``,
    its accounting payment released, so its amount is due on the invoice again (nothing was
    posted for it). The transaction's row lock first, then its order and invoices. False if it
    is no longer pending (the provider is taking the money, or it is over)."""
    tx = _reloaded(
        Session()
        .execute(
            select(PaymentTransaction.id).where(PaymentTransaction.id == tx_id).with_for_update()
        )
        .scalar_one()
    )
    if not tx.guest or tx.state != "pending":
        return False
    return transition(tx, "canceled", reason, provider=False)


#: An invoice as the database has it now (read under its locks).
_INVOICE = (
    select(AccountMove)
    .where(AccountMove.id == bindparam("invoice_id"))
    .execution_options(populate_existing=True)
)


def prepare_guest_payment() -> None:
    """What :func:`pay_invoice_as_guest` needs before its caller's transaction holds a
    connection (the year's payment numbers)."""
    numbering.prepare_year(("PAY",), utcnow().astimezone(marketplace_settings().timezone).year)


@dataclass(frozen=True)
class TopUp:
    """Money the payer puts into their own wallet: no invoice, no accounting payment."""

    customer_id: int
    amount: Decimal
    currency: str


def start_top_up(actor: Principal, provider_code: str, top_up: TopUp) -> PaymentTransaction:
    """A ``top_up`` transaction through ``provider_code``, in the caller's transaction (the
    wallet module's, which checked the wallet and the limits). Its success is settled by the
    wallet's registered settlement (the credit posted)."""
    try:
        provider, adapter = usable(provider_code, top_up.currency)
    except NotFound:
        raise ProviderUnavailable(
            f"there is no payment provider {provider_code!r}",
            errors={"provider": f"one of {', '.join(sorted(adapters()))}"},
        ) from None
    if adapter.method.holder_purpose is not None:
        raise ProviderUnavailable(
            f"the provider {provider_code!r} pays from money the payer holds: it tops up nothing",
            errors={"provider": "cannot top up"},
        )
    start = Start(notify_url=_notify_url(provider_code))
    return _start(actor, provider, adapter, start, top_up=top_up)


def _start(
    actor: Principal | None,
    provider: PaymentProvider,
    adapter: Adapter,
    start: Start,
    *,
    payment: Payment | None = None,
    top_up: TopUp | None = None,
    token: PaymentToken | None = None,
    tokenize: bool = False,
    guest: bool = False,
    expires_by: datetime | None = None,
) -> PaymentTransaction:
    """The provider transaction for a just-registered payment (or a top-up), in the caller's
    transaction; it expires after the adapter's time, but not after ``expires_by``."""
    if tokenize and not adapter.supports_tokens:
        raise ProviderUnavailable(
            f"the provider {provider.code!r} does not save methods",
            errors={"save_method": "not supported by this provider"},
        )
    money = payment if payment is not None else top_up
    assert money is not None, "a transaction pays an invoice or tops a wallet up"
    fee = fee_for(provider, money.amount, money.currency)
    if fee > money.amount:
        raise ProviderUnavailable(
            f"the provider's fee ({fee}) is more than the payment ({money.amount})",
            errors={"amount": f"more than {fee}"},
        )
    now = utcnow()
    paid: dict[str, Any] = {}
    if payment is not None:
        paid = {"invoice_id": payment.invoice_id, "account_payment_id": payment.id}
        if inspect(payment).persistent:  # in the session: the transaction holds it as loaded
            paid |= {
                "invoice": payment.invoice,
                "account_payment": payment,
                "customer": payment.customer,
            }
    tx = PaymentTransaction(
        uuid=uuid.uuid4(),
        provider_id=provider.id,
        provider=provider,
        kind="invoice" if payment is not None else "top_up",
        customer_id=money.customer_id,
        **paid,
        token_id=token.id if token is not None else None,
        token=token,
        amount=money.amount,
        currency=money.currency,
        fee=fee,
        net=money.amount - fee,
        state="pending",
        tokenize=tokenize,
        guest=guest,
        action={},
        expires_at=min(now + adapter.expiry, expires_by or now + adapter.expiry),
        last_state_change=now,
        created_at=now,
        created_by_id=actor.user_id if actor is not None else None,
    )
    insert_record(tx)
    adopt_written(tx)
    year = now.astimezone(marketplace_settings().timezone).year
    # The reference and the action are written with the next change (a settling adapter's
    # state) or at the commit: one UPDATE.
    tx.reference = f"TX/{year}/{tx.id:05d}"
    tx.action = adapter.initiate(provider, tx, start)
    return tx


def _notify_url(code: str) -> str | None:
    """From LAPAK_PUBLIC_URL or the server's bound address: never from the request's Host."""
    return public_url("payments.ProviderNotify", code=code)


class OrderCheckout:
    """``POST /marketplace/orders`` with ``payment.provider`` (see marketplace.payments)."""

    def method_for(self, provider: str, currency: str) -> str:
        try:
            _, adapter = usable(provider, currency)
        except NotFound:
            raise ProviderUnavailable(
                f"there is no payment provider {provider!r}",
                errors={"payment.provider": f"one of {', '.join(sorted(adapters()))}"},
            ) from None
        return adapter.method.code

    def start(self, actor: Principal, payment: Payment, options: dict[str, Any]) -> dict[str, Any]:
        from .schemas import ProviderTransactionSchema

        code = options["provider"]
        provider, adapter = usable(code, payment.currency)
        tx = _start(actor, provider, adapter, Start(notify_url=_notify_url(code)), payment=payment)
        return ProviderTransactionSchema().dump(tx)

    def after_placing(self, placed: dict[str, Any]) -> dict[str, Any] | None:
        """Never raises: the order is committed. A failure to settle leaves the transaction
        ``pending`` (the payer may cancel it; the expiry job does); a refusal (the money went
        meanwhile) fails it with the reason."""
        from .schemas import ProviderTransactionSchema

        adapter = adapter_for(placed["provider"])
        if not adapter.settles_at_once:
            return None
        tx_uuid = uuid.UUID(placed["id"])
        try:
            try:
                with transaction():
                    settle_transaction(tx_uuid, cast(InstantAdapter, adapter))
            except (Invalid, Conflict) as refused:
                # The money went between the order's check and now (another payment from
                # the same wallet): the order stays, unpaid; the transaction says why.
                log.info("transaction %s not settled: %s", placed["reference"], refused)
                with transaction():
                    tx = _locked_by_uuid(tx_uuid)
                    if tx.state == "pending":
                        transition(tx, "failed", str(refused), provider=True)
            with transaction():
                return ProviderTransactionSchema().dump(get_transaction_by_uuid(tx_uuid))
        except Exception:  # the database went away after the commit: say what is known
            log.exception("transaction %s: settling after the order failed", placed["reference"])
            return None

    def refund_created(self, refund: Refund) -> None:
        tx = _captured_by(refund.payment_id)
        if tx is None or not adapter_for(tx.provider.code).refunds_itself:
            return
        refund_uuid = str(refund.uuid)
        after_commit(
            lambda: enqueue_later(
                _send_refund_job(), refund_uuid, queue="default", recovered_by="the refund sweep"
            )
        )

    def holder_refund_refused(self, payment: Payment) -> str | None:
        """A guest's payment (whatever state its transaction is in: staff may have confirmed
        the money by hand) goes back to whoever paid, never into the customer's wallet."""
        guest = Session().scalar(
            select(
                exists().where(
                    PaymentTransaction.account_payment_id == payment.id, PaymentTransaction.guest
                )
            )
        )
        if guest:
            return "it was paid through a payment link, by someone who may not be the customer"
        return None

    def order_cancelling(self, order_id: int) -> None:
        cancel_for_order(order_id)

    def invoice_reversing(self, invoice_id: int) -> None:
        cancel_for_invoice(invoice_id)

    def payments_in_flight(self, payment_ids: Sequence[int]) -> list[int]:
        if not payment_ids:
            return []
        return list(
            Session().scalars(
                select(PaymentTransaction.account_payment_id)
                .where(
                    PaymentTransaction.account_payment_id.in_(payment_ids),
                    PaymentTransaction.state.in_(("pending", "processing")),
                )
                .order_by(PaymentTransaction.account_payment_id)
            )
        )


# -- provider notifications ----------------------------------------------------------------------


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256 of "{timestamp}.{body}">`` with the provider's secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={digest.hexdigest()}"


def verify_signature(code: str, body: bytes, timestamp: str | None, signed: str | None) -> None:
    """Refuse (401) a notification not signed with the provider's secret within the window
    (404 for a sandbox gateway in production: it does not exist there)."""
    _refuse_sandbox(code)
    with transaction():
        provider = get_provider(code)
    secret = provider_secrets(provider).get("webhook_secret")
    if secret is None or not timestamp or not signed:
        raise BadSignature("the notification is not signed")
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise BadSignature("the notification's timestamp is not valid")
    moment = int(timestamp)
    if abs(time.time() - moment) > SIGNATURE_WINDOW_SECONDS:
        raise BadSignature("the notification's timestamp is outside the accepted window")
    # Compared as bytes: compare_digest refuses a non-ASCII str (a TypeError, a 500).
    expected = signature(secret, timestamp, body).encode()
    given = [part.strip().encode("utf-8", "replace") for part in signed.split(",")]
    if not any(hmac.compare_digest(expected, one) for one in given):
        raise BadSignature("the notification's signature does not match")


def process_notification(provider_code: str, data: dict[str, Any]) -> PaymentTransaction:
    """THE entry point for what a provider reports: find the transaction (row-locked), check
    the amount and currency, apply the state (a repeat is a no-op), save the method.

    Idempotent on the provider reference: the same notification any number of times confirms
    the payment once and emits one event.
    """
    adapter = _refuse_sandbox(provider_code)
    with marketplace.refused_by_database(), transaction():
        provider = get_provider(provider_code)
        notification = adapter.handle_notification(provider, data)
        tx = _locked_transaction(provider, notification.reference)
        _check_amount(tx, notification)
        if notification.provider_reference is not None:
            _set_provider_reference(tx, notification.provider_reference)
        if notification.state == "success" and _given_up(tx):
            _record_late_success(tx)
            return tx
        changed = transition(tx, notification.state, notification.message, provider=True)
        # A token in the notification: the payer asked the provider to save the method (on
        # its page, or through save_method); kept only with the success that proves it works,
        # and never for a guest (their card is not the customer's) nor for a payer without an
        # account (nowhere to keep it).
        if changed and notification.state == "success" and notification.token is not None:
            if tx.guest or tx.customer_id is None:
                log.info("transaction %s: a guest's method is not saved", tx.reference)
            else:
                tx.tokenize = True
                save_token(tx, notification.token)
    return tx


def _given_up(tx: PaymentTransaction) -> bool:
    """Lapak gave the payment up (the transaction canceled or failed, or its accounting
    payment cancelled, e.g. with its order): a success now is money taken for nothing."""
    payment = tx.account_payment
    return tx.state in ("canceled", "failed") or (
        tx.state != "success" and payment is not None and payment.state == "canceled"
    )


def _record_late_success(tx: PaymentTransaction) -> None:
    """Keep the fact the provider captured the money (a 409 would lose it, and the provider
    would retry in vain): the state stays, nothing is posted, staff are told to refund it.
    Once, however often the provider repeats itself."""
    if tx.late_success:
        log.info("transaction %s: late success already recorded", tx.reference)
        return
    log.warning("transaction %s is %s but the provider captured it: refund needed",
                tx.reference, tx.state)  # fmt: skip
    tx.late_success = True
    tx.state_message = LATE_SUCCESS_MESSAGE
    Session().flush()
    emit("payment.late_success", {**event_payload(tx), "message": LATE_SUCCESS_MESSAGE})


def cancel_for_order(order_id: int) -> int:
    """The order is being cancelled (in its transaction, before its row lock): its provider
    transactions still pending or processing are canceled, so a later success meets a canceled
    transaction (recorded as a late success) instead of a cancelled payment. Locks each
    transaction before the order, as every other writer does; one a payer starts after this,
    before the order's lock, the marketplace sees under that lock (:meth:`OrderCheckout.
    payments_in_flight`) and refuses the cancel, to be tried again. Returns how many."""
    return _cancel_in_flight(AccountMove.order_id == order_id, "the order was cancelled")


def cancel_for_invoice(invoice_id: int) -> int:
    """A standalone invoice is being reversed (in its transaction, before its row lock): as
    :func:`cancel_for_order`, for that invoice's provider transactions."""
    return _cancel_in_flight(AccountMove.id == invoice_id, "the invoice was reversed")


def _cancel_in_flight(invoices: Any, reason: str) -> int:
    session = Session()
    ids = list(
        session.scalars(
            select(PaymentTransaction.id)
            .join(AccountMove, AccountMove.id == PaymentTransaction.invoice_id)
            .where(invoices, PaymentTransaction.state.in_(("pending", "processing")))
            .order_by(PaymentTransaction.id)
            .with_for_update(of=PaymentTransaction)
        )
    )
    done = 0
    for tx_id in ids:
        tx = _reloaded(tx_id)
        payment = tx.account_payment
        if tx.state in ("pending", "processing") and (payment is None or payment.state != "paid"):
            transition(tx, "canceled", reason, provider=True)
            done += 1
    return done


def _refuse_sandbox(code: str) -> Adapter:
    adapter = adapter_for(code)
    if sandbox_refused(adapter):
        raise NotFound(f"there is no payment provider {code!r} in production")
    return adapter


def _locked_transaction(provider: PaymentProvider, reference: str) -> PaymentTransaction:
    session = Session()
    found = session.execute(
        select(PaymentTransaction.id)
        .where(
            PaymentTransaction.provider_id == provider.id,
            PaymentTransaction.reference == reference,
        )
        .with_for_update()
    ).scalar()
    if found is None:
        raise NotFound(f"there is no transaction {reference!r} with {provider.code!r}")
    return _reloaded(found)


def _reloaded(tx_id: int) -> PaymentTransaction:
    """The transaction as the database has it now (after its row lock)."""
    return (
        Session()
        .scalars(
            select(PaymentTransaction)
            .where(PaymentTransaction.id == tx_id)
            .execution_options(populate_existing=True)
        )
        .one()
    )


def _check_amount(tx: PaymentTransaction, notification: Notification) -> None:
    if notification.amount != tx.amount or notification.currency != tx.currency:
        raise AmountMismatch(
            f"the provider reports {notification.amount} {notification.currency} for "
            f"{tx.reference}, which is {tx.amount} {tx.currency}; nothing was changed",
            reference=tx.reference,
        )


def _set_provider_reference(tx: PaymentTransaction, reference: str) -> None:
    if tx.provider_reference == reference:
        return
    if tx.provider_reference is not None:
        raise Conflict(
            f"transaction {tx.reference} has another provider reference",
            reference=tx.reference,
        )
    taken = Session().scalar(
        select(
            exists().where(
                PaymentTransaction.provider_id == tx.provider_id,
                PaymentTransaction.provider_reference == reference,
            )
        )
    )
    if taken:
        raise Conflict("that provider reference belongs to another transaction")
    tx.provider_reference = reference


# -- staff and payers through the API -------------------------------------------------------------


def confirm_transaction(actor: Principal, tx_uuid: uuid.UUID) -> PaymentTransaction:
    """Staff saw the money of a manual transfer: the transaction succeeds (409 otherwise)."""
    with marketplace.refused_by_database(), transaction():
        tx = _locked_by_uuid(tx_uuid)
        transition(tx, "success", f"confirmed by {actor.email}", provider=False)
    return tx


def cancel_transaction(actor: Principal, tx_uuid: uuid.UUID) -> PaymentTransaction:
    """The payer gives up a pending transaction, staff one that has not succeeded (409
    otherwise)."""
    with marketplace.refused_by_database(), transaction():
        tx = _locked_by_uuid(tx_uuid)
        payer = not actor.has_role(*STAFF_ROLES)
        if payer and tx.customer_id != actor.user_id:
            raise NotFound("there is no such payment")
        if payer and tx.state == "processing":
            # The provider is taking the money: giving up now would lose a capture.
            raise InvalidTransition(
                f"transaction {tx.reference} is processing at the provider: it cannot be "
                "canceled now",
                state=tx.state,
                target="canceled",
            )
        transition(tx, "canceled", "canceled by the payer", provider=False)
    return tx


def settle_transaction(tx_uuid: uuid.UUID, adapter: InstantAdapter) -> PaymentTransaction:
    """Settle a pending transaction of a provider that settles at once, in the caller's
    transaction: the transaction's row, then its order and invoice (as every writer), then what
    the adapter locks (the wallet: after the invoice, as when paying an invoice)."""
    tx = _locked_by_uuid(tx_uuid)
    if tx.state == "pending":
        if tx.invoice is not None:
            marketplace.lock_invoice(tx.invoice_id)
            Session().refresh(tx.invoice)  # read with the transaction, before its lock
        update_record(tx, action=adapter.settle(tx.provider, tx))
    return tx


def get_transaction_by_uuid(tx_uuid: uuid.UUID) -> PaymentTransaction:
    tx = (
        Session()
        .scalars(select(PaymentTransaction).where(PaymentTransaction.uuid == tx_uuid))
        .first()
    )
    if tx is None:
        raise NotFound("there is no such payment")
    return tx


def _locked_by_uuid(tx_uuid: uuid.UUID) -> PaymentTransaction:
    found = (
        Session()
        .execute(
            select(PaymentTransaction.id)
            .where(PaymentTransaction.uuid == tx_uuid)
            .with_for_update()
        )
        .scalar()
    )
    if found is None:
        raise NotFound("there is no such payment")
    return _reloaded(found)


# -- refunds through the provider -----------------------------------------------------------------

#: A refund its provider sends back is swept again when its job did not run within this.
REFUND_SWEEP_AFTER = timedelta(minutes=2)


def _send_refund_job() -> Callable[[str], bool]:
    """The job (its module imports this one)."""
    from .jobs import send_refund

    return send_refund


def _captured_by(payment_id: int) -> PaymentTransaction | None:
    """The successful provider transaction that took the accounting payment, if one did."""
    return (
        Session()
        .scalars(
            select(PaymentTransaction).where(
                PaymentTransaction.account_payment_id == payment_id,
                PaymentTransaction.state == "success",
            )
        )
        .first()
    )


def send_refund(refund_uuid: uuid.UUID) -> bool:
    """Have the provider that took the payment send ``refund_uuid`` back, then record it
    (``succeeded``, with the provider's reference). The provider is asked outside any database
    transaction (it may be a network call); a refund done meanwhile is left alone. True if it
    was sent now."""
    with transaction():
        refund = Session().scalars(select(Refund).where(Refund.uuid == refund_uuid)).first()
        if refund is None or refund.state != "pending":
            return False
        tx = _captured_by(refund.payment_id)
        if tx is None:
            return False
        adapter = _refuse_sandbox(tx.provider.code)
        provider = get_provider(tx.provider.code)
        amount = refund.amount
    if not adapter.refunds_itself:
        return False
    reference = adapter.refund(provider, tx, amount)
    if reference is None:
        return False
    refunds.provider_refunded(refund_uuid, reference)
    log.info("refund %s sent back by %s: %s", refund_uuid, tx.provider.code, reference)
    return True


def pending_provider_refunds(now: datetime | None = None) -> list[uuid.UUID]:
    """Refunds still pending a while after they were made whose payment a provider that
    refunds itself took (their job was lost: Redis was down)."""
    before = (now or utcnow()) - REFUND_SWEEP_AFTER
    found = (
        select(Refund.uuid, PaymentProvider.code)
        .join(PaymentTransaction, PaymentTransaction.account_payment_id == Refund.payment_id)
        .join(PaymentProvider, PaymentProvider.id == PaymentTransaction.provider_id)
        .where(
            Refund.state == "pending",
            Refund.created_at < before,
            PaymentTransaction.state == "success",
        )
        .order_by(Refund.id)
        .limit(100)
    )
    with transaction():
        rows = Session().execute(found).all()
    return [refund for refund, code in rows if adapter_for(code).refunds_itself]


# -- expiry ---------------------------------------------------------------------------------------


def expire_transactions(now: datetime | None = None, batch: int = 100) -> int:
    """Cancel pending transactions past their expiry; returns how many.

    Each under its row lock, rechecked there; on PostgreSQL rows another run holds are skipped
    (SKIP LOCKED), so two runs at once never cancel one twice nor wait on each other.
    """
    now = now or utcnow()
    done = 0
    while True:
        with marketplace.refused_by_database(), transaction():
            statement = (
                select(PaymentTransaction.id)
                .where(PaymentTransaction.state == "pending", PaymentTransaction.expires_at < now)
                .order_by(PaymentTransaction.id)
                .limit(batch)
            )
            if get_database().primary.dialect.name == "postgresql":
                statement = statement.with_for_update(skip_locked=True)
            ids = list(Session().scalars(statement))
            for tx_id in ids:
                tx = _reloaded(tx_id)
                if tx.state == "pending" and tx.expires_at < now:
                    payment = tx.account_payment
                    if payment is not None and payment.state == "paid":
                        # Confirmed by staff through the marketplace: the money came.
                        transition(tx, "success", "confirmed by staff", provider=True)
                    else:
                        transition(tx, "canceled", "expired", provider=True)
                    done += 1
        if len(ids) < batch:
            return done


# -- reading --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransactionFilter:
    state: str | None = None
    provider: str | None = None
    customer: uuid.UUID | None = None
    since: datetime | None = None
    before: datetime | None = None
    amount_min: Decimal | None = None
    amount_max: Decimal | None = None


def visible_transactions(actor: Principal) -> Select[tuple[PaymentTransaction]]:
    """Transactions ``actor`` may see: staff all, customers their own, sellers those of the
    invoices with their lines. Every reader of transactions narrows by it (the REST listing,
    one transaction, GraphQL's payments' transactions)."""
    statement = select(PaymentTransaction)
    if actor.has_role(*STAFF_ROLES):
        return statement
    if actor.has_role("seller"):
        return statement.where(
            exists().where(
                AccountMoveLine.move_id == PaymentTransaction.invoice_id,
                AccountMoveLine.seller_id == actor.user_id,
            )
        )
    return statement.where(PaymentTransaction.customer_id == actor.user_id)


def list_transactions(
    actor: Principal, filters: TransactionFilter, *, limit: int, cursor: str | None
) -> Page:
    """Newest first, filtered, keyset-paged."""
    statement = visible_transactions(actor)
    if filters.state:
        statement = statement.where(PaymentTransaction.state == filters.state)
    if filters.provider:
        statement = statement.where(
            PaymentTransaction.provider_id
            == select(PaymentProvider.id)
            .where(PaymentProvider.code == filters.provider)
            .scalar_subquery()
        )
    if filters.customer:
        statement = statement.where(
            PaymentTransaction.customer_id
            == select(User.id).where(User.uuid == filters.customer).scalar_subquery()
        )
    if filters.since:
        statement = statement.where(PaymentTransaction.created_at >= filters.since)
    if filters.before:
        statement = statement.where(PaymentTransaction.created_at < filters.before)
    if filters.amount_min is not None:
        statement = statement.where(PaymentTransaction.amount >= filters.amount_min)
    if filters.amount_max is not None:
        statement = statement.where(PaymentTransaction.amount <= filters.amount_max)
    return keyset_page(
        statement,
        [PaymentTransaction.created_at, PaymentTransaction.id],
        limit=limit,
        cursor=cursor,
        descending=True,
    )


def get_transaction(actor: Principal, tx_uuid: uuid.UUID) -> PaymentTransaction:
    found = visible_transactions(actor).where(PaymentTransaction.uuid == tx_uuid)
    tx = Session().scalars(found).first()
    if tx is None:
        raise NotFound("there is no such payment")
    return tx


def demo_checkout_transaction(tx_uuid: uuid.UUID) -> PaymentTransaction:
    """The transaction a hosted checkout page is for (its uuid is the page's secret)."""
    try:
        return get_transaction_by_uuid(tx_uuid)
    except NotFound:
        raise NotFound("there is no such checkout") from None
