"""invoice commissions: a seller's own commission percent, fixed on an invoice when posted

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 09:00:00+00:00

Only for sellers whose percent differs from the invoice's ``commission_percent``; existing
invoices have none (they split by their own percent, as before).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "marketplace_invoice_commission",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("move_id", sa.Integer(), nullable=False),
        sa.Column("seller_id", sa.Integer(), nullable=False),
        sa.Column("percent", sa.Numeric(precision=5, scale=2), nullable=False),
        sa.CheckConstraint(
            "percent >= 0 AND percent < 100",
            name=op.f("ck_marketplace_invoice_commission_percent_range"),
        ),
        sa.ForeignKeyConstraint(
            ["move_id"],
            ["marketplace_account_move.id"],
            name=op.f("fk_marketplace_invoice_commission_move_id_marketplace_account_move"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["seller_id"],
            ["user_account.id"],
            name=op.f("fk_marketplace_invoice_commission_seller_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_invoice_commission")),
        sa.UniqueConstraint(
            "move_id", "seller_id", name=op.f("uq_marketplace_invoice_commission_move_id_seller_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("marketplace_invoice_commission")
