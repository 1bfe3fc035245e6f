"""Payment links: a secret URL, ``/pay/<token>``, through which anyone holding it pays a posted
invoice without an account, and the payments started through it.

- ``paylink_link``: one link. Its token is never stored: only its SHA-256 (``token_hash``,
  unique), which is also how a request finds it (one index lookup on the digest, so how long it
  takes says nothing about the token's first characters). ``state`` ``active -> revoked | used
  | closed``: revoked by staff or the invoice's seller, used (a single-use link's payment
  succeeded), closed (its invoice was paid, reversed or cancelled another way). Expiry is not a
  state: a link past ``expires_at`` is expired whatever its state says.
- ``paylink_attempt``: a payment started through a link, the provider transaction it started,
  and a hash of the payer's browser cookie (so that browser, and only it, keeps seeing the
  payment's status once the link is used up). Its ``uuid`` is the page the provider sends the
  payer back to.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, utcnow
from modules.marketplace.models import MONEY, AccountMove
from modules.payment.models import PaymentTransaction
from modules.user.models import User

LINK_STATES = ("active", "revoked", "used", "closed")
#: What a link's status says besides its state: ``expired`` (past its expiry while active).
LINK_STATUSES = (*LINK_STATES, "expired")
#: Hex SHA-256.
DIGEST_CHARS = 64


class PaymentLink(Base):
    __tablename__ = "paylink_link"
    __table_args__ = (
        CheckConstraint("state IN ('active', 'revoked', 'used', 'closed')", name="state"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("amount_paid >= 0", name="amount_paid_not_negative"),
        CheckConstraint("uses >= 0", name="uses_not_negative"),
        CheckConstraint("length(token_hash) = 64", name="token_hash_sha256"),
        # Newest first (the listing), all and per invoice; the id breaks ties for the cursor.
        Index("ix_paylink_link_created_at_id", "created_at", "id"),
        Index("ix_paylink_link_invoice_id_id", "invoice_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    #: Hex SHA-256 of the token (the token itself is shown once, in the creation's answer).
    token_hash: Mapped[str] = mapped_column(String(DIGEST_CHARS), unique=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("marketplace_account_move.id"))
    #: What one payment through the link pays at most (what is due, if less).
    amount: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    #: One successful payment uses it up; otherwise payments go on until nothing is due.
    single_use: Mapped[bool] = mapped_column(default=True)
    state: Mapped[str] = mapped_column(String(16), default="active")
    #: Why it closed by itself: ``invoice paid``, ``invoice reversed``.
    closed_reason: Mapped[str | None] = mapped_column(String(100))
    #: Successful payments through it, and what they paid.
    uses: Mapped[int] = mapped_column(Integer, default=0)
    amount_paid: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    expires_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Who made it; None: the platform (a printed invoice's link).
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    #: When it stopped taking payments (revoked, used or closed).
    ended_at: Mapped[datetime | None] = mapped_column()
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    invoice: Mapped[AccountMove] = relationship(lazy="joined")
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id], lazy="joined")


class PaymentLinkAttempt(Base):
    __tablename__ = "paylink_attempt"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("length(payer_hash) = 64", name="payer_hash_sha256"),
        Index("ix_paylink_attempt_link_id_id", "link_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The page the provider sends the payer back to (``/pay/return/<uuid>``).
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    link_id: Mapped[int] = mapped_column(ForeignKey("paylink_link.id", ondelete="CASCADE"))
    transaction_id: Mapped[int] = mapped_column(ForeignKey("payment_transaction.id"), unique=True)
    #: Hex SHA-256 of the payer's browser cookie (which holds a random secret).
    payer_hash: Mapped[str] = mapped_column(String(DIGEST_CHARS))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: When its success was counted on the link (``payment_link.paid`` emitted once).
    paid_at: Mapped[datetime | None] = mapped_column()

    link: Mapped[PaymentLink] = relationship(lazy="joined")
    transaction: Mapped[PaymentTransaction] = relationship(lazy="joined")
