"""paylink: payment links and the payments started through them; guest provider transactions

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-08 09:00:00+00:00

``paylink_link`` holds a link's SHA-256 token hash (never the token), the invoice it pays, its
amount, expiry and state; ``paylink_attempt`` each payment started through a link, its provider
transaction and a hash of the payer's browser cookie. ``payment_transaction.guest`` marks a
transaction started by a payer who was not logged in (no saved method is used or made for it);
every transaction before this one was its customer's own (false).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payment_transaction", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("guest", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("payment_transaction", schema=None) as batch_op:
        batch_op.alter_column("guest", server_default=None)

    op.create_table(
        "paylink_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("single_use", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("closed_reason", sa.String(length=100), nullable=True),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("amount_paid", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "state IN ('active', 'revoked', 'used', 'closed')", name=op.f("ck_paylink_link_state")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_paylink_link_amount_positive")),
        sa.CheckConstraint(
            "amount_paid >= 0", name=op.f("ck_paylink_link_amount_paid_not_negative")
        ),
        sa.CheckConstraint("uses >= 0", name=op.f("ck_paylink_link_uses_not_negative")),
        sa.CheckConstraint(
            "length(token_hash) = 64", name=op.f("ck_paylink_link_token_hash_sha256")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user_account.id"],
            name=op.f("fk_paylink_link_created_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["marketplace_account_move.id"],
            name=op.f("fk_paylink_link_invoice_id_marketplace_account_move"),
        ),
        sa.ForeignKeyConstraint(
            ["revoked_by_id"],
            ["user_account.id"],
            name=op.f("fk_paylink_link_revoked_by_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paylink_link")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_paylink_link_token_hash")),
        sa.UniqueConstraint("uuid", name=op.f("uq_paylink_link_uuid")),
    )
    op.create_index(
        "ix_paylink_link_created_at_id", "paylink_link", ["created_at", "id"], unique=False
    )
    op.create_index(
        "ix_paylink_link_invoice_id_id", "paylink_link", ["invoice_id", "id"], unique=False
    )

    op.create_table(
        "paylink_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("transaction_id", sa.Integer(), nullable=False),
        sa.Column("payer_hash", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount > 0", name=op.f("ck_paylink_attempt_amount_positive")),
        sa.CheckConstraint(
            "length(payer_hash) = 64", name=op.f("ck_paylink_attempt_payer_hash_sha256")
        ),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["paylink_link.id"],
            name=op.f("fk_paylink_attempt_link_id_paylink_link"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["payment_transaction.id"],
            name=op.f("fk_paylink_attempt_transaction_id_payment_transaction"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paylink_attempt")),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_paylink_attempt_transaction_id")),
        sa.UniqueConstraint("uuid", name=op.f("uq_paylink_attempt_uuid")),
    )
    op.create_index(
        "ix_paylink_attempt_link_id_id", "paylink_attempt", ["link_id", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_paylink_attempt_link_id_id", table_name="paylink_attempt")
    op.drop_table("paylink_attempt")
    op.drop_index("ix_paylink_link_invoice_id_id", table_name="paylink_link")
    op.drop_index("ix_paylink_link_created_at_id", table_name="paylink_link")
    op.drop_table("paylink_link")
    with op.batch_alter_table("payment_transaction", schema=None) as batch_op:
        batch_op.drop_column("guest")
