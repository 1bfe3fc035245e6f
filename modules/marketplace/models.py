"""Products, sale orders, invoices and payments, after Odoo's ``sale.order``, ``account.move``
and ``account.payment``.

States, as in Odoo:

- sale order: ``draft`` -> ``sale`` (confirmed) -> ``cancel``;
- invoice or credit note (``move_type`` ``out_invoice`` / ``out_refund``): ``draft`` -> ``posted``
  (-> ``cancel``), and its ``payment_state``: ``not_paid``, ``partial``, ``in_payment`` (paid in
  full by registered payments not yet matched), ``paid`` (every payment matched), ``reversed``
  (cancelled by a credit note);
- payment (Odoo 18): ``in_process`` (registered) -> ``paid`` (confirmed: matched with the bank
  or the till) or ``canceled``.

Money is NUMERIC with two decimals, the ISO 4217 minor unit of both IDR and USD. Numbers
(``SO/2026/00001``) are NULL until taken at the end of the transaction that creates the record
(see :mod:`.numbering`); unique indexes ignore NULLs.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship

from app.db import Base, JsonDocument, utcnow
from modules.user.models import User

#: ISO 4217 minor units of the currencies orders can be placed in.
CURRENCY_PLACES = {"IDR": 2, "USD": 2}
ORDER_STATES = ("draft", "sale", "cancel")
MOVE_TYPES = ("out_invoice", "out_refund")
MOVE_STATES = ("draft", "posted", "cancel")
INVOICE_PAYMENT_STATES = ("not_paid", "partial", "in_payment", "paid", "reversed")
PAYMENT_STATES = ("in_process", "paid", "canceled")
REFUND_STATES = ("pending", "succeeded")
SYNC_STATES = ("queued", "running", "succeeded", "failed")

MONEY = Numeric(18, 2)
QUANTITY = Numeric(14, 3)
RATE = Numeric(24, 12)


def _one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    return CheckConstraint(f"{column} IN ({', '.join(repr(v) for v in values)})", name=column)


class Product(Base):
    """Something customers can order: made from a feed listing, or by an admin or seller."""

    __tablename__ = "marketplace_product"
    __table_args__ = (
        CheckConstraint("list_price > 0", name="list_price_positive"),
        Index("ix_marketplace_product_active_id", "active", "id"),
        Index("ix_marketplace_product_source", "source"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    #: The feed listing's uuid it was made from; None for products made by hand.
    feed_uuid: Mapped[str | None] = mapped_column(String(64), unique=True)
    #: The feed source it came from.
    source: Mapped[str | None] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(200))
    province: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str | None] = mapped_column(String(200))
    size: Mapped[Decimal | None] = mapped_column(QUANTITY)
    #: In IDR.
    list_price: Mapped[Decimal] = mapped_column(MONEY)
    active: Mapped[bool] = mapped_column(default=True)
    seller_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    seller: Mapped[User | None] = relationship(lazy="joined")


class SaleOrder(Base):
    __tablename__ = "marketplace_sale_order"
    __table_args__ = (
        _one_of("state", ORDER_STATES),
        # Newest first, for everyone and per customer; the id breaks ties for the cursor.
        Index("ix_marketplace_sale_order_date_id", "date_order", "id"),
        Index("ix_marketplace_sale_order_customer_date_id", "customer_id", "date_order", "id"),
        Index("ix_marketplace_sale_order_state_date_id", "state", "date_order", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    name: Mapped[str | None] = mapped_column(String(32), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="draft")
    customer_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    #: Who placed it: the customer, or staff on their behalf.
    created_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    currency: Mapped[str] = mapped_column(String(3))
    #: IDR -> ``currency`` rate the prices were converted with (1 for IDR), and its source.
    currency_rate: Mapped[Decimal] = mapped_column(RATE)
    rate_source: Mapped[str | None] = mapped_column(String(50))
    tax_percent: Mapped[Decimal] = mapped_column(Numeric(5, 2))
    date_order: Mapped[datetime] = mapped_column(default=utcnow)
    amount_untaxed: Mapped[Decimal] = mapped_column(MONEY)
    amount_tax: Mapped[Decimal] = mapped_column(MONEY)
    amount_total: Mapped[Decimal] = mapped_column(MONEY)
    cancelled_at: Mapped[datetime | None] = mapped_column()

    lines: Mapped[list[SaleOrderLine]] = relationship(
        back_populates="order", order_by="SaleOrderLine.sequence"
    )
    customer: Mapped[User] = relationship(foreign_keys=[customer_id], lazy="joined")


class LineAmounts:
    """What an order line and an invoice line share: the product's line, priced and taxed."""

    sequence: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[Decimal] = mapped_column(QUANTITY)
    price_unit: Mapped[Decimal] = mapped_column(MONEY)
    price_subtotal: Mapped[Decimal] = mapped_column(MONEY)
    price_tax: Mapped[Decimal] = mapped_column(MONEY)
    price_total: Mapped[Decimal] = mapped_column(MONEY)


class SaleOrderLine(LineAmounts, Base):
    __tablename__ = "marketplace_sale_order_line"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(
        ForeignKey("marketplace_sale_order.id", ondelete="CASCADE"), index=True
    )
    product_id: Mapped[int] = mapped_column(ForeignKey("marketplace_product.id"), index=True)

    order: Mapped[SaleOrder] = relationship(back_populates="lines")
    product: Mapped[Product] = relationship(lazy="joined")


class AccountMove(Base):
    """A customer invoice (``out_invoice``) or credit note (``out_refund``).

    An order's invoice is posted with its order. A standalone invoice (no order, see
    :mod:`.invoices`) starts as a ``draft`` its issuer edits, and is posted (numbered, on the
    ledger) or cancelled; once posted it is never edited, only paid or reversed. Its customer is
    a user, or a payer without an account (``payer_name`` and ``payer_email``), whose receivable
    is the platform's ``guest_receivable`` (see :mod:`.postings`).
    """

    __tablename__ = "marketplace_account_move"
    __table_args__ = (
        _one_of("move_type", MOVE_TYPES),
        _one_of("state", MOVE_STATES),
        _one_of("payment_state", INVOICE_PAYMENT_STATES),
        CheckConstraint("amount_residual >= 0", name="residual_not_negative"),
        CheckConstraint("amount_residual <= amount_total", name="residual_within_total"),
        # Someone owes it: a customer with an account, or a payer named with an email.
        CheckConstraint(
            "customer_id IS NOT NULL OR (payer_name IS NOT NULL AND payer_email IS NOT NULL)",
            name="payer_known",
        ),
        # Only a standalone invoice is ever a draft or cancelled.
        CheckConstraint("state = 'posted' OR order_id IS NULL", name="order_invoice_posted"),
        # Invoices newest first (the listing; the id breaks ties for the cursor), and a
        # seller's own.
        Index("ix_marketplace_account_move_created_at_id", "created_at", "id"),
        Index("ix_marketplace_account_move_issuer_id_id", "issuer_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    name: Mapped[str | None] = mapped_column(String(32), unique=True)
    move_type: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="draft")
    payment_state: Mapped[str] = mapped_column(String(16), default="not_paid")
    #: The sale order invoiced; None: a standalone invoice (or its credit note).
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("marketplace_sale_order.id"), index=True
    )
    #: The customer (a user); None: a payer without an account, named below.
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"), index=True)
    #: A payer without an account: whom the invoice is addressed to.
    payer_name: Mapped[str | None] = mapped_column(String(200))
    payer_email: Mapped[str | None] = mapped_column(String(254))
    #: The seller who issued a standalone invoice of their own sales; None: the platform's
    #: (staff issued it, or it is an order's).
    issuer_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    #: Who made a standalone invoice (None: an order's, made by placing it).
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    #: A note for the payer, printed on the invoice.
    memo: Mapped[str | None] = mapped_column(String(2000))
    currency: Mapped[str] = mapped_column(String(3))
    invoice_date: Mapped[date] = mapped_column()
    invoice_date_due: Mapped[date] = mapped_column()
    amount_untaxed: Mapped[Decimal] = mapped_column(MONEY)
    amount_tax: Mapped[Decimal] = mapped_column(MONEY)
    amount_total: Mapped[Decimal] = mapped_column(MONEY)
    amount_residual: Mapped[Decimal] = mapped_column(MONEY)
    #: The platform's commission on the sellers' lines, in percent, fixed when the invoice is
    #: posted so that every payment and refund of it splits the same way. NULL on invoices from
    #: before the ledger: fixed (with the lines' sellers) at their first split.
    commission_percent: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    #: For a credit note: the invoice it reverses.
    reversed_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("marketplace_account_move.id"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    lines: Mapped[list[AccountMoveLine]] = relationship(
        back_populates="move", order_by="AccountMoveLine.sequence"
    )
    order: Mapped[SaleOrder | None] = relationship(lazy="joined")
    customer: Mapped[User | None] = relationship(foreign_keys=[customer_id], lazy="joined")
    issuer: Mapped[User | None] = relationship(foreign_keys=[issuer_id])
    reversed_entry: Mapped[AccountMove | None] = relationship(remote_side=[id])

    @property
    def standalone(self) -> bool:
        """Made without an order (see :mod:`.invoices`)."""
        return self.order_id is None and self.order is None


#: The payment state of the order's invoice. Deferred: the listing loads it in its own query
#: (``undefer``), so a page of orders stays one query; a single order loads it when read.
SaleOrder.payment_state = column_property(
    select(AccountMove.payment_state)
    .where(AccountMove.order_id == SaleOrder.id, AccountMove.move_type == "out_invoice")
    .order_by(AccountMove.id.desc())
    .limit(1)
    .correlate_except(AccountMove)
    .scalar_subquery(),
    deferred=True,
)


class AccountMoveLine(LineAmounts, Base):
    __tablename__ = "marketplace_account_move_line"
    __table_args__ = (
        # A seller's invoices (what a seller may see of payments and provider transactions).
        Index("ix_marketplace_account_move_line_seller_id_move_id", "seller_id", "move_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    move_id: Mapped[int] = mapped_column(
        ForeignKey("marketplace_account_move.id", ondelete="CASCADE"), index=True
    )
    #: The product sold; None: a line of a standalone invoice, described by its ``name``.
    product_id: Mapped[int | None] = mapped_column(ForeignKey("marketplace_product.id"))
    #: The product's seller when the invoice was posted (None: the platform's own sale), so a
    #: product changing hands later does not move money already split between sellers. On a
    #: seller's standalone invoice, that seller.
    seller_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    #: The line's tax (PPN) percent; None: its order's (``SaleOrder.tax_percent``).
    tax_percent: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))

    move: Mapped[AccountMove] = relationship(back_populates="lines")
    product: Mapped[Product | None] = relationship(lazy="joined")


class InvoiceCommission(Base):
    """A seller's own commission percent on an invoice, fixed when the invoice is posted, for
    a seller whose percent differs from the invoice's ``commission_percent`` (see
    :mod:`.commissions`). Every payment and refund of the invoice splits by it."""

    __tablename__ = "marketplace_invoice_commission"
    __table_args__ = (
        UniqueConstraint("move_id", "seller_id"),
        CheckConstraint("percent >= 0 AND percent < 100", name="percent_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    move_id: Mapped[int] = mapped_column(
        ForeignKey("marketplace_account_move.id", ondelete="CASCADE")
    )
    seller_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    percent: Mapped[Decimal] = mapped_column(Numeric(5, 2))


class Payment(Base):
    __tablename__ = "marketplace_payment"
    __table_args__ = (
        _one_of("state", PAYMENT_STATES),
        CheckConstraint("amount > 0", name="amount_positive"),
        # Payments newest first, keyset on both (the dashboard's recent transactions).
        Index("ix_marketplace_payment_created_at_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    name: Mapped[str | None] = mapped_column(String(32), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="in_process")
    invoice_id: Mapped[int] = mapped_column(ForeignKey("marketplace_account_move.id"), index=True)
    #: The invoice's customer; None: its payer has no account.
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"), index=True)
    method: Mapped[str] = mapped_column(String(32))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    reference: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column()
    confirmed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    cancelled_at: Mapped[datetime | None] = mapped_column()

    invoice: Mapped[AccountMove] = relationship(lazy="joined")
    customer: Mapped[User | None] = relationship(foreign_keys=[customer_id], lazy="joined")


class Refund(Base):
    """Money given back on a confirmed payment, with its partial credit note (``RINV``).

    ``pending`` once staff decided it (the credit note and the ledger reversal are written);
    ``succeeded`` once staff mark the money sent back through the payment's method, or at once
    when it went back to money the customer holds on the ledger (their wallet).
    """

    __tablename__ = "marketplace_refund"
    __table_args__ = (
        _one_of("state", REFUND_STATES),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    payment_id: Mapped[int] = mapped_column(ForeignKey("marketplace_payment.id"), index=True)
    #: The invoice paid by the payment (refunds are allocated per invoice).
    invoice_id: Mapped[int] = mapped_column(ForeignKey("marketplace_account_move.id"), index=True)
    credit_note_id: Mapped[int] = mapped_column(
        ForeignKey("marketplace_account_move.id"), unique=True
    )
    #: The payment's customer; None: its payer has no account.
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(500))
    #: The payment method the money goes back through: the payment's own, or a method holding
    #: the customer's money (``wallet``).
    destination: Mapped[str] = mapped_column(String(32))
    #: The provider's reference of the money it sent back (a provider that refunds itself).
    provider_reference: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    confirmed_at: Mapped[datetime | None] = mapped_column()
    confirmed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    payment: Mapped[Payment] = relationship(lazy="joined")
    credit_note: Mapped[AccountMove] = relationship(foreign_keys=[credit_note_id], lazy="joined")


class SequenceCounter(Base):
    """The next number per document code and year: a row lock makes numbers gap-free."""

    __tablename__ = "marketplace_sequence"

    code: Mapped[str] = mapped_column(String(8), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_number: Mapped[int] = mapped_column(Integer, default=1)


class IdempotencyKey(Base):
    """The first answer to a request sent with an ``Idempotency-Key``, per user and endpoint."""

    __tablename__ = "marketplace_idempotency_key"
    __table_args__ = (UniqueConstraint("user_id", "scope", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    #: The endpoint and object, e.g. ``orders`` or ``invoice-payments:<uuid>``.
    scope: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(255))
    #: SHA-256 of the canonical request body: the same key with another body is refused.
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict] = mapped_column(JsonDocument)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ProductSync(Base):
    """One run of the job that upserts products from a feed."""

    __tablename__ = "marketplace_product_sync"
    __table_args__ = (_one_of("state", SYNC_STATES),)

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    source: Mapped[str] = mapped_column(String(50))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    deactivated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    #: Listings whose price or size the catalogue cannot hold.
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(1000))
    #: Whether the feed was served stale (the source was down) when the sync read it.
    stale: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
