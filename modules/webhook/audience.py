"""Which event types exist and which sellers an event concerns: the one mapping.

Admins' endpoints receive every event. A seller's endpoints receive the events about their own
sales (orders, invoices, payments, payment links and refunds of orders with a line of theirs),
their settlements (payouts) and their own webhook endpoints. The other events (users, sellers'
profiles and KYC, wallets, imports) are for admins only.

``EVENT_AUDIENCE`` says, per type, which payload field leads to the sellers concerned:

| kind | payload field | sellers concerned |
| --- | --- | --- |
| ``order`` | ``order`` (sale order uuid) | the sellers of the order's products and invoice lines |
| ``invoice`` | ``invoice`` (invoice or credit note uuid) | those of the invoice's order; for a |
| | | standalone invoice (no order), its issuing seller and its lines' sellers |
| | | (payment links' events name the invoice the link pays) |
| ``payment`` | ``payment`` (marketplace payment uuid) | those of the paid invoice (as above) |
| ``seller`` | ``seller`` (user uuid) | that seller |
| ``owner`` | ``owner`` (user uuid) | that user (the endpoint's owner) |
| ``None`` | | nobody: admins only |

The lookups take many keys at once (:func:`sellers_by_key`, :func:`orders_by_key`), so the live
event stream resolves a whole batch of events in a few queries.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from functools import cache
from typing import Any

from sqlalchemy import Subquery, bindparam, select, union
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
    "invoice.created": "invoice",
    "invoice.posted": "invoice",
    "invoice.cancelled": "invoice",
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
    # Payment links (the paylink module): the sellers of the invoice the link pays.
    "payment_link.created": "invoice",
    "payment_link.paid": "invoice",
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
    found = audience_key(event_type, payload)
    if found is None:
        return set()
    kind, key = found
    return sellers_by_key(session, kind, [key]).get(key, set())


def audience_key(event_type: str, payload: Mapping[str, Any]) -> tuple[str, uuid.UUID] | None:
    """The kind of ``event_type`` (see ``EVENT_AUDIENCE``) and the key its payload names; None
    for admin-only and unknown types, or a payload without the key."""
    kind = EVENT_AUDIENCE.get(event_type)
    if kind is None:
        return None
    key = as_uuid(payload.get(_FIELD[kind]))
    return (kind, key) if key is not None else None


#: The kinds whose key leads to a sale order.
ORDER_KINDS = frozenset({"order", "invoice", "payment"})


#: The bound parameter every lookup below takes its keys from (a list, expanded by SQLAlchemy):
#: the statements are built once per kind and their compiled form cached, whatever the keys.
KEYS = "keys"


def _keys() -> Any:
    return bindparam(KEYS, expanding=True)


@cache
def orders_by_key(kind: str) -> Subquery:
    """``(key, order_id)``: the sale order each key of ``kind`` (one of :data:`ORDER_KINDS`)
    leads to, for the keys bound to :data:`KEYS`."""
    if kind == "order":
        found = select(SaleOrder.uuid.label("key"), SaleOrder.id.label("order_id"))
        column = SaleOrder.uuid
    elif kind == "invoice":
        found = select(AccountMove.uuid.label("key"), AccountMove.order_id.label("order_id"))
        column = AccountMove.uuid
    else:
        found = select(Payment.uuid.label("key"), AccountMove.order_id.label("order_id")).join(
            AccountMove, Payment.invoice_id == AccountMove.id
        )
        column = Payment.uuid
    return found.where(column.in_(_keys())).subquery()


def sellers_by_key(
    session: Session, kind: str, keys: Collection[uuid.UUID]
) -> dict[uuid.UUID, set[int]]:
    """The user ids each key of ``kind`` concerns (see the table above), in one query (two for
    the kinds that may lead to a standalone invoice): keys that concern nobody are left out."""
    if not keys:
        return {}
    bound = {KEYS: sorted(keys)}
    found: dict[uuid.UUID, set[int]] = {}
    for statement in _seller_statements(kind):
        for key, user_id in session.execute(statement, bound):
            if user_id is not None:
                found.setdefault(key, set()).add(user_id)
    return found


@cache
def _seller_statements(kind: str) -> tuple[Any, ...]:
    """The ``(key, user_id)`` queries :func:`sellers_by_key` runs for ``kind``."""
    if kind in ("seller", "owner"):
        return (select(User.uuid, User.id).where(User.uuid.in_(_keys())),)
    if kind in STANDALONE_KINDS:
        return _order_sellers(orders_by_key(kind)), _standalone_sellers(standalone_by_key(kind))
    return (_order_sellers(orders_by_key(kind)),)


#: The kinds whose key may lead to a standalone invoice (made without an order).
STANDALONE_KINDS = frozenset({"invoice", "payment"})


@cache
def standalone_by_key(kind: str) -> Subquery:
    """``(key, invoice_id)``: the standalone invoice (or credit note) each key of ``kind`` (one
    of :data:`STANDALONE_KINDS`) bound to :data:`KEYS` leads to; keys of an order's are left
    out."""
    if kind == "invoice":
        found = select(AccountMove.uuid.label("key"), AccountMove.id.label("invoice_id"))
        column = AccountMove.uuid
    else:
        found = select(Payment.uuid.label("key"), AccountMove.id.label("invoice_id")).join(
            AccountMove, Payment.invoice_id == AccountMove.id
        )
        column = Payment.uuid
    return found.where(column.in_(_keys()), AccountMove.order_id.is_(None)).subquery()


def _standalone_sellers(invoices: Subquery) -> Any:
    """``(key, seller_id)`` for the standalone invoices of ``invoices``: the seller who issued
    each, and its lines' sellers (the same seller, on an invoice a seller issued)."""
    by_issuer = select(invoices.c.key, AccountMove.issuer_id).join(
        AccountMove, AccountMove.id == invoices.c.invoice_id
    )
    by_line = select(invoices.c.key, AccountMoveLine.seller_id).join(
        AccountMoveLine, AccountMoveLine.move_id == invoices.c.invoice_id
    )
    return union(by_issuer, by_line)


def _order_sellers(orders: Subquery) -> Any:
    """``(key, seller_id)`` for the orders of ``orders``: their products' and their invoices'
    lines' sellers (a product may have changed hands since; the invoice line keeps the seller
    at posting)."""
    by_product = (
        select(orders.c.key, Product.seller_id)
        .join(SaleOrderLine, SaleOrderLine.order_id == orders.c.order_id)
        .join(Product, Product.id == SaleOrderLine.product_id)
    )
    by_invoice = (
        select(orders.c.key, AccountMoveLine.seller_id)
        .join(AccountMove, AccountMove.order_id == orders.c.order_id)
        .join(AccountMoveLine, AccountMoveLine.move_id == AccountMove.id)
    )
    return union(by_product, by_invoice)


def as_uuid(value: Any) -> uuid.UUID | None:
    """A payload's value as a uuid; None if absent or not one."""
    try:
        return uuid.UUID(str(value)) if value is not None else None
    except ValueError:
        return None
