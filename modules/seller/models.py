"""A seller's profile: one per user with the ``seller`` role, written on the first change.

A seller without a row (made by an admin through the user API, before any change) has the
default profile: unverified, no bank account, the default commission, manual payouts, and
may sell. The payout account number is sealed by the vault; only its last four digits are
kept in clear, to show it masked.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow
from app.vault import Sealed

KYC_STATES = ("unverified", "pending", "verified", "rejected")
PAYOUT_INTERVALS = ("manual", "weekly")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
PERCENT = Numeric(5, 2)


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
