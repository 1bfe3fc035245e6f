"""Who may see an event on the stream, found for a whole batch of events at once.

The stream shows a person what the REST API lets them read, by their role:

* Admins see every event.
* Staff see every event but the admins' own: users and imports (``/api/v1/users``,
  ``/imports`` are ``@requires("admin")``), webhook endpoints (their owner's and the admins':
  ``modules/webhook/api.py``), and any type the webhook module's mapping does not know
  (:data:`ADMIN_ONLY`).
* A seller sees what the webhook module sends a seller's endpoints (the one mapping,
  :mod:`modules.webhook.audience`): their sales (orders, invoices, payments and refunds of
  orders with a product or invoice line of theirs), their settlements, their endpoints.
* A customer sees the events of their own orders, invoices, payments and refunds (the order's
  customer), and of their own provider transactions (the payload's ``customer``, e.g. a wallet
  top-up's).

The role is the viewer's own, not where their id happens to appear: a seller demoted to
customer still owns products, but sees only their own orders, as REST shows them.

A batch costs at most one query per kind of key for the sellers, one per kind of order key for
the customers and one for the customers named by uuid, whatever its size.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.security import Principal
from modules.marketplace.models import AccountMove, SaleOrder
from modules.user.models import User
from modules.webhook.audience import (
    EVENT_AUDIENCE,
    KEYS,
    ORDER_KINDS,
    STANDALONE_KINDS,
    as_uuid,
    audience_key,
    orders_by_key,
    sellers_by_key,
    standalone_by_key,
)

from .outbox import Committed

#: The types only admins see (besides a webhook endpoint's owner for its own): what REST
#: shows admins alone. Types the mapping does not know are the admins' too.
ADMIN_ONLY = frozenset(
    {name for name in EVENT_AUDIENCE if name.startswith("user.")} | {"webhook_endpoint.disabled"}
)


@dataclass(frozen=True)
class Viewer:
    """Who a stream is for, as far as filtering goes."""

    user_id: int
    role: str

    @classmethod
    def of(cls, principal: Principal) -> Viewer:
        return cls(principal.user_id, principal.role)


@dataclass(frozen=True)
class Audience:
    """Who an event is for besides admins: staff or not, and the sellers and customers it
    concerns (user ids)."""

    sellers: frozenset[int] = frozenset()
    customers: frozenset[int] = frozenset()
    staff: bool = True

    def visible_to(self, viewer: Viewer) -> bool:
        """Whether ``viewer`` may see the event, by their role (see the module)."""
        role = viewer.role
        return (
            role == "admin"
            or (role == "staff" and self.staff)
            or (role == "seller" and viewer.user_id in self.sellers)
            or (role == "customer" and viewer.user_id in self.customers)
        )


STAFF_ONLY = Audience()
ADMINS_ONLY = Audience(staff=False)


def staff_see(name: str) -> bool:
    """Whether staff may see events of type ``name``."""
    return name in EVENT_AUDIENCE and name not in ADMIN_ONLY


def audiences(
    session: Session,
    events: Sequence[Committed],
    *,
    sellers: bool = True,
    customers: bool = True,
) -> list[Audience]:
    """The audience of each of ``events``, in their order. ``sellers`` / ``customers``: whether
    to find those (left empty otherwise: for a replay to a viewer who is neither)."""
    keyed = [audience_key(event.name, event.payload) for event in events]
    keys: dict[str, set[uuid.UUID]] = {}
    for found in keyed:
        if found is not None:
            keys.setdefault(found[0], set()).add(found[1])
    seller_ids: dict[str, dict[uuid.UUID, set[int]]] = {}
    customer_ids: dict[str, dict[uuid.UUID, set[int]]] = {}
    named: dict[uuid.UUID, int] = {}
    if sellers:
        seller_ids = {kind: sellers_by_key(session, kind, found) for kind, found in keys.items()}
    if customers:
        customer_ids = {
            kind: _customers_by_key(session, kind, found)
            for kind, found in keys.items()
            if kind in ORDER_KINDS
        }
        named = _user_ids(session, {c for e in events if (c := _named_customer(e)) is not None})
    result = []
    for event, found in zip(events, keyed, strict=True):
        concerned_sellers: set[int] = set()
        concerned_customers: set[int] = set()
        if found is not None:
            kind, key = found
            concerned_sellers = seller_ids.get(kind, {}).get(key, set())
            concerned_customers = set(customer_ids.get(kind, {}).get(key, set()))
        customer = _named_customer(event) if customers else None
        if customer is not None and customer in named:
            concerned_customers.add(named[customer])
        staff = staff_see(event.name)
        if concerned_sellers or concerned_customers:
            result.append(
                Audience(frozenset(concerned_sellers), frozenset(concerned_customers), staff)
            )
        else:
            result.append(STAFF_ONLY if staff else ADMINS_ONLY)
    return result


def _named_customer(event: Committed) -> uuid.UUID | None:
    """The customer a sales event's payload names (``customer``: a provider transaction's)."""
    if EVENT_AUDIENCE.get(event.name) not in ORDER_KINDS:
        return None
    return as_uuid(event.payload.get("customer"))


def _customers_by_key(
    session: Session, kind: str, keys: set[uuid.UUID]
) -> dict[uuid.UUID, set[int]]:
    """The customer of the order each key of ``kind`` leads to, in one query; and for a
    standalone invoice (no order) its customer once it is posted, in one more."""
    bound = {KEYS: sorted(keys)}
    found: dict[uuid.UUID, set[int]] = {}
    for statement in _customer_statements(kind):
        for key, customer_id in session.execute(statement, bound):
            found.setdefault(key, set()).add(customer_id)
    return found


@cache
def _customer_statements(kind: str) -> tuple[Any, ...]:
    """The ``(key, customer_id)`` queries :func:`_customers_by_key` runs for ``kind`` (built
    once: see :data:`modules.webhook.audience.KEYS`)."""
    orders = orders_by_key(kind)
    by_order = select(orders.c.key, SaleOrder.customer_id).join(
        SaleOrder, SaleOrder.id == orders.c.order_id
    )
    if kind not in STANDALONE_KINDS:
        return (by_order,)
    invoices = standalone_by_key(kind)
    by_invoice = (
        select(invoices.c.key, AccountMove.customer_id)
        .join(AccountMove, AccountMove.id == invoices.c.invoice_id)
        .where(AccountMove.state == "posted", AccountMove.customer_id.is_not(None))
    )
    return by_order, by_invoice


_USER_IDS = select(User.uuid, User.id).where(User.uuid.in_(bindparam(KEYS, expanding=True)))


def _user_ids(session: Session, uuids: set[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not uuids:
        return {}
    rows = session.execute(_USER_IDS, {KEYS: sorted(uuids)})
    return {user_uuid: user_id for user_uuid, user_id in rows}
