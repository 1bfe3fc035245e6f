"""wallet payments: refunds say where the money went back; provider transactions may top up

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 10:20:00+00:00

- ``marketplace_refund.destination``: the payment method the money goes back through (the
  payment's own, or the customer's wallet); existing refunds went back through their payment's.
  ``provider_reference``: the refund's reference at a provider that sends it back itself.
- ``payment_transaction.kind``: ``invoice`` (pays an invoice, as before) or ``top_up`` (credits
  the payer's wallet, no invoice): ``invoice_id`` is set exactly for the first, and only the
  first needs an accounting payment to succeed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("marketplace_refund", schema=None) as batch_op:
        batch_op.add_column(sa.Column("destination", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("provider_reference", sa.String(length=100), nullable=True))
    op.execute(
        "UPDATE marketplace_refund SET destination = (SELECT method FROM marketplace_payment "
        "WHERE marketplace_payment.id = marketplace_refund.payment_id)"
    )
    with op.batch_alter_table("marketplace_refund", schema=None) as batch_op:
        batch_op.alter_column("destination", existing_type=sa.String(length=32), nullable=False)

    with op.batch_alter_table("payment_transaction", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="invoice")
        )
        batch_op.alter_column("invoice_id", existing_type=sa.Integer(), nullable=True)
        batch_op.drop_constraint(op.f("ck_payment_transaction_success_has_payment"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_payment_transaction_success_has_payment"),
            "state <> 'success' OR kind <> 'invoice' OR account_payment_id IS NOT NULL",
        )
        batch_op.create_check_constraint(
            op.f("ck_payment_transaction_kind"), "kind IN ('invoice', 'top_up')"
        )
        batch_op.create_check_constraint(
            op.f("ck_payment_transaction_invoice_when_invoice"),
            "(kind = 'invoice') = (invoice_id IS NOT NULL)",
        )
    with op.batch_alter_table("payment_transaction", schema=None) as batch_op:
        batch_op.alter_column("kind", existing_type=sa.String(length=16), server_default=None)


def downgrade() -> None:
    op.execute("DELETE FROM payment_transaction WHERE kind <> 'invoice'")
    with op.batch_alter_table("payment_transaction", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_payment_transaction_invoice_when_invoice"), type_="check")
        batch_op.drop_constraint(op.f("ck_payment_transaction_kind"), type_="check")
        batch_op.drop_constraint(op.f("ck_payment_transaction_success_has_payment"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_payment_transaction_success_has_payment"),
            "state <> 'success' OR account_payment_id IS NOT NULL",
        )
        batch_op.alter_column("invoice_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("kind")
    with op.batch_alter_table("marketplace_refund", schema=None) as batch_op:
        batch_op.drop_column("provider_reference")
        batch_op.drop_column("destination")
