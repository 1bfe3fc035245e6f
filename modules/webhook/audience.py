"""Which event types exist and which sellers an event concerns: the one mapping.

Admins' endpoints receive every event. A seller's endpoints receive the events about their own
sales (orders, invoices, payments and refunds of orders with a line of theirs), their
settlements (payouts) and their own webhook endpoints. The other events (users, sellers'
profiles and KYC, wallets, imports) are for admins only.

``EVENT_AUDIENCE`` says, per type, which payload field leads to the sellers concerned:

| kind | payload field | sellers concerned |
| --- | --- | --- |
| ``order`` | ``order`` (sale order uuid) | the sellers of the order's products and invoice lines |
| ``invoice`` | ``invoice`` (invoice or credit note uuid) | those of the invoice's order |
| ``payment`` | ``payment`` (marketplace payment uuid) | those of the paid invoice's order |
| ``seller`` | ``seller`` (user uuid) | that seller |
| ``owner`` | ``owner`` (user uuid) | that user (the endpoint's owner) |
| ``None`` | | nobody: admins only |
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, union
from sqlalchemy.orm import Session

from modules.marketplace.models import (
    AccountMove,
    AccountMoveLine,
    Payment,
    Product,
    SaleOrder,
    SaleOrderLine,
)
from modules.user.models import User

PING = "ping"

EVENT_AUDIENCE: Mapping[str, str | None] = {
    "order.confirmed": "order",
    "order.cancelled": "order",
    "invoice.posted": "invoice",
    "invoice.paid": "invoice",
    "invoice.reversed": "invoice",
    "payment.registered": "invoice",
    "payment.confirmed": "invoice",
    "payment.cancelled": "invoice",
    # The payment module's provider transactions; a top-up's has no invoice: admins only.
    "payment.succeeded": "invoice",
    "payment.failed": "invoice",
    "payment.canceled": "invoice",
    "payment.late_success": "invoice",
    "refund.created": "payment",
    "refund.succeeded": "payment",
    "settlement.created": "seller",
    "settlement.completed": "seller",
    "settlement.failed": "seller",
    # A payout provider's outcome contradicting the recorded one: the admins' to resolve.
    "settlement.outcome_conflict": None,
    "webhook_endpoint.disabled": "owner",
    "user.created": None,
    "user.updated": None,
    "user.activated": None,
    "user.deactivated": None,
    "user.password_set": None,
    "user.imported": None,
    "seller.signed_up": None,
    "seller.updated": None,
    "seller.kyc_submitted": None,
    "seller.verified": None,
    "seller.kyc_rejected": None,
    "wallet.opened": None,
    "wallet.topped_up": None,
    "wallet.frozen": None,
    "wallet.unfrozen": None,
}

#: The field of the payload each kind reads.
_FIELD = {"order": "order", "invoice": "invoice", "payment": "payment", "seller": "seller",
          "owner": "owner"}  # fmt: skip


def event_types_for(role: str) -> list[str]:
    """The event types an endpoint of ``role``'s owner may ask for."""
    if role == "admin":
        return sorted(EVENT_AUDIENCE)
    return sorted(name for name, kind in EVENT_AUDIENCE.items() if kind is not None)


def sellers_concerned(session: Session, event_type: str, payload: Mapping[str, Any]) -> set[int]:
    """The user ids (sellers, or the owner for ``owner`` events) ``event_type`` with
    ``payload`` concerns; empty for admin-only and unknown types."""
    kind = EVENT_AUDIENCE.get(event_type)
    if kind is None:
        return set()
    key = _uuid(payload.get(_FIELD[kind]))
    if key is None:
        return set()
    if kind in ("seller", "owner"):
        user_id = session.scalar(select(User.id).where(User.uuid == key))
        return {user_id} if user_id is not None else set()
    if kind == "order":
        order_id = select(SaleOrder.id).where(SaleOrder.uuid == key)
    elif kind == "invoice":
        order_id = select(AccountMove.order_id).where(AccountMove.uuid == key)
    else:
        order_id = (
            select(AccountMove.order_id)
            .join(Payment, Payment.invoice_id == AccountMove.id)
            .where(Payment.uuid == key)
        )
    return _order_sellers(session, order_id.scalar_subquery())


def _order_sellers(session: Session, order_id: Any) -> set[int]:
    """The sellers of an order: its products' and its invoices' lines' (a product may have
    changed hands since; the invoice line keeps the seller at posting)."""
    by_product = (
        select(Product.seller_id)
        .join(SaleOrderLine, SaleOrderLine.product_id == Product.id)
        .where(SaleOrderLine.order_id == order_id)
    )
    by_invoice = (
        select(AccountMoveLine.seller_id)
        .join(AccountMove, AccountMove.id == AccountMoveLine.move_id)
        .where(AccountMove.order_id == order_id)
    )
    found = session.scalars(union(by_product, by_invoice)).all()
    return {seller_id for seller_id in found if seller_id is not None}


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value is not None else None
    except ValueError:
        return None
