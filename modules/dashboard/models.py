"""The dashboard's rollups: per-day counters kept by an outbox subscriber, and the facts counted.

- ``dashboard_daily``: one row per (seller, currency, day, provider). ``seller_id`` 0 is the
  platform's total; any other is a seller's own share (:mod:`.facts`). Days are the
  marketplace's (``LAPAK_MARKETPLACE_TIMEZONE``). Counts of transactions by outcome and of
  refunds, and money in **hundredths** (the two places of every ``NUMERIC(18, 2)`` amount) as
  integers: the subscriber adds to them in SQL (``INSERT ... ON CONFLICT DO UPDATE SET volume =
  volume + excluded.volume``), which is exact on SQLite only for integers (it keeps NUMERIC as
  floats). They become ``Decimal`` again when read.
- ``dashboard_counted``: the natural key of every fact counted (``transaction``, ``payment`` or
  ``refund`` and its uuid), inserted in the same transaction as the counters it moved: an event
  delivered twice, or a fact the rebuild counted before its event came, moves them once.

- ``dashboard_seller_payment``: one row per payment and seller with a line on its invoice, with
  the payment's time: a seller's recent transactions, newest first, read through its index
  ``(seller_id, created_at, payment_id)`` a page at a time, whatever the seller sold before (a
  seller's payments are not in the order of their invoices: an old invoice may be paid late).
  The database keeps it, in the transaction that writes the payment or the line (triggers of
  migration 0025, on PostgreSQL and SQLite, whose SQL is in :mod:`.seller_payment`): the
  invoice's lines are written before its payments and neither is changed after, but a change to
  a payment's invoice or time, or to a line's invoice or seller, is followed too, so it is what
  the payments and lines say as long as they are written under their invoice's row lock (as they
  are) and no write bypasses the triggers (``lapak dashboard rebuild`` repairs it if one did).

Staff's recent transactions are read from the marketplace's payments, through the index the
marketplace declares on them (by time).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow

#: ``seller_id`` of the platform's own rows (every fact, whole).
PLATFORM = 0
#: The counters of a row, in the order the API shows them.
COUNTS = ("transactions", "succeeded", "failed", "canceled", "manual", "refunds")
AMOUNTS = ("volume_minor", "fees_minor", "refunded_minor")
COUNTERS = COUNTS + AMOUNTS


class DailyRollup(Base):
    __tablename__ = "dashboard_daily"

    #: 0: the platform's total; else the seller's user id (their share only).
    seller_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    #: The provider's code, or the payment method of a payment made without one.
    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: Provider transactions that reached a final state, and payments made without a
    #: provider that staff confirmed: ``succeeded + failed + canceled + manual``.
    transactions: Mapped[int] = mapped_column(Integer, default=0)
    #: Provider transactions by outcome (the success rate's).
    succeeded: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    canceled: Mapped[int] = mapped_column(Integer, default=0)
    #: Payments made without a provider (bank transfer, cash) that staff confirmed.
    manual: Mapped[int] = mapped_column(Integer, default=0)
    refunds: Mapped[int] = mapped_column(Integer, default=0)
    #: What succeeded (a seller: their untaxed share of it), in hundredths.
    volume_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    #: The providers' fees on it (a seller: the platform's commission on their share).
    fees_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Refunded (a seller: their share of the refunds), in hundredths.
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)


class CountedFact(Base):
    __tablename__ = "dashboard_counted"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    counted_at: Mapped[datetime] = mapped_column(default=utcnow)


class SellerPayment(Base):
    __tablename__ = "dashboard_seller_payment"
    __table_args__ = (
        # A seller's payments newest first, keyset on (created_at, payment_id): the listing's
        # own order, so a page reads a page of rows.
        Index(
            "ix_dashboard_seller_payment_seller_id_created_at_payment_id",
            "seller_id",
            "created_at",
            "payment_id",
        ),
    )

    payment_id: Mapped[int] = mapped_column(
        ForeignKey("marketplace_payment.id", ondelete="CASCADE"), primary_key=True
    )
    #: A seller with a line on the payment's invoice.
    seller_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    #: The payment's ``created_at``.
    created_at: Mapped[datetime] = mapped_column()
