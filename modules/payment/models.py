"""Payment providers, their transactions and saved methods, after Odoo's ``payment.provider``,
``payment.transaction`` and ``payment.token``.

- ``payment_provider``: configuration, one row per provider code (the adapters registered by
  modules). ``state`` ``disabled|test|enabled``; the currencies it takes; its fee (percent and
  fixed); ``settings`` (plain values, e.g. bank details shown to payers) and ``secrets`` (the
  provider's secret values, e.g. its signing key, as one JSON document sealed by the vault).
- ``payment_transaction``: money moving through a provider for an invoice (or, ``kind``
  ``top_up``, into the payer's wallet), ``pending -> processing -> success | failed | canceled``
  (:mod:`.transitions`), with the accounting payment (``marketplace_payment``) it confirms on
  success.
- ``payment_token``: a saved method: the provider's token (sealed), and in clear only the brand,
  the last four digits and the expiry. Soft-deleted (``active``).

The database holds the invariants too: states, positive amounts, ``net = amount - fee`` (on
PostgreSQL: SQLite compares NUMERIC as floats), one
provider reference per provider, one account payment per transaction, one active token per
customer and card.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, JsonDocument, utcnow
from app.vault import Sealed
from modules.marketplace.models import MONEY, AccountMove, Payment
from modules.user.models import User

PROVIDER_STATES = ("disabled", "test", "enabled")
TRANSACTION_STATES = ("pending", "processing", "success", "failed", "canceled")
FINAL_STATES = ("success", "failed", "canceled")
#: What a transaction's money is for: an invoice, or the payer's own wallet (no invoice).
TRANSACTION_KINDS = ("invoice", "top_up")


def _one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    return CheckConstraint(f"{column} IN ({', '.join(repr(v) for v in values)})", name=column)


class PaymentProvider(Base):
    __tablename__ = "payment_provider"
    __table_args__ = (
        _one_of("state", PROVIDER_STATES),
        CheckConstraint("fee_percent >= 0 AND fee_percent < 100", name="fee_percent_range"),
        CheckConstraint("fee_fixed >= 0", name="fee_fixed_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16), default="disabled")
    #: ISO 4217 codes it takes, e.g. ["IDR", "USD"].
    currencies: Mapped[list[str]] = mapped_column(JsonDocument, default=list)
    fee_percent: Mapped[Decimal] = mapped_column(Numeric(5, 2), default=Decimal(0))
    fee_fixed: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    #: Plain settings (shown to staff, some to payers: bank details).
    settings: Mapped[dict] = mapped_column(JsonDocument, default=dict)
    #: The secret settings, a JSON object sealed by the vault; never returned by the API.
    secrets: Mapped[str | None] = mapped_column(Sealed, deferred=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PaymentToken(Base):
    __tablename__ = "payment_token"
    __table_args__ = (
        CheckConstraint("length(last4) = 4", name="last4_four_digits"),
        CheckConstraint("exp_month BETWEEN 1 AND 12", name="exp_month_range"),
        # One live saved method per customer and card (the vault's fingerprint of the card).
        Index(
            "uq_payment_token_active_card",
            "provider_id",
            "customer_id",
            "fingerprint",
            unique=True,
            postgresql_where=text("active"),
            sqlite_where=text("active"),
        ),
        Index("ix_payment_token_customer_id_id", "customer_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    provider_id: Mapped[int] = mapped_column(ForeignKey("payment_provider.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    #: The provider's token for the method (sealed by the vault).
    provider_token: Mapped[str] = mapped_column(Sealed, deferred=True)
    brand: Mapped[str] = mapped_column(String(20))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int] = mapped_column(Integer)
    exp_year: Mapped[int] = mapped_column(Integer)
    #: ``app.vault.fingerprint`` of the provider's card fingerprint: duplicates, not a hash.
    fingerprint: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column()

    provider: Mapped[PaymentProvider] = relationship(lazy="joined")


class PaymentTransaction(Base):
    __tablename__ = "payment_transaction"
    __table_args__ = (
        _one_of("state", TRANSACTION_STATES),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("fee >= 0 AND fee <= amount", name="fee_within_amount"),
        # PostgreSQL only: SQLite keeps NUMERIC as a float, where 100.10 - 3.20 <> 96.90 (the
        # service computes net in Decimal on both).
        CheckConstraint("net = amount - fee", name="net_is_amount_less_fee").ddl_if(
            dialect="postgresql"
        ),
        # A success paying an invoice is always the confirmation of an accounting payment.
        CheckConstraint(
            "state <> 'success' OR kind <> 'invoice' OR account_payment_id IS NOT NULL",
            name="success_has_payment",
        ),
        _one_of("kind", TRANSACTION_KINDS),
        CheckConstraint(
            "(kind = 'invoice') = (invoice_id IS NOT NULL)", name="invoice_when_invoice"
        ),
        # A top-up fills someone's wallet; an invoice's payer may have no account.
        CheckConstraint("kind = 'invoice' OR customer_id IS NOT NULL", name="top_up_has_customer"),
        UniqueConstraint("provider_id", "provider_reference"),
        Index("ix_payment_transaction_created_id", "created_at", "id"),
        Index("ix_payment_transaction_customer_created_id", "customer_id", "created_at", "id"),
        Index("ix_payment_transaction_state_expires", "state", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    #: ``TX/YYYY/NNNNN``: unique, from the row's id (not gap-free, as Odoo's references).
    reference: Mapped[str | None] = mapped_column(String(32), unique=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("payment_provider.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="invoice")
    #: The invoice paid (``kind`` invoice); None for a top-up.
    invoice_id: Mapped[int | None] = mapped_column(
        ForeignKey("marketplace_account_move.id"), index=True
    )
    #: Whose money: the invoice's customer, or the wallet's; None: an invoice's payer without
    #: an account.
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    #: The accounting payment this transaction confirms on success (released on a failure).
    account_payment_id: Mapped[int | None] = mapped_column(
        ForeignKey("marketplace_payment.id"), unique=True
    )
    token_id: Mapped[int | None] = mapped_column(ForeignKey("payment_token.id"))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    fee: Mapped[Decimal] = mapped_column(MONEY)
    net: Mapped[Decimal] = mapped_column(MONEY)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    state_message: Mapped[str | None] = mapped_column(String(500))
    provider_reference: Mapped[str | None] = mapped_column(String(100))
    #: The provider reported a capture after Lapak gave the payment up (canceled or failed):
    #: the state stays, nothing is posted, staff refund the money (``payment.late_success``).
    late_success: Mapped[bool] = mapped_column(default=False)
    #: What the payer does next: bank details, a redirect URL, a QR payload.
    action: Mapped[dict] = mapped_column(JsonDocument, default=dict)
    #: The payer asked to save the method used (the provider sends its token on success).
    tokenize: Mapped[bool] = mapped_column(default=False)
    #: Started by a payer who is not logged in (a payment link's): nothing is known of them but
    #: that they hold the link, so no saved method of the customer is used, offered or made.
    guest: Mapped[bool] = mapped_column(default=False)
    expires_at: Mapped[datetime] = mapped_column()
    last_state_change: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    provider: Mapped[PaymentProvider] = relationship(lazy="joined")
    invoice: Mapped[AccountMove | None] = relationship(lazy="joined")
    customer: Mapped[User | None] = relationship(foreign_keys=[customer_id], lazy="joined")
    account_payment: Mapped[Payment | None] = relationship(lazy="joined")
    token: Mapped[PaymentToken | None] = relationship(lazy="joined")
