"""seller balances and settlements: hold releases, settlements and their numbering

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29 12:39:11+00:00

``seller_hold_release`` keeps one row per credit to a seller's pending account once its hold is
over (the key is the credited ledger entry); ``seller_settlement`` the withdrawals and weekly
payouts (``STL/YYYY/NNNNN``, gap-free from ``seller_settlement_counter``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "seller_settlement_counter",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("next_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year", name=op.f("pk_seller_settlement_counter")),
    )
    op.create_table(
        "seller_settlement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("seller_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("bank_code", sa.String(length=11), nullable=False),
        sa.Column("bank_holder_name", sa.String(length=100), nullable=False),
        sa.Column("bank_account_last4", sa.String(length=4), nullable=False),
        sa.Column("payout_adapter", sa.String(length=32), nullable=False),
        sa.Column("payout_reference", sa.String(length=100), nullable=True),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.Column("scheduled_for", sa.Date(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processing_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("canceled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(state = 'completed') = (completed_at IS NOT NULL)",
            name=op.f("ck_seller_settlement_completed_at"),
        ),
        sa.CheckConstraint(
            "(state = 'failed') = (failure_reason IS NOT NULL)",
            name=op.f("ck_seller_settlement_reason_when_failed"),
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'processing', 'completed', 'failed', 'canceled')",
            name=op.f("ck_seller_settlement_state_known"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_seller_settlement_amount_positive")),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user_account.id"],
            name=op.f("fk_seller_settlement_created_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["seller_id"],
            ["user_account.id"],
            name=op.f("fk_seller_settlement_seller_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seller_settlement")),
        sa.UniqueConstraint("name", name=op.f("uq_seller_settlement_name")),
        sa.UniqueConstraint("uuid", name=op.f("uq_seller_settlement_uuid")),
    )
    with op.batch_alter_table("seller_settlement", schema=None) as batch_op:
        batch_op.create_index(
            "ix_seller_settlement_seller_id_id", ["seller_id", "id"], unique=False
        )
        batch_op.create_index("ix_seller_settlement_state_id", ["state", "id"], unique=False)
        batch_op.create_index(
            "uq_seller_settlement_seller_id_scheduled_for",
            ["seller_id", "scheduled_for", "currency"],
            unique=True,
        )

    op.create_table(
        "seller_hold_release",
        sa.Column(
            "entry_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("seller_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("credited", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column(
            "transaction_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(amount = 0) = (transaction_id IS NULL)",
            name=op.f("ck_seller_hold_release_transaction_when_released"),
        ),
        sa.CheckConstraint(
            "amount >= 0 AND amount <= credited",
            name=op.f("ck_seller_hold_release_amount_within_credit"),
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["ledger_entry.id"],
            name=op.f("fk_seller_hold_release_entry_id_ledger_entry"),
        ),
        sa.ForeignKeyConstraint(
            ["seller_id"],
            ["user_account.id"],
            name=op.f("fk_seller_hold_release_seller_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transaction.id"],
            name=op.f("fk_seller_hold_release_transaction_id_ledger_transaction"),
        ),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_seller_hold_release")),
    )
    with op.batch_alter_table("seller_hold_release", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_seller_hold_release_seller_id"), ["seller_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("seller_hold_release", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_seller_hold_release_seller_id"))

    op.drop_table("seller_hold_release")
    with op.batch_alter_table("seller_settlement", schema=None) as batch_op:
        batch_op.drop_index("uq_seller_settlement_seller_id_scheduled_for")
        batch_op.drop_index("ix_seller_settlement_state_id")
        batch_op.drop_index("ix_seller_settlement_seller_id_id")

    op.drop_table("seller_settlement")
    op.drop_table("seller_settlement_counter")
