"""A seller's profile: one per user with the ``seller`` role, written on the first change.

A seller without a row (made by an admin through the user API, before any change) has the
default profile: unverified, no bank account, the default commission, manual payouts, and
may sell. The payout account number is sealed by the vault; only its last four digits are
kept in clear, to show it masked.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow
from app.vault import Sealed

KYC_STATES = ("unverified", "pending", "verified", "rejected")
PAYOUT_INTERVALS = ("manual", "weekly")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
PERCENT = Numeric(5, 2)
MONEY = Numeric(18, 2)
SETTLEMENT_STATES = ("pending", "processing", "completed", "failed", "canceled")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class SellerProfile(Base):
    """The seller's public id is their user's: ``/api/v1/sellers/{user id}``."""

    __tablename__ = "seller_profile"
    __table_args__ = (
        CheckConstraint(_one_of("kyc_state", KYC_STATES), name="kyc_state_known"),
        CheckConstraint(
            "kyc_state = 'unverified' OR kyc_submitted_at IS NOT NULL", name="submitted_for_review"
        ),
        CheckConstraint(
            "kyc_state NOT IN ('verified', 'rejected') OR kyc_reviewed_at IS NOT NULL",
            name="reviewed_when_decided",
        ),
        CheckConstraint(
            "(kyc_state = 'rejected') = (kyc_rejection_reason IS NOT NULL)",
            name="reason_when_rejected",
        ),
        # A review is of a payout account: submitted with one, never left without one.
        CheckConstraint(
            "kyc_state = 'unverified' OR bank_account_number IS NOT NULL",
            name="bank_account_when_reviewed",
        ),
        CheckConstraint(
            "(bank_account_number IS NULL) = (bank_code IS NULL) "
            "AND (bank_account_number IS NULL) = (bank_holder_name IS NULL) "
            "AND (bank_account_number IS NULL) = (bank_account_last4 IS NULL)",
            name="bank_account_whole",
        ),
        CheckConstraint("length(bank_account_last4) = 4", name="last4_four_characters"),
        CheckConstraint(
            "commission_percent >= 0 AND commission_percent < 100", name="commission_percent_range"
        ),
        CheckConstraint(_one_of("payout_interval", PAYOUT_INTERVALS), name="payout_interval_known"),
        CheckConstraint(_one_of("payout_weekday", WEEKDAYS), name="payout_weekday_known"),
        CheckConstraint(
            "(payout_interval = 'weekly') = (payout_weekday IS NOT NULL)",
            name="weekday_when_weekly",
        ),
        Index("ix_seller_profile_kyc_state_user_id", "kyc_state", "user_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    contact_email: Mapped[str] = mapped_column(String(254))
    #: E.164, or None.
    contact_phone: Mapped[str | None] = mapped_column(String(32))
    #: False for a seller who signed up while sign-up was ``review``, until staff verify them.
    can_sell: Mapped[bool] = mapped_column(default=True)
    kyc_state: Mapped[str] = mapped_column(String(16), default="unverified")
    kyc_submitted_at: Mapped[datetime | None] = mapped_column()
    kyc_reviewed_at: Mapped[datetime | None] = mapped_column()
    kyc_reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    kyc_rejection_reason: Mapped[str | None] = mapped_column(String(500))
    #: The bank's code (``014``, or a BIC such as ``CENAIDJA``).
    bank_code: Mapped[str | None] = mapped_column(String(11))
    bank_holder_name: Mapped[str | None] = mapped_column(String(100))
    #: Sealed by the vault: read back only to pay out, never shown. Deferred: loading a profile
    #: does not open it (views show ``bank_account_last4``), so a value no vault key opens any
    #: more breaks only what needs the number, not every read of the profile or staff's list.
    bank_account_number: Mapped[str | None] = mapped_column(Sealed, deferred=True)
    bank_account_last4: Mapped[str | None] = mapped_column(String(4))
    bank_account_updated_at: Mapped[datetime | None] = mapped_column()
    #: The platform's cut of this seller's sales; None: ``LAPAK_COMMISSION_PERCENT``.
    commission_percent: Mapped[Decimal | None] = mapped_column(PERCENT)
    payout_interval: Mapped[str] = mapped_column(String(8), default="manual")
    payout_weekday: Mapped[str | None] = mapped_column(String(9))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class HoldRelease(Base):
    """One credit to a seller's pending account, released once its hold is over.

    Its key is the credited ledger entry: the job inserts the row before it posts
    ``HOLD_RELEASE`` (whose nonce is the entry's id too), so two runs never release the same
    credit. ``amount`` is what was moved (zero when refunds took the credit back first: then
    nothing is posted and ``transaction_id`` is empty).
    """

    __tablename__ = "seller_hold_release"
    __table_args__ = (
        CheckConstraint("amount >= 0 AND amount <= credited", name="amount_within_credit"),
        CheckConstraint(
            "(amount = 0) = (transaction_id IS NULL)", name="transaction_when_released"
        ),
    )

    entry_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("ledger_entry.id"),
        primary_key=True,
        autoincrement=False,
    )
    seller_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    credited: Mapped[Decimal] = mapped_column(MONEY)
    amount: Mapped[Decimal] = mapped_column(MONEY)
    transaction_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("ledger_transaction.id")
    )
    released_at: Mapped[datetime] = mapped_column(default=utcnow)


class Settlement(Base):
    """A seller's withdrawal: money moved from their available balance to the payout clearing
    account when made, paid to their bank account by staff (or a payout adapter).

    ``pending -> processing -> completed | failed``, or ``pending -> canceled``. The bank
    account is a copy of the masked parts only (code, holder, last four): the sealed number is
    read from the profile when paying out, never kept here.
    """

    __tablename__ = "seller_settlement"
    __table_args__ = (
        CheckConstraint(_one_of("state", SETTLEMENT_STATES), name="state_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("(state = 'completed') = (completed_at IS NOT NULL)", name="completed_at"),
        CheckConstraint(
            "(state = 'failed') = (failure_reason IS NOT NULL)", name="reason_when_failed"
        ),
        Index("ix_seller_settlement_seller_id_id", "seller_id", "id"),
        Index("ix_seller_settlement_state_id", "state", "id"),
        # Those completed in a period, and those in flight, per currency (every seller's: the
        # dashboard's settlement summary).
        Index(
            "ix_seller_settlement_currency_state_completed_at", "currency", "state", "completed_at"
        ),
        # A weekly payout is made once per seller and day, however often the job runs.
        Index(
            "uq_seller_settlement_seller_id_scheduled_for",
            "seller_id",
            "scheduled_for",
            "currency",
            unique=True,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    #: ``STL/2026/00042``: gap-free per year.
    name: Mapped[str] = mapped_column(String(32), unique=True)
    seller_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    bank_code: Mapped[str] = mapped_column(String(11))
    bank_holder_name: Mapped[str] = mapped_column(String(100))
    bank_account_last4: Mapped[str] = mapped_column(String(4))
    payout_adapter: Mapped[str] = mapped_column(String(32))
    #: The payout's reference at the bank or adapter, once known.
    payout_reference: Mapped[str | None] = mapped_column(String(100))
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    #: The day of a weekly scheduled payout (marketplace time zone); None for a withdrawal.
    scheduled_for: Mapped[date | None] = mapped_column()
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    processing_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()
    failed_at: Mapped[datetime | None] = mapped_column()
    canceled_at: Mapped[datetime | None] = mapped_column()


class SettlementCounter(Base):
    """The last settlement number of a year, taken under the row's lock (gap-free)."""

    __tablename__ = "seller_settlement_counter"

    year: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    next_number: Mapped[int] = mapped_column()
