"""payment providers, provider transactions and saved methods

The ``payment`` module's tables (see ``modules/payment/models.py``): ``payment_provider``
(configuration per provider code; secret settings sealed by the vault in ``secrets``),
``payment_transaction`` (``TX/...``, its state, fee and net, the accounting payment it confirms,
one provider reference per provider) and ``payment_token`` (a saved method: the sealed provider
token, brand, last4, expiry; one live token per customer and card fingerprint). Provider rows
are made by the app on first use, from the adapters the loaded modules register.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 07:20:39.495439+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payment_provider",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column(
            "currencies",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("fee_percent", sa.Numeric(precision=5, scale=2), nullable=False),
        sa.Column("fee_fixed", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column(
            "settings",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("secrets", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('disabled', 'test', 'enabled')", name=op.f("ck_payment_provider_state")
        ),
        sa.CheckConstraint(
            "fee_fixed >= 0", name=op.f("ck_payment_provider_fee_fixed_not_negative")
        ),
        sa.CheckConstraint(
            "fee_percent >= 0 AND fee_percent < 100",
            name=op.f("ck_payment_provider_fee_percent_range"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_provider")),
        sa.UniqueConstraint("code", name=op.f("uq_payment_provider_code")),
    )
    op.create_table(
        "payment_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("provider_token", sa.Text(), nullable=False),
        sa.Column("brand", sa.String(length=20), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("exp_month", sa.Integer(), nullable=False),
        sa.Column("exp_year", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "exp_month BETWEEN 1 AND 12", name=op.f("ck_payment_token_exp_month_range")
        ),
        sa.CheckConstraint("length(last4) = 4", name=op.f("ck_payment_token_last4_four_digits")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["user_account.id"],
            name=op.f("fk_payment_token_customer_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["payment_provider.id"],
            name=op.f("fk_payment_token_provider_id_payment_provider"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_token")),
        sa.UniqueConstraint("uuid", name=op.f("uq_payment_token_uuid")),
    )
    with op.batch_alter_table("payment_token", schema=None) as batch_op:
        batch_op.create_index(
            "ix_payment_token_customer_id_id", ["customer_id", "id"], unique=False
        )
        batch_op.create_index(
            "uq_payment_token_active_card",
            ["provider_id", "customer_id", "fingerprint"],
            unique=True,
            postgresql_where=sa.text("active"),
            sqlite_where=sa.text("active"),
        )

    op.create_table(
        "payment_transaction",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("reference", sa.String(length=32), nullable=True),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("account_payment_id", sa.Integer(), nullable=True),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("fee", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("net", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_message", sa.String(length=500), nullable=True),
        sa.Column("provider_reference", sa.String(length=100), nullable=True),
        sa.Column("late_success", sa.Boolean(), nullable=False),
        sa.Column(
            "action",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("tokenize", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_state_change", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "state <> 'success' OR account_payment_id IS NOT NULL",
            name=op.f("ck_payment_transaction_success_has_payment"),
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'processing', 'success', 'failed', 'canceled')",
            name=op.f("ck_payment_transaction_state"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payment_transaction_amount_positive")),
        sa.CheckConstraint(
            "fee >= 0 AND fee <= amount", name=op.f("ck_payment_transaction_fee_within_amount")
        ),
        # PostgreSQL only: SQLite keeps NUMERIC as a float (100.10 - 3.20 <> 96.90 there).
        *(
            [
                sa.CheckConstraint(
                    "net = amount - fee",
                    name=op.f("ck_payment_transaction_net_is_amount_less_fee"),
                )
            ]
            if op.get_bind().dialect.name == "postgresql"
            else []
        ),
        sa.ForeignKeyConstraint(
            ["account_payment_id"],
            ["marketplace_payment.id"],
            name=op.f("fk_payment_transaction_account_payment_id_marketplace_payment"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user_account.id"],
            name=op.f("fk_payment_transaction_created_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["user_account.id"],
            name=op.f("fk_payment_transaction_customer_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["marketplace_account_move.id"],
            name=op.f("fk_payment_transaction_invoice_id_marketplace_account_move"),
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["payment_provider.id"],
            name=op.f("fk_payment_transaction_provider_id_payment_provider"),
        ),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["payment_token.id"],
            name=op.f("fk_payment_transaction_token_id_payment_token"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_transaction")),
        sa.UniqueConstraint(
            "account_payment_id", name=op.f("uq_payment_transaction_account_payment_id")
        ),
        sa.UniqueConstraint(
            "provider_id",
            "provider_reference",
            name=op.f("uq_payment_transaction_provider_id_provider_reference"),
        ),
        sa.UniqueConstraint("reference", name=op.f("uq_payment_transaction_reference")),
        sa.UniqueConstraint("uuid", name=op.f("uq_payment_transaction_uuid")),
    )
    with op.batch_alter_table("payment_transaction", schema=None) as batch_op:
        batch_op.create_index(
            "ix_payment_transaction_created_id", ["created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_payment_transaction_customer_created_id",
            ["customer_id", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_payment_transaction_invoice_id"), ["invoice_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_payment_transaction_provider_id"), ["provider_id"], unique=False
        )
        batch_op.create_index(
            "ix_payment_transaction_state_expires", ["state", "expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("payment_transaction", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_transaction_state_expires")
        batch_op.drop_index(batch_op.f("ix_payment_transaction_provider_id"))
        batch_op.drop_index(batch_op.f("ix_payment_transaction_invoice_id"))
        batch_op.drop_index("ix_payment_transaction_customer_created_id")
        batch_op.drop_index("ix_payment_transaction_created_id")

    op.drop_table("payment_transaction")
    with op.batch_alter_table("payment_token", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_payment_token_active_card",
            postgresql_where=sa.text("active"),
            sqlite_where=sa.text("active"),
        )
        batch_op.drop_index("ix_payment_token_customer_id_id")

    op.drop_table("payment_token")
    op.drop_table("payment_provider")
