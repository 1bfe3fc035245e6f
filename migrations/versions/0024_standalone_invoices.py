"""standalone invoices: invoices without an order, to a customer or a payer without an account

An invoice (``marketplace_account_move``) no longer needs an order: ``order_id`` may be NULL,
and so may ``customer_id`` when the invoice is addressed to a payer without an account
(``payer_name``, ``payer_email``; a CHECK wants one or the other). A standalone invoice knows
its issuing seller (``issuer_id``; NULL: the platform), who made it (``created_by_id``) and a
``memo``; only such an invoice may be a draft or cancelled (a CHECK). Its lines describe what
is sold without a product (``product_id`` NULL) and carry their own tax percent
(``tax_percent``; NULL on an order's lines: the order's). Payments, refunds and provider
transactions of a payer without an account have no customer (``customer_id`` NULL; a top-up
still needs one).

Downgrading refuses while any standalone invoice, or anything of a payer without an account,
exists: the older schema cannot hold them, and deleting invoices is not a downgrade's to do.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02 09:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAYER_KNOWN = "customer_id IS NOT NULL OR (payer_name IS NOT NULL AND payer_email IS NOT NULL)"
ORDER_INVOICE_POSTED = "state = 'posted' OR order_id IS NULL"
TOP_UP_HAS_CUSTOMER = "kind = 'invoice' OR customer_id IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("marketplace_account_move", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payer_name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("payer_email", sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column("issuer_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("created_by_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("memo", sa.String(length=2000), nullable=True))
        batch_op.alter_column("order_id", existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column("customer_id", existing_type=sa.Integer(), nullable=True)
        batch_op.create_foreign_key(
            batch_op.f("fk_marketplace_account_move_issuer_id_user_account"),
            "user_account",
            ["issuer_id"],
            ["id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_marketplace_account_move_created_by_id_user_account"),
            "user_account",
            ["created_by_id"],
            ["id"],
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_marketplace_account_move_payer_known"), PAYER_KNOWN
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_marketplace_account_move_order_invoice_posted"), ORDER_INVOICE_POSTED
        )
        batch_op.create_index(
            "ix_marketplace_account_move_created_at_id", ["created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_marketplace_account_move_issuer_id_id", ["issuer_id", "id"], unique=False
        )

    with op.batch_alter_table("marketplace_account_move_line", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("tax_percent", sa.Numeric(precision=5, scale=2), nullable=True)
        )
        batch_op.alter_column("product_id", existing_type=sa.Integer(), nullable=True)

    with op.batch_alter_table("marketplace_payment", schema=None) as batch_op:
        batch_op.alter_column("customer_id", existing_type=sa.Integer(), nullable=True)

    with op.batch_alter_table("marketplace_refund", schema=None) as batch_op:
        batch_op.alter_column("customer_id", existing_type=sa.Integer(), nullable=True)

    with op.batch_alter_table("payment_transaction", schema=None) as batch_op:
        batch_op.alter_column("customer_id", existing_type=sa.Integer(), nullable=True)
        batch_op.create_check_constraint(
            batch_op.f("ck_payment_transaction_top_up_has_customer"), TOP_UP_HAS_CUSTOMER
        )


def downgrade() -> None:
    connection = op.get_bind()
    left = connection.execute(
        sa.text(
            "SELECT count(*) FROM marketplace_account_move "
            "WHERE order_id IS NULL OR customer_id IS NULL"
        )
    ).scalar()
    if left:
        raise RuntimeError(
            f"{left} standalone invoices or credit notes exist: the schema before 0024 cannot "
            "hold them; downgrading would lose them, so it is refused"
        )

    with op.batch_alter_table("payment_transaction", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("ck_payment_transaction_top_up_has_customer"), type_="check"
        )
        batch_op.alter_column("customer_id", existing_type=sa.Integer(), nullable=False)

    with op.batch_alter_table("marketplace_refund", schema=None) as batch_op:
        batch_op.alter_column("customer_id", existing_type=sa.Integer(), nullable=False)

    with op.batch_alter_table("marketplace_payment", schema=None) as batch_op:
        batch_op.alter_column("customer_id", existing_type=sa.Integer(), nullable=False)

    with op.batch_alter_table("marketplace_account_move_line", schema=None) as batch_op:
        batch_op.alter_column("product_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("tax_percent")

    with op.batch_alter_table("marketplace_account_move", schema=None) as batch_op:
        batch_op.drop_index("ix_marketplace_account_move_issuer_id_id")
        batch_op.drop_index("ix_marketplace_account_move_created_at_id")
        batch_op.drop_constraint(
            batch_op.f("ck_marketplace_account_move_order_invoice_posted"), type_="check"
        )
        batch_op.drop_constraint(
            batch_op.f("ck_marketplace_account_move_payer_known"), type_="check"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_marketplace_account_move_created_by_id_user_account"),
            type_="foreignkey",
        )
        batch_op.drop_constraint(
            batch_op.f("fk_marketplace_account_move_issuer_id_user_account"), type_="foreignkey"
        )
        batch_op.alter_column("customer_id", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("order_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("memo")
        batch_op.drop_column("created_by_id")
        batch_op.drop_column("issuer_id")
        batch_op.drop_column("payer_email")
        batch_op.drop_column("payer_name")
