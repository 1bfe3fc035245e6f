"""Saved methods (``payment_token``): what a provider saved for a payer, kept through the vault.

Only the brand, the last four digits and the expiry are in clear; the provider's token is
sealed; the same card is found again by the vault's keyed fingerprint (never a plain hash), so
saving it twice keeps one. Deleting one only hides it: past transactions keep pointing at it.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.db import Session, transaction, utcnow
from app.errors import Invalid, NotFound, PermissionDenied
from app.security import Principal
from app.vault import fingerprint
from modules.user.models import User

from .adapters import TokenDetails
from .models import PaymentProvider, PaymentToken, PaymentTransaction

STAFF_ROLES = ("staff", "admin")


def save_token(tx: PaymentTransaction, details: TokenDetails) -> PaymentToken:
    """Keep the method the provider saved for the payer: one per customer and card (the
    vault's fingerprint finds the same card again); only brand, last4 and expiry in clear."""
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


def usable_token(
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
