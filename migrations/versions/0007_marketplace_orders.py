"""marketplace products, orders, invoices, payments, sequences, idempotency keys

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 11:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "marketplace_sequence",
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("next_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code", "year", name=op.f("pk_marketplace_sequence")),
    )
    op.create_table(
        "marketplace_idempotency_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column(
            "response",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_marketplace_idempotency_key_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_idempotency_key")),
        sa.UniqueConstraint(
            "user_id", "scope", "key", name=op.f("uq_marketplace_idempotency_key_user_id_scope_key")
        ),
    )
    op.create_index(
        op.f("ix_marketplace_idempotency_key_created_at"),
        "marketplace_idempotency_key",
        ["created_at"],
        unique=False,
    )
    op.create_table(
        "marketplace_product",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("feed_uuid", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=50), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("province", sa.String(length=200), nullable=True),
        sa.Column("city", sa.String(length=200), nullable=True),
        sa.Column("size", sa.Numeric(precision=14, scale=3), nullable=True),
        sa.Column("list_price", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("seller_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "list_price > 0", name=op.f("ck_marketplace_product_list_price_positive")
        ),
        sa.ForeignKeyConstraint(
            ["seller_id"],
            ["user_account.id"],
            name=op.f("fk_marketplace_product_seller_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_product")),
        sa.UniqueConstraint("feed_uuid", name=op.f("uq_marketplace_product_feed_uuid")),
        sa.UniqueConstraint("uuid", name=op.f("uq_marketplace_product_uuid")),
    )
    op.create_index(
        "ix_marketplace_product_active_id", "marketplace_product", ["active", "id"], unique=False
    )
    op.create_index(
        op.f("ix_marketplace_product_seller_id"), "marketplace_product", ["seller_id"], unique=False
    )
    op.create_index(
        "ix_marketplace_product_source", "marketplace_product", ["source"], unique=False
    )
    op.create_table(
        "marketplace_product_sync",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=50), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=True),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("deactivated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("stale", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed')",
            name=op.f("ck_marketplace_product_sync_state"),
        ),
        sa.ForeignKeyConstraint(
            ["requested_by_id"],
            ["user_account.id"],
            name=op.f("fk_marketplace_product_sync_requested_by_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_product_sync")),
        sa.UniqueConstraint("uuid", name=op.f("uq_marketplace_product_sync_uuid")),
    )
    op.create_table(
        "marketplace_sale_order",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("currency_rate", sa.Numeric(precision=24, scale=12), nullable=False),
        sa.Column("rate_source", sa.String(length=50), nullable=True),
        sa.Column("tax_percent", sa.Numeric(precision=5, scale=2), nullable=False),
        sa.Column("date_order", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount_untaxed", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("amount_tax", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("amount_total", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('draft', 'sale', 'cancel')", name=op.f("ck_marketplace_sale_order_state")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user_account.id"],
            name=op.f("fk_marketplace_sale_order_created_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["user_account.id"],
            name=op.f("fk_marketplace_sale_order_customer_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_sale_order")),
        sa.UniqueConstraint("name", name=op.f("uq_marketplace_sale_order_name")),
        sa.UniqueConstraint("uuid", name=op.f("uq_marketplace_sale_order_uuid")),
    )
    op.create_index(
        "ix_marketplace_sale_order_customer_date_id",
        "marketplace_sale_order",
        ["customer_id", "date_order", "id"],
        unique=False,
    )
    op.create_index(
        "ix_marketplace_sale_order_date_id",
        "marketplace_sale_order",
        ["date_order", "id"],
        unique=False,
    )
    op.create_index(
        "ix_marketplace_sale_order_state_date_id",
        "marketplace_sale_order",
        ["state", "date_order", "id"],
        unique=False,
    )
    op.create_table(
        "marketplace_account_move",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=True),
        sa.Column("move_type", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("payment_state", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("invoice_date", sa.Date(), nullable=False),
        sa.Column("invoice_date_due", sa.Date(), nullable=False),
        sa.Column("amount_untaxed", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("amount_tax", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("amount_total", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("amount_residual", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("reversed_entry_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "move_type IN ('out_invoice', 'out_refund')",
            name=op.f("ck_marketplace_account_move_move_type"),
        ),
        sa.CheckConstraint(
            "payment_state IN ('not_paid', 'partial', 'in_payment', 'paid', 'reversed')",
            name=op.f("ck_marketplace_account_move_payment_state"),
        ),
        sa.CheckConstraint(
            "state IN ('draft', 'posted', 'cancel')", name=op.f("ck_marketplace_account_move_state")
        ),
        sa.CheckConstraint(
            "amount_residual <= amount_total",
            name=op.f("ck_marketplace_account_move_residual_within_total"),
        ),
        sa.CheckConstraint(
            "amount_residual >= 0", name=op.f("ck_marketplace_account_move_residual_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["user_account.id"],
            name=op.f("fk_marketplace_account_move_customer_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["marketplace_sale_order.id"],
            name=op.f("fk_marketplace_account_move_order_id_marketplace_sale_order"),
        ),
        sa.ForeignKeyConstraint(
            ["reversed_entry_id"],
            ["marketplace_account_move.id"],
            name=op.f("fk_marketplace_account_move_reversed_entry_id_marketplace_account_move"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_account_move")),
        sa.UniqueConstraint("name", name=op.f("uq_marketplace_account_move_name")),
        sa.UniqueConstraint("uuid", name=op.f("uq_marketplace_account_move_uuid")),
    )
    op.create_index(
        op.f("ix_marketplace_account_move_customer_id"),
        "marketplace_account_move",
        ["customer_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_marketplace_account_move_order_id"),
        "marketplace_account_move",
        ["order_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_marketplace_account_move_reversed_entry_id"),
        "marketplace_account_move",
        ["reversed_entry_id"],
        unique=False,
    )
    op.create_table(
        "marketplace_sale_order_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=14, scale=3), nullable=False),
        sa.Column("price_unit", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("price_subtotal", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("price_tax", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("price_total", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.CheckConstraint(
            "quantity > 0", name=op.f("ck_marketplace_sale_order_line_quantity_positive")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["marketplace_sale_order.id"],
            name=op.f("fk_marketplace_sale_order_line_order_id_marketplace_sale_order"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["marketplace_product.id"],
            name=op.f("fk_marketplace_sale_order_line_product_id_marketplace_product"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_sale_order_line")),
    )
    op.create_index(
        op.f("ix_marketplace_sale_order_line_order_id"),
        "marketplace_sale_order_line",
        ["order_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_marketplace_sale_order_line_product_id"),
        "marketplace_sale_order_line",
        ["product_id"],
        unique=False,
    )
    op.create_table(
        "marketplace_account_move_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("move_id", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=14, scale=3), nullable=False),
        sa.Column("price_unit", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("price_subtotal", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("price_tax", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("price_total", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.ForeignKeyConstraint(
            ["move_id"],
            ["marketplace_account_move.id"],
            name=op.f("fk_marketplace_account_move_line_move_id_marketplace_account_move"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["marketplace_product.id"],
            name=op.f("fk_marketplace_account_move_line_product_id_marketplace_product"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_account_move_line")),
    )
    op.create_index(
        op.f("ix_marketplace_account_move_line_move_id"),
        "marketplace_account_move_line",
        ["move_id"],
        unique=False,
    )
    op.create_table(
        "marketplace_payment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirmed_by_id", sa.Integer(), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('in_process', 'paid', 'canceled')", name=op.f("ck_marketplace_payment_state")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_marketplace_payment_amount_positive")),
        sa.ForeignKeyConstraint(
            ["confirmed_by_id"],
            ["user_account.id"],
            name=op.f("fk_marketplace_payment_confirmed_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["user_account.id"],
            name=op.f("fk_marketplace_payment_customer_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["marketplace_account_move.id"],
            name=op.f("fk_marketplace_payment_invoice_id_marketplace_account_move"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_payment")),
        sa.UniqueConstraint("name", name=op.f("uq_marketplace_payment_name")),
        sa.UniqueConstraint("uuid", name=op.f("uq_marketplace_payment_uuid")),
    )
    op.create_index(
        op.f("ix_marketplace_payment_customer_id"),
        "marketplace_payment",
        ["customer_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_marketplace_payment_invoice_id"),
        "marketplace_payment",
        ["invoice_id"],
        unique=False,
    )


def downgrade() -> None:

    op.drop_index(op.f("ix_marketplace_payment_invoice_id"), table_name="marketplace_payment")
    op.drop_index(op.f("ix_marketplace_payment_customer_id"), table_name="marketplace_payment")
    op.drop_table("marketplace_payment")
    op.drop_index(
        op.f("ix_marketplace_account_move_line_move_id"), table_name="marketplace_account_move_line"
    )
    op.drop_table("marketplace_account_move_line")
    op.drop_index(
        op.f("ix_marketplace_sale_order_line_product_id"), table_name="marketplace_sale_order_line"
    )
    op.drop_index(
        op.f("ix_marketplace_sale_order_line_order_id"), table_name="marketplace_sale_order_line"
    )
    op.drop_table("marketplace_sale_order_line")
    op.drop_index(
        op.f("ix_marketplace_account_move_reversed_entry_id"), table_name="marketplace_account_move"
    )
    op.drop_index(
        op.f("ix_marketplace_account_move_order_id"), table_name="marketplace_account_move"
    )
    op.drop_index(
        op.f("ix_marketplace_account_move_customer_id"), table_name="marketplace_account_move"
    )
    op.drop_table("marketplace_account_move")
    op.drop_index("ix_marketplace_sale_order_state_date_id", table_name="marketplace_sale_order")
    op.drop_index("ix_marketplace_sale_order_date_id", table_name="marketplace_sale_order")
    op.drop_index("ix_marketplace_sale_order_customer_date_id", table_name="marketplace_sale_order")
    op.drop_table("marketplace_sale_order")
    op.drop_table("marketplace_product_sync")
    op.drop_index("ix_marketplace_product_source", table_name="marketplace_product")
    op.drop_index(op.f("ix_marketplace_product_seller_id"), table_name="marketplace_product")
    op.drop_index("ix_marketplace_product_active_id", table_name="marketplace_product")
    op.drop_table("marketplace_product")
    op.drop_index(
        op.f("ix_marketplace_idempotency_key_created_at"), table_name="marketplace_idempotency_key"
    )
    op.drop_table("marketplace_idempotency_key")
    op.drop_table("marketplace_sequence")
