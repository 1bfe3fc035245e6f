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
SQLite alike: a payment inserted takes its invoice's sellers; a line inserted adds its seller to
the payments its invoice already has (the marketplace writes lines first, so this finds none);
a payment whose invoice or time changes, and a line whose invoice or seller changes or that is
deleted, are followed too. A payment deleted takes its rows with it (the foreign key). The
payments already there are copied in here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The sellers of a payment's invoice (``{row}``: NEW or OLD), as rows of the table.
_SELLERS_OF_PAYMENT = """
    SELECT DISTINCT {row}.id, l.seller_id, {row}.created_at
      FROM marketplace_account_move_line l
     WHERE l.move_id = {row}.invoice_id AND l.seller_id IS NOT NULL
"""
#: The payments of a line's invoice, as rows of the table for its seller.
_PAYMENTS_OF_LINE = """
    SELECT p.id, NEW.seller_id, p.created_at
      FROM marketplace_payment p
     WHERE p.invoice_id = NEW.move_id AND NEW.seller_id IS NOT NULL
"""
#: The rows of OLD's seller on OLD's invoice, unless another line still gives them.
_LINE_GONE = """
    DELETE FROM dashboard_seller_payment
     WHERE seller_id = OLD.seller_id
       AND payment_id IN (SELECT p.id FROM marketplace_payment p WHERE p.invoice_id = OLD.move_id)
       AND NOT EXISTS (SELECT 1 FROM marketplace_account_move_line l
                        WHERE l.move_id = OLD.move_id AND l.seller_id = OLD.seller_id)
"""
_COLUMNS = "dashboard_seller_payment (payment_id, seller_id, created_at)"

POSTGRESQL_TRIGGERS = (
    f"""
    CREATE FUNCTION dashboard_seller_payment_of_payment() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            DELETE FROM dashboard_seller_payment WHERE payment_id = OLD.id;
        END IF;
        INSERT INTO {_COLUMNS} {_SELLERS_OF_PAYMENT.format(row="NEW")}
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$
    """,  # noqa: S608 - the text of constants
    """
    CREATE TRIGGER dashboard_seller_payment_of_payment
    AFTER INSERT OR UPDATE OF invoice_id, created_at ON marketplace_payment
    FOR EACH ROW EXECUTE FUNCTION dashboard_seller_payment_of_payment()
    """,
    f"""
    CREATE FUNCTION dashboard_seller_payment_of_line() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            {_LINE_GONE};
        END IF;
        IF TG_OP <> 'DELETE' THEN
            INSERT INTO {_COLUMNS} {_PAYMENTS_OF_LINE}
            ON CONFLICT DO NOTHING;
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER dashboard_seller_payment_of_line
    AFTER INSERT OR DELETE OR UPDATE OF move_id, seller_id ON marketplace_account_move_line
    FOR EACH ROW EXECUTE FUNCTION dashboard_seller_payment_of_line()
    """,
)
POSTGRESQL_DROPS = (
    "DROP TRIGGER IF EXISTS dashboard_seller_payment_of_line ON marketplace_account_move_line",
    "DROP TRIGGER IF EXISTS dashboard_seller_payment_of_payment ON marketplace_payment",
    "DROP FUNCTION IF EXISTS dashboard_seller_payment_of_line()",
    "DROP FUNCTION IF EXISTS dashboard_seller_payment_of_payment()",
)
SQLITE_TRIGGERS = (
    f"""
    CREATE TRIGGER dashboard_seller_payment_payment_inserted AFTER INSERT ON marketplace_payment
    BEGIN
        INSERT OR IGNORE INTO {_COLUMNS} {_SELLERS_OF_PAYMENT.format(row="NEW")};
    END
    """,
    f"""
    CREATE TRIGGER dashboard_seller_payment_payment_updated
    AFTER UPDATE OF invoice_id, created_at ON marketplace_payment
    BEGIN
        DELETE FROM dashboard_seller_payment WHERE payment_id = OLD.id;
        INSERT OR IGNORE INTO {_COLUMNS} {_SELLERS_OF_PAYMENT.format(row="NEW")};
    END
    """,  # noqa: S608 - the text of constants
    f"""
    CREATE TRIGGER dashboard_seller_payment_line_inserted
    AFTER INSERT ON marketplace_account_move_line
    BEGIN
        INSERT OR IGNORE INTO {_COLUMNS} {_PAYMENTS_OF_LINE};
    END
    """,
    f"""
    CREATE TRIGGER dashboard_seller_payment_line_updated
    AFTER UPDATE OF move_id, seller_id ON marketplace_account_move_line
    BEGIN
        {_LINE_GONE};
        INSERT OR IGNORE INTO {_COLUMNS} {_PAYMENTS_OF_LINE};
    END
    """,
    f"""
    CREATE TRIGGER dashboard_seller_payment_line_deleted
    AFTER DELETE ON marketplace_account_move_line
    BEGIN
        {_LINE_GONE};
    END
    """,
)
SQLITE_DROPS = tuple(
    f"DROP TRIGGER IF EXISTS dashboard_seller_payment_{name}"
    for name in (
        "line_deleted", "line_updated", "line_inserted", "payment_updated", "payment_inserted",
    )
)  # fmt: skip
#: The payments already there.
BACKFILL = f"""
    INSERT INTO {_COLUMNS}
    SELECT DISTINCT p.id, l.seller_id, p.created_at
      FROM marketplace_payment p
      JOIN marketplace_account_move_line l ON l.move_id = p.invoice_id
     WHERE l.seller_id IS NOT NULL
"""  # noqa: S608 - the text of constants


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
    for statement in POSTGRESQL_TRIGGERS if postgresql else SQLITE_TRIGGERS:
        op.execute(statement)
    op.execute(BACKFILL + (" ON CONFLICT DO NOTHING" if postgresql else ""))


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL_DROPS if postgresql else SQLITE_DROPS:
        op.execute(statement)
    op.drop_index(
        "ix_dashboard_seller_payment_seller_id_created_at_payment_id",
        table_name="dashboard_seller_payment",
    )
    op.drop_table("dashboard_seller_payment")
