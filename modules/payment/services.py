"""Paying invoices through providers: starting transactions, provider notifications, staff
actions, expiry, providers' configuration, saved methods and reading them.

Row locks: a provider transaction first, then (through the marketplace) the order, the invoice
and the payment: nothing locks them the other way round, so no deadlock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets as token_source
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from flask import current_app, has_request_context, url_for
from sqlalchemy import exists, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from app.db import Session, get_database, transaction, utcnow
from app.errors import Conflict, Invalid, NotFound, PermissionDenied, Unauthenticated
from app.http import Page, keyset_page
from app.security import Principal
from modules.marketplace import idempotency, numbering
from modules.marketplace import services as marketplace
from modules.marketplace.config import marketplace_settings
from modules.marketplace.idempotency import IdempotentRequest, Replay
from modules.marketplace.models import CURRENCY_PLACES, AccountMove, AccountMoveLine, Payment
from modules.user.models import User

from .adapters import Adapter, Notification, Start, TokenDetails, adapter_for, adapters
from .models import PROVIDER_STATES, PaymentProvider, PaymentToken, PaymentTransaction
from .transitions import transition

log = logging.getLogger(__name__)

STAFF_ROLES = ("staff", "admin")
HUNDRED = Decimal(100)
#: How far a notification's timestamp may be from our clock (seconds), either way.
SIGNATURE_WINDOW_SECONDS = 300
SIGNATURE_VERSION = "v1"

Render = Callable[[Any], dict[str, Any]]


class ProviderUnavailable(Invalid):
    code = "provider-unavailable"
    title = "The payment provider cannot take this payment"


class AmountMismatch(Conflict):
    code = "amount-mismatch"
    title = "The notification's amount or currency is not the transaction's"


class BadSignature(Unauthenticated):
    code = "bad-signature"
    title = "The notification's signature is not valid"


# -- providers ------------------------------------------------------------------------------------


def production() -> bool:
    return bool(current_app.extensions["lapak.settings"].production)


def ensure_providers() -> None:
    """A row for every registered adapter's provider, with its defaults (once; concurrent
    callers insert it once). Called in the caller's transaction."""
    session = Session()
    known = set(session.scalars(select(PaymentProvider.code)))
    missing = [adapter for code, adapter in sorted(adapters().items()) if code not in known]
    if not missing:
        return
    insert = (
        postgresql_insert
        if get_database().primary.dialect.name == "postgresql"
        else (sqlite_insert)
    )
    for adapter in missing:
        defaults = adapter.defaults(production())
        secret_values = {name: token_source.token_urlsafe(32) for name in adapter.secret_names}
        session.execute(
            insert(PaymentProvider)
            .values(
                code=adapter.code,
                name=adapter.name,
                state=defaults["state"],
                currencies=defaults["currencies"],
                fee_percent=Decimal(defaults.get("fee_percent", 0)),
                fee_fixed=Decimal(defaults.get("fee_fixed", 0)),
                settings=defaults["settings"],
                secrets=json.dumps(secret_values) if secret_values else None,
                created_at=utcnow(),
                updated_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["code"])
        )


def provider_secrets(provider: PaymentProvider) -> dict[str, str]:
    """The provider's secret settings (unsealed by the column type)."""
    return json.loads(provider.secrets) if provider.secrets else {}


def _provider(code: str, *, lock: bool = False) -> PaymentProvider:
    adapter_for(code)  # 404 for a code no module provides
    ensure_providers()
    statement = select(PaymentProvider).where(PaymentProvider.code == code)
    if lock:
        statement = statement.with_for_update()
    provider = Session().scalars(statement.execution_options(populate_existing=True)).first()
    if provider is None:
        raise NotFound(f"there is no payment provider {code!r}")
    return provider


def _usable(code: str, currency: str) -> tuple[PaymentProvider, Adapter]:
    provider, adapter = _provider(code), adapter_for(code)
    if provider.state == "disabled":
        raise ProviderUnavailable(
            f"the provider {code!r} is disabled", errors={"provider": "disabled"}
        )
    if currency not in (provider.currencies or []):
        raise ProviderUnavailable(
            f"the provider {code!r} does not take {currency}",
            errors={"provider": f"takes {', '.join(provider.currencies or []) or 'nothing'}"},
        )
    return provider, adapter


def fee_for(provider: PaymentProvider, amount: Decimal, currency: str) -> Decimal:
    """``round_half_up(amount x percent / 100) + fixed``, in the currency's minor unit."""
    places = Decimal(1).scaleb(-CURRENCY_PLACES.get(currency, 2))
    percent_part = (amount * provider.fee_percent / HUNDRED).quantize(places, ROUND_HALF_UP)
    return percent_part + provider.fee_fixed


def list_providers() -> list[PaymentProvider]:
    with transaction():
        ensure_providers()
    return list(Session().scalars(select(PaymentProvider).order_by(PaymentProvider.code)))


@dataclass(frozen=True)
class ProviderChange:
    state: str | None = None
    currencies: list[str] | None = None
    fee_percent: Decimal | None = None
    fee_fixed: Decimal | None = None
    settings: dict[str, Any] | None = None
    #: New secret values (write-only); a None value removes one.
    secrets: dict[str, str | None] | None = None


def update_provider(code: str, change: ProviderChange) -> PaymentProvider:
    """Staff change a provider: state, currencies, fees, settings and secrets."""
    adapter = adapter_for(code)
    with marketplace.refused_by_database(), transaction():
        provider = _provider(code, lock=True)
        if change.state is not None:
            if change.state not in PROVIDER_STATES:
                raise Invalid("unknown state", errors={"state": f"one of {PROVIDER_STATES}"})
            adapter.check_state(change.state, production())
            provider.state = change.state
        if change.currencies is not None:
            unknown = sorted(set(change.currencies) - set(CURRENCY_PLACES))
            if unknown:
                raise Invalid(
                    f"unknown currencies {', '.join(unknown)}",
                    errors={"currencies": f"each one of {', '.join(sorted(CURRENCY_PLACES))}"},
                )
            provider.currencies = sorted(set(change.currencies))
        if change.fee_percent is not None:
            if not Decimal(0) <= change.fee_percent < HUNDRED:
                raise Invalid("a fee percent is 0 to 99.99", errors={"fee_percent": "0 to 99.99"})
            provider.fee_percent = change.fee_percent
        if change.fee_fixed is not None:
            if change.fee_fixed < 0:
                raise Invalid("a fixed fee is not negative", errors={"fee_fixed": ">= 0"})
            provider.fee_fixed = change.fee_fixed
        if change.settings is not None:
            unknown = sorted(set(change.settings) - set(adapter.setting_names))
            if unknown:
                raise Invalid(
                    "unknown settings", errors={f"settings.{name}": "unknown" for name in unknown}
                )
            provider.settings = {**(provider.settings or {}), **change.settings}
        if change.secrets is not None:
            unknown = sorted(set(change.secrets) - set(adapter.secret_names))
            if unknown:
                raise Invalid(
                    "unknown secret settings",
                    errors={f"secrets.{name}": "unknown" for name in unknown},
                )
            values = provider_secrets(provider)
            for name, value in change.secrets.items():
                if value is None:
                    values.pop(name, None)
                else:
                    values[name] = value
            provider.secrets = json.dumps(values) if values else None
        provider.updated_at = utcnow()
    return provider


def secret_names_set(provider: PaymentProvider) -> list[str]:
    """Which secret settings have a value (their names only: values are write-only)."""
    return sorted(provider_secrets(provider))


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
        if idempotent is not None:
            claimed = idempotency.claim(idempotent, marketplace_settings().idempotency_keep_hours)
            if isinstance(claimed, Replay):
                return claimed.status_code, claimed.body
        invoice = marketplace.get_invoice(actor, request.invoice)
        if not actor.has_role(*STAFF_ROLES) and invoice.customer_id != actor.user_id:
            raise PermissionDenied("customers pay their own invoices")
        provider, adapter = _usable(request.provider, invoice.currency)
        start = Start(notify_url=notify_url)
        token = None
        if request.token is not None:
            token = _usable_token(invoice.customer_id, request.token, provider)
            start = Start(notify_url=notify_url, provider_token=token.provider_token)
        payment = marketplace.register_provider_payment(
            actor, request.invoice, adapter.method.code, request.amount
        )
        tx = _start(
            actor, provider, adapter, payment, start, token=token, tokenize=request.save_method
        )
        body = render(tx)
        if idempotent is not None:
            idempotency.complete(claimed, 201, body)
    return 201, body


def _start(
    actor: Principal | None,
    provider: PaymentProvider,
    adapter: Adapter,
    payment: Payment,
    start: Start,
    *,
    token: PaymentToken | None = None,
    tokenize: bool = False,
) -> PaymentTransaction:
    """The provider transaction for a just-registered payment, in the caller's transaction."""
    if tokenize and not adapter.supports_tokens:
        raise ProviderUnavailable(
            f"the provider {provider.code!r} does not save methods",
            errors={"save_method": "not supported by this provider"},
        )
    fee = fee_for(provider, payment.amount, payment.currency)
    if fee > payment.amount:
        raise ProviderUnavailable(
            f"the provider's fee ({fee}) is more than the payment ({payment.amount})",
            errors={"amount": f"more than {fee}"},
        )
    now = utcnow()
    tx = PaymentTransaction(
        uuid=uuid.uuid4(),
        provider_id=provider.id,
        invoice_id=payment.invoice_id,
        customer_id=payment.customer_id,
        account_payment_id=payment.id,
        token_id=token.id if token is not None else None,
        amount=payment.amount,
        currency=payment.currency,
        fee=fee,
        net=payment.amount - fee,
        state="pending",
        tokenize=tokenize,
        action={},
        expires_at=now + adapter.expiry,
        last_state_change=now,
        created_at=now,
        created_by_id=actor.user_id if actor is not None else None,
    )
    session = Session()
    session.add(tx)
    session.flush()
    year = now.astimezone(marketplace_settings().timezone).year
    tx.reference = f"TX/{year}/{tx.id:05d}"
    session.flush()
    tx.action = adapter.initiate(provider, tx, start)
    session.flush()
    return tx


def _notify_url(code: str) -> str | None:
    if not has_request_context():
        return None
    return url_for("payments.ProviderNotify", code=code, _external=True)


class OrderCheckout:
    """``POST /marketplace/orders`` with ``payment.provider`` (see marketplace.payments)."""

    def method_for(self, provider: str, currency: str) -> str:
        try:
            _, adapter = _usable(provider, currency)
        except NotFound:
            raise ProviderUnavailable(
                f"there is no payment provider {provider!r}",
                errors={"payment.provider": f"one of {', '.join(sorted(adapters()))}"},
            ) from None
        return adapter.method.code

    def start(self, actor: Principal, payment: Payment, options: dict[str, Any]) -> dict[str, Any]:
        from .schemas import ProviderTransactionSchema

        code = options["provider"]
        provider, adapter = _usable(code, payment.currency)
        tx = _start(actor, provider, adapter, payment, Start(notify_url=_notify_url(code)))
        return ProviderTransactionSchema().dump(tx)


# -- provider notifications ----------------------------------------------------------------------


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256 of "{timestamp}.{body}">`` with the provider's secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={digest.hexdigest()}"


def verify_signature(code: str, body: bytes, timestamp: str | None, signed: str | None) -> None:
    """Refuse (401) a notification not signed with the provider's secret within the window."""
    with transaction():
        provider = _provider(code)
    secret = provider_secrets(provider).get("webhook_secret")
    if secret is None or not timestamp or not signed:
        raise BadSignature("the notification is not signed")
    try:
        moment = int(timestamp)
    except ValueError:
        raise BadSignature("the notification's timestamp is not valid") from None
    if abs(time.time() - moment) > SIGNATURE_WINDOW_SECONDS:
        raise BadSignature("the notification's timestamp is outside the accepted window")
    expected = signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, given.strip()) for given in signed.split(",")):
        raise BadSignature("the notification's signature does not match")


def process_notification(provider_code: str, data: dict[str, Any]) -> PaymentTransaction:
    """THE entry point for what a provider reports: find the transaction (row-locked), check
    the amount and currency, apply the state (a repeat is a no-op), save the method.

    Idempotent on the provider reference: the same notification any number of times confirms
    the payment once and emits one event.
    """
    adapter = adapter_for(provider_code)
    with marketplace.refused_by_database(), transaction():
        provider = _provider(provider_code)
        notification = adapter.handle_notification(provider, data)
        tx = _locked_transaction(provider, notification.reference)
        _check_amount(tx, notification)
        if notification.provider_reference is not None:
            _set_provider_reference(tx, notification.provider_reference)
        changed = transition(tx, notification.state, notification.message, provider=True)
        # A token in the notification: the payer asked the provider to save the method (on
        # its page, or through save_method); kept only with the success that proves it works.
        if changed and notification.state == "success" and notification.token is not None:
            tx.tokenize = True
            save_token(tx, notification.token)
    return tx


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
    """The payer (or staff) gives up a transaction that has not succeeded (409 otherwise)."""
    with marketplace.refused_by_database(), transaction():
        tx = _locked_by_uuid(tx_uuid)
        if not actor.has_role(*STAFF_ROLES) and tx.customer_id != actor.user_id:
            raise NotFound("there is no such payment")
        transition(tx, "canceled", "canceled by the payer", provider=False)
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


# -- saved methods --------------------------------------------------------------------------------


def save_token(tx: PaymentTransaction, details: TokenDetails) -> PaymentToken:
    """Keep the method the provider saved for the payer: one per customer and card (the
    vault's fingerprint finds the same card again); only brand, last4 and expiry in clear."""
    from app.vault import fingerprint

    card = fingerprint(details.card_fingerprint, "payment.card")
    session = Session()
    existing = session.scalars(
        select(PaymentToken).where(
            PaymentToken.provider_id == tx.provider_id,
            PaymentToken.customer_id == tx.customer_id,
            PaymentToken.fingerprint == card,
            PaymentToken.active.is_(True),
        )
    ).first()
    if existing is not None:
        existing.provider_token = details.provider_token
        existing.exp_month, existing.exp_year = details.exp_month, details.exp_year
        token = existing
    else:
        token = PaymentToken(
            uuid=uuid.uuid4(),
            provider_id=tx.provider_id,
            customer_id=tx.customer_id,
            provider_token=details.provider_token,
            brand=details.brand,
            last4=details.last4,
            exp_month=details.exp_month,
            exp_year=details.exp_year,
            fingerprint=card,
            active=True,
            created_at=utcnow(),
        )
        try:
            with session.begin_nested():
                session.add(token)
        except IntegrityError:  # saved by a concurrent notification of another transaction
            token = session.scalars(
                select(PaymentToken).where(
                    PaymentToken.provider_id == tx.provider_id,
                    PaymentToken.customer_id == tx.customer_id,
                    PaymentToken.fingerprint == card,
                    PaymentToken.active.is_(True),
                )
            ).one()
    tx.token_id = token.id
    session.flush()
    return token


def _usable_token(
    customer_id: int, token_uuid: uuid.UUID, provider: PaymentProvider
) -> PaymentToken:
    token = (
        Session()
        .scalars(
            select(PaymentToken).where(
                PaymentToken.uuid == token_uuid,
                PaymentToken.customer_id == customer_id,
                PaymentToken.active.is_(True),
            )
        )
        .first()
    )
    if token is None:
        raise Invalid("no such saved method for this customer", errors={"token": "unknown"})
    if token.provider_id != provider.id:
        raise Invalid(
            "that saved method belongs to another provider", errors={"token": "other provider"}
        )
    today = utcnow().date()
    if (token.exp_year, token.exp_month) < (today.year, today.month):
        raise Invalid("that saved method has expired", errors={"token": "expired"})
    return token


def list_tokens(actor: Principal, customer: uuid.UUID | None = None) -> list[PaymentToken]:
    """The caller's saved methods (staff: a customer's), newest first, masked by the schema."""
    customer_id = actor.user_id
    if customer is not None and customer != actor.user_uuid:
        if not actor.has_role(*STAFF_ROLES):
            raise PermissionDenied("customers see their own saved methods")
        customer_id = Session().scalar(select(User.id).where(User.uuid == customer))
        if customer_id is None:
            return []
    return list(
        Session().scalars(
            select(PaymentToken)
            .where(PaymentToken.customer_id == customer_id, PaymentToken.active.is_(True))
            .order_by(PaymentToken.id.desc())
        )
    )


def delete_token(actor: Principal, token_uuid: uuid.UUID) -> None:
    """Forget a saved method (soft delete: past transactions keep pointing at it)."""
    with transaction():
        token = (
            Session()
            .scalars(
                select(PaymentToken)
                .where(PaymentToken.uuid == token_uuid)
                .with_for_update(of=PaymentToken)
            )
            .first()
        )
        if token is None or (
            token.customer_id != actor.user_id and not actor.has_role(*STAFF_ROLES)
        ):
            raise NotFound("there is no such saved method")
        if token.active:
            token.active = False
            token.deleted_at = utcnow()


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


def _visible(actor: Principal):  # type: ignore[no-untyped-def]
    """Transactions ``actor`` may see: staff all, customers their own, sellers those of the
    invoices with their lines."""
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
    statement = _visible(actor)
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
    tx = Session().scalars(_visible(actor).where(PaymentTransaction.uuid == tx_uuid)).first()
    if tx is None:
        raise NotFound("there is no such payment")
    return tx


def invoice_of(tx: PaymentTransaction) -> AccountMove:
    return tx.invoice


def demo_checkout_transaction(tx_uuid: uuid.UUID) -> PaymentTransaction:
    """The transaction a hosted checkout page is for (its uuid is the page's secret)."""
    tx = (
        Session()
        .scalars(select(PaymentTransaction).where(PaymentTransaction.uuid == tx_uuid))
        .first()
    )
    if tx is None:
        raise NotFound("there is no such checkout")
    return tx


def expires_in(tx: PaymentTransaction) -> timedelta:
    return tx.expires_at - utcnow()
