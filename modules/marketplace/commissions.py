"""Sellers' own commission percents, fixed on each invoice when it is posted.

An invoice fixes ``LAPAK_COMMISSION_PERCENT`` in ``commission_percent`` when posted. A module
that knows sellers (``seller``) may give some sellers a percent of their own: it registers a
:data:`CommissionSource` per app, which the order's transaction asks for the invoice's sellers;
those whose percent differs from the invoice's get a row (:class:`.models.InvoiceCommission`),
so every payment and refund of the invoice splits the same way, whatever the seller's percent
becomes later. A credit note copies only the invoice's ``commission_percent``, not these rows:
its percent is not the sellers' split; refunds split by the original invoice's rows.

Only invoices with sellers' lines pay for this (one question to the source, one INSERT when a
seller has a percent of their own; one SELECT when such an invoice is split): an invoice of the
platform's own lines runs no statement more.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from decimal import Decimal

from flask import Flask, current_app
from sqlalchemy import bindparam, insert, select

from app.db import DriverStatement, Session, any_of

from .models import AccountMove, InvoiceCommission

#: Seller user ids -> the percent of each seller who has one of their own (others: absent).
CommissionSource = Callable[[Collection[int]], Mapping[int, Decimal]]
_SOURCE = "marketplace.commission_source"


def register_commission_source(app: Flask, source: CommissionSource) -> None:
    """Let ``source`` give sellers their own commission (from a module's setup: per app)."""
    app.extensions[_SOURCE] = source


def fix_for(invoice: AccountMove) -> None:
    """In the posting transaction, once the invoice is written: the own percents of its
    sellers that differ from the invoice's."""
    sellers = sorted({line.seller_id for line in invoice.lines if line.seller_id is not None})
    source = current_app.extensions.get(_SOURCE)
    if not sellers or source is None:
        return
    own = {
        seller_id: percent
        for seller_id, percent in source(sellers).items()
        if seller_id in sellers and percent != invoice.commission_percent
    }
    if own:
        Session().connection().execute(
            insert(InvoiceCommission),
            [
                {"move_id": invoice.id, "seller_id": seller_id, "percent": percent}
                for seller_id, percent in sorted(own.items())
            ],
        )


def fixed_on(invoice: AccountMove) -> dict[int, Decimal]:
    """The sellers' own percents fixed on ``invoice`` (seller id -> percent)."""
    if invoice.id is None:
        return {}
    rows = _FIXED.rows(Session().connection(), {"move_id": invoice.id})
    return {seller_id: Decimal(percent) for seller_id, percent in rows}


def fixed_on_each(invoice_ids: Collection[int]) -> dict[int, dict[int, Decimal]]:
    """:func:`fixed_on` for each of these invoices (absent: none fixed), in one query."""
    fixed: dict[int, dict[int, Decimal]] = {}
    if not invoice_ids:
        return fixed
    for move_id, seller_id, percent in Session().execute(
        select(
            InvoiceCommission.move_id, InvoiceCommission.seller_id, InvoiceCommission.percent
        ).where(any_of(InvoiceCommission.move_id, invoice_ids))
    ):
        fixed.setdefault(move_id, {})[seller_id] = Decimal(percent)
    return fixed


_FIXED = DriverStatement(
    select(InvoiceCommission.seller_id, InvoiceCommission.percent).where(
        InvoiceCommission.move_id == bindparam("move_id")
    )
)
