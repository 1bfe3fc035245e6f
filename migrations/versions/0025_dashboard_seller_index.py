"""dashboard: a seller's payments by time, kept by the database

Revision ID: 0025
Revises: 0024
Create Date: 2026-11-30 09:00:00+00:00

``dashboard_seller_payment`` holds one row per payment and seller with a line on the payment's
invoice, with the payment's ``created_at``; its index ``(seller_id, created_at, payment_id)``
reads a seller's recent transactions newest first a page at a time. (From the seller's invoice
lines, a page had to read every payment the seller ever had: their payments do not follow their
invoices, an old invoice may be paid late.)

Triggers keep it in the transaction that writes the payment or the line, on PostgreSQL and on
SQLite alike. Their SQL, the invariant they rely on (an invoice's payments and lines are written
under its row lock) and what a later migration rebuilding ``marketplace_payment`` or
``marketplace_account_move_line`` on SQLite must do (drop them around the batch) are in
:mod:`modules.dashboard.seller_payment`, importable by later migrations. The payments already
there are copied in here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from modules.dashboard.seller_payment import BACKFILL, create_triggers, drop_triggers

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dashboard_seller_payment",
        sa.Column("payment_id", sa.Integer(), nullable=False),
        sa.Column("seller_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["marketplace_payment.id"],
            name=op.f("fk_dashboard_seller_payment_payment_id_marketplace_payment"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "payment_id", "seller_id", name=op.f("pk_dashboard_seller_payment")
        ),
    )
    op.create_index(
        "ix_dashboard_seller_payment_seller_id_created_at_payment_id",
        "dashboard_seller_payment",
        ["seller_id", "created_at", "payment_id"],
        unique=False,
    )
    postgresql = op.get_bind().dialect.name == "postgresql"
    # Triggers first: a payment written meanwhile is in the copy or brought by its trigger.
    create_triggers(op.get_bind())
    op.execute(BACKFILL + (" ON CONFLICT DO NOTHING" if postgresql else ""))


def downgrade() -> None:
    drop_triggers(op.get_bind())
    op.drop_index(
        "ix_dashboard_seller_payment_seller_id_created_at_payment_id",
        table_name="dashboard_seller_payment",
    )
    op.drop_table("dashboard_seller_payment")
