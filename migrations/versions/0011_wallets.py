"""wallets: one per customer and currency, their money on the ledger

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 07:40:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wallet_wallet",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("frozen_reason", sa.String(length=500), nullable=True),
        sa.Column("frozen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('active', 'frozen')", name=op.f("ck_wallet_wallet_state_known")
        ),
        sa.CheckConstraint(
            "(state = 'frozen') = (frozen_at IS NOT NULL)",
            name=op.f("ck_wallet_wallet_frozen_when_frozen"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["user_account.id"],
            name=op.f("fk_wallet_wallet_customer_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_wallet")),
        sa.UniqueConstraint(
            "customer_id", "currency", name=op.f("uq_wallet_wallet_customer_id_currency")
        ),
        sa.UniqueConstraint("uuid", name=op.f("uq_wallet_wallet_uuid")),
    )


def downgrade() -> None:
    op.drop_table("wallet_wallet")
