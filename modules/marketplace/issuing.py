"""What other modules tell the marketplace about standalone invoices, without it importing them.

Three hooks, each registered per app from a module's setup (as :mod:`.commissions` and the
product gate of :mod:`.products` are):

- :data:`IssuerGate` (the ``seller`` module): why a seller may not issue invoices of their own
  sales, or None. Only verified sellers issue; with no gate registered no seller may, since
  the marketplace alone cannot tell a verified seller from another.
- :data:`SellerNames` (the ``seller`` module): the display names printed on invoices; without
  it (or for a seller it does not name), the seller's user name, else their email's local part
  (as the seller module's default display name): never their whole login email.
- :data:`PayUrlSource` (a payment-link module): the URL a payer opens to pay an invoice online,
  printed as "Pay online" on the printable invoice; without one, or when it answers None, the
  invoice prints without it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING

from flask import Flask, current_app
from sqlalchemy import select

from app.db import Session
from modules.user.models import User

if TYPE_CHECKING:
    from app.security import Principal

    from .models import AccountMove

#: Why the seller with this user id may not issue invoices, or None when they may.
IssuerGate = Callable[[int], str | None]
#: Seller user ids -> their display names (those it knows; others fall back to the user's name,
#: else their email's local part).
SellerNames = Callable[[Collection[int]], Mapping[int, str]]
#: The URL to pay ``invoice`` online, as ``viewer`` (who may see the invoice) prints it; None:
#: no link to print. Asked only for a posted invoice with something still to pay; it reads
#: only (the payment-link module shows a link made before, it makes none); an http(s) URL is
#: printed, anything else is left out.
PayUrlSource = Callable[["AccountMove", "Principal"], str | None]

_GATE = "marketplace.issuer_gate"
_NAMES = "marketplace.seller_names"
_PAY_URL = "marketplace.pay_url_source"

#: Why a seller may not issue when no module says who is verified.
NO_GATE = "only verified sellers issue invoices, and no module here verifies sellers"


def register_issuer_gate(app: Flask, gate: IssuerGate) -> None:
    """Ask ``gate`` before a seller issues (or posts) an invoice of their own sales."""
    app.extensions[_GATE] = gate


def register_seller_names(app: Flask, names: SellerNames) -> None:
    """Let ``names`` give the sellers' display names printed on invoices."""
    app.extensions[_NAMES] = names


def register_pay_url_source(app: Flask, source: PayUrlSource) -> None:
    """Let ``source`` give the "Pay online" link printed on an invoice (one source per app)."""
    app.extensions[_PAY_URL] = source


def why_not_issuing(seller_id: int) -> str | None:
    """Why the seller may not issue invoices of their own sales, or None."""
    gate: IssuerGate | None = current_app.extensions.get(_GATE)
    if gate is None:
        return NO_GATE
    return gate(seller_id)


def seller_names(seller_ids: Collection[int]) -> dict[int, str]:
    """The name printed for each seller: their display name, else their user name, else the
    local part of their email (the seller module's default display name)."""
    wanted = sorted(set(seller_ids))
    if not wanted:
        return {}
    source: SellerNames | None = current_app.extensions.get(_NAMES)
    named = dict(source(wanted)) if source is not None else {}
    missing = [seller_id for seller_id in wanted if not named.get(seller_id)]
    if missing:
        for user_id, name, email in Session().execute(
            select(User.id, User.name, User.email).where(User.id.in_(missing))
        ):
            named[user_id] = (name or "").strip() or email.split("@", 1)[0]
    return named


def pay_url(invoice: AccountMove, viewer: Principal) -> str | None:
    """The "Pay online" URL for ``invoice`` from the registered source, or None."""
    source: PayUrlSource | None = current_app.extensions.get(_PAY_URL)
    if source is None:
        return None
    return source(invoice, viewer)
