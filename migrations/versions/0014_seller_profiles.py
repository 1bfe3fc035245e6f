"""seller profiles: display name, contact, KYC review, sealed payout account, commission, schedule

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 08:00:00+00:00

One row per seller, written on the seller's first change (a seller without one has the default
profile), so existing sellers need no rows here. ``bank_account_number`` holds a vault token.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WEEKDAYS = "'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'"


def upgrade() -> None:
    op.create_table(
        "seller_profile",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("contact_email", sa.String(length=254), nullable=False),
        sa.Column("contact_phone", sa.String(length=32), nullable=True),
        sa.Column("can_sell", sa.Boolean(), nullable=False),
        sa.Column("kyc_state", sa.String(length=16), nullable=False),
        sa.Column("kyc_submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("kyc_reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("kyc_reviewed_by_id", sa.Integer(), nullable=True),
        sa.Column("kyc_rejection_reason", sa.String(length=500), nullable=True),
        sa.Column("bank_code", sa.String(length=11), nullable=True),
        sa.Column("bank_holder_name", sa.String(length=100), nullable=True),
        sa.Column("bank_account_number", sa.Text(), nullable=True),
        sa.Column("bank_account_last4", sa.String(length=4), nullable=True),
        sa.Column("bank_account_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("commission_percent", sa.Numeric(precision=5, scale=2), nullable=True),
        sa.Column("payout_interval", sa.String(length=8), nullable=False),
        sa.Column("payout_weekday", sa.String(length=9), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kyc_state IN ('unverified', 'pending', 'verified', 'rejected')",
            name=op.f("ck_seller_profile_kyc_state_known"),
        ),
        sa.CheckConstraint(
            "kyc_state = 'unverified' OR kyc_submitted_at IS NOT NULL",
            name=op.f("ck_seller_profile_submitted_for_review"),
        ),
        sa.CheckConstraint(
            "kyc_state NOT IN ('verified', 'rejected') OR kyc_reviewed_at IS NOT NULL",
            name=op.f("ck_seller_profile_reviewed_when_decided"),
        ),
        sa.CheckConstraint(
            "(kyc_state = 'rejected') = (kyc_rejection_reason IS NOT NULL)",
            name=op.f("ck_seller_profile_reason_when_rejected"),
        ),
        sa.CheckConstraint(
            "kyc_state = 'unverified' OR bank_account_number IS NOT NULL",
            name=op.f("ck_seller_profile_bank_account_when_reviewed"),
        ),
        sa.CheckConstraint(
            "(bank_account_number IS NULL) = (bank_code IS NULL) "
            "AND (bank_account_number IS NULL) = (bank_holder_name IS NULL) "
            "AND (bank_account_number IS NULL) = (bank_account_last4 IS NULL)",
            name=op.f("ck_seller_profile_bank_account_whole"),
        ),
        sa.CheckConstraint(
            "length(bank_account_last4) = 4", name=op.f("ck_seller_profile_last4_four_characters")
        ),
        sa.CheckConstraint(
            "commission_percent >= 0 AND commission_percent < 100",
            name=op.f("ck_seller_profile_commission_percent_range"),
        ),
        sa.CheckConstraint(
            "payout_interval IN ('manual', 'weekly')",
            name=op.f("ck_seller_profile_payout_interval_known"),
        ),
        sa.CheckConstraint(
            f"payout_weekday IN ({WEEKDAYS})", name=op.f("ck_seller_profile_payout_weekday_known")
        ),
        sa.CheckConstraint(
            "(payout_interval = 'weekly') = (payout_weekday IS NOT NULL)",
            name=op.f("ck_seller_profile_weekday_when_weekly"),
        ),
        sa.ForeignKeyConstraint(
            ["kyc_reviewed_by_id"],
            ["user_account.id"],
            name=op.f("fk_seller_profile_kyc_reviewed_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_seller_profile_user_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seller_profile")),
        sa.UniqueConstraint("user_id", name=op.f("uq_seller_profile_user_id")),
    )
    with op.batch_alter_table("seller_profile", schema=None) as batch_op:
        batch_op.create_index(
            "ix_seller_profile_kyc_state_user_id", ["kyc_state", "user_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("seller_profile", schema=None) as batch_op:
        batch_op.drop_index("ix_seller_profile_kyc_state_user_id")
    op.drop_table("seller_profile")
