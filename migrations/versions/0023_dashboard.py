"""dashboard: per-day rollups, the facts counted, and recent payments by time

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-01 09:00:00+00:00

``dashboard_daily`` holds per-day counters per (seller, currency, day, provider), seller 0 being
the platform's total, money in hundredths; ``dashboard_counted`` the natural key of every fact
counted, so a redelivered event counts once.

The indexes the dashboard's reads need on other modules' tables are declared by the modules that
own those tables (their ``models.py``) and created here with the dashboard that first reads
them: ``marketplace_payment (created_at, id)`` (payments newest first) and
``marketplace_account_move_line (seller_id, move_id)`` (a seller's invoices), the marketplace's;
``seller_settlement (currency, state, completed_at)`` (settlements completed in a period, and
those in flight), the seller module's.

The tables start empty: on a database that already has payments, run ``lapak dashboard
rebuild`` once after this migration (the README's Dashboard section); from then on the outbox
subscribers keep the rollups.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dashboard_daily",
        sa.Column("seller_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("transactions", sa.Integer(), nullable=False),
        sa.Column("succeeded", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("canceled", sa.Integer(), nullable=False),
        sa.Column("manual", sa.Integer(), nullable=False),
        sa.Column("refunds", sa.Integer(), nullable=False),
        sa.Column("volume_minor", sa.BigInteger(), nullable=False),
        sa.Column("fees_minor", sa.BigInteger(), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "seller_id", "currency", "day", "provider", name=op.f("pk_dashboard_daily")
        ),
    )
    op.create_table(
        "dashboard_counted",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.Uuid(), nullable=False),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "subject", name=op.f("pk_dashboard_counted")),
    )
    # Owned by the marketplace (modules/marketplace/models.py: Payment, AccountMoveLine).
    op.create_index(
        "ix_marketplace_payment_created_at_id",
        "marketplace_payment",
        ["created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_marketplace_account_move_line_seller_id_move_id",
        "marketplace_account_move_line",
        ["seller_id", "move_id"],
        unique=False,
    )
    # Owned by the seller module (modules/seller/models.py: Settlement).
    op.create_index(
        "ix_seller_settlement_currency_state_completed_at",
        "seller_settlement",
        ["currency", "state", "completed_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        "ix_seller_settlement_currency_state_completed_at", table_name="seller_settlement"
    )
    op.drop_index(
        "ix_marketplace_account_move_line_seller_id_move_id",
        table_name="marketplace_account_move_line",
    )
    op.drop_index("ix_marketplace_payment_created_at_id", table_name="marketplace_payment")
    op.drop_table("dashboard_counted")
    op.drop_table("dashboard_daily")
