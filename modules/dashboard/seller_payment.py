"""The triggers that keep ``dashboard_seller_payment``, and the repair of the table.

``dashboard_seller_payment`` holds one row per payment and seller with a line on the payment's
invoice, with the payment's ``created_at`` (see :mod:`.models`). Triggers keep it in the
transaction that writes the payment or the line, on PostgreSQL and on SQLite alike: a payment
inserted takes its invoice's sellers; a seller's line inserted adds its seller to the payments its
invoice already has (the trigger fires only for lines with a seller: ``WHEN (NEW.seller_id IS NOT
NULL)``, so the platform's and credit notes' lines cost nothing); a payment whose invoice or time
changes, and a line whose invoice or seller changes or that is deleted, are followed too. A
payment deleted takes its rows with it (the foreign key; on SQLite the app turns
``PRAGMA foreign_keys`` on).

The SQL lives here, not in a version file, so that migrations can import it:
:func:`create_triggers` / :func:`drop_triggers` take the migration's connection
(``op.get_bind()``). Migration 0025 creates them.

**A later migration that rebuilds ``marketplace_payment`` or ``marketplace_account_move_line`` on
SQLite** (alembic's batch mode: create ``_alembic_tmp_X``, copy, drop X, rename) **must drop the
triggers before the batch and create them again after it**: SQLite checks every trigger when a
table is renamed, and the other table's triggers name the one just dropped, so the rename fails
(``error in trigger dashboard_seller_payment_...: no such table``). ``PRAGMA
legacy_alter_table=ON`` is no way out: the rename then passes but the dropped table's triggers
are gone, silently. PostgreSQL needs nothing (its ALTERs keep triggers), but calling the two
functions on both dialects is harmless::

    drop_triggers(op.get_bind())
    with op.batch_alter_table("marketplace_payment") as batch:
        ...
    create_triggers(op.get_bind())
    repair(op.get_bind())

(:func:`repair` puts back rows lost meanwhile: with ``PRAGMA foreign_keys`` on, dropping the old
``marketplace_payment`` deletes their rows through the foreign key's cascade.)

**Races.** Each trigger reads the other table under its own statement's snapshot, so a payment
and a seller's line of one invoice written at once by two transactions (READ COMMITTED) could
each miss the other, and the (payment, seller) row would never be written. That cannot happen
because the payments and lines of one invoice are only written under the invoice's row lock
(the marketplace writes an invoice's lines with the invoice, before any payment; payments are
registered on the locked invoice; ``fix_split`` changes sellers under it; a standalone invoice's
lines change only while it is a draft, under its lock, and a draft takes no payment). The
triggers rely on that: a new writer of payments or lines must take the invoice's lock too.

Writes that skip the triggers (``session_replication_role = replica``, a ``--disable-triggers``
restore, a replication subscriber) leave the table out of step: :func:`repair` (run by ``lapak
dashboard rebuild``) makes it what the payments and lines say again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

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
    CREATE TRIGGER dashboard_seller_payment_line_inserted
    AFTER INSERT ON marketplace_account_move_line
    FOR EACH ROW WHEN (NEW.seller_id IS NOT NULL)
    EXECUTE FUNCTION dashboard_seller_payment_of_line()
    """,
    """
    CREATE TRIGGER dashboard_seller_payment_of_line
    AFTER DELETE OR UPDATE OF move_id, seller_id ON marketplace_account_move_line
    FOR EACH ROW EXECUTE FUNCTION dashboard_seller_payment_of_line()
    """,
)
POSTGRESQL_DROPS = (
    "DROP TRIGGER IF EXISTS dashboard_seller_payment_of_line ON marketplace_account_move_line",
    "DROP TRIGGER IF EXISTS dashboard_seller_payment_line_inserted"
    " ON marketplace_account_move_line",
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
    WHEN NEW.seller_id IS NOT NULL
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
#: The names of the triggers at head, by dialect.
TRIGGERS = {
    "postgresql": frozenset(
        {
            "dashboard_seller_payment_of_payment",
            "dashboard_seller_payment_of_line",
            "dashboard_seller_payment_line_inserted",
        }
    ),
    "sqlite": frozenset(drop.rsplit(" ", 1)[-1] for drop in SQLITE_DROPS),
}

#: Every (payment, seller) the payments and lines give, with the payment's time.
_EXPECTED = """
    SELECT DISTINCT p.id, l.seller_id, p.created_at
      FROM marketplace_payment p
      JOIN marketplace_account_move_line l ON l.move_id = p.invoice_id
     WHERE l.seller_id IS NOT NULL
"""
#: The payments already there (the migration's backfill: the table is empty).
BACKFILL = f"INSERT INTO {_COLUMNS} {_EXPECTED}"

#: The repair, in this order: rows no line gives, rows at another time than their payment's,
#: rows missing.
_REPAIR_DELETE = """
    DELETE FROM dashboard_seller_payment
     WHERE NOT EXISTS (
        SELECT 1 FROM marketplace_payment p
          JOIN marketplace_account_move_line l ON l.move_id = p.invoice_id
         WHERE p.id = dashboard_seller_payment.payment_id
           AND l.seller_id = dashboard_seller_payment.seller_id)
"""
_REPAIR_UPDATE = """
    UPDATE dashboard_seller_payment
       SET created_at = (SELECT p.created_at FROM marketplace_payment p
                          WHERE p.id = dashboard_seller_payment.payment_id)
     WHERE created_at <> (SELECT p.created_at FROM marketplace_payment p
                           WHERE p.id = dashboard_seller_payment.payment_id)
"""
_REPAIR_INSERT = f"""
    INSERT INTO {_COLUMNS}
    SELECT DISTINCT p.id, l.seller_id, p.created_at
      FROM marketplace_payment p
      JOIN marketplace_account_move_line l ON l.move_id = p.invoice_id
     WHERE l.seller_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM dashboard_seller_payment s
                        WHERE s.payment_id = p.id AND s.seller_id = l.seller_id)
"""  # noqa: S608 - the text of constants


def create_triggers(connection: Any) -> None:
    """Create the triggers (and, on PostgreSQL, their functions) on ``connection``."""
    postgresql = connection.dialect.name == "postgresql"
    for statement in POSTGRESQL_TRIGGERS if postgresql else SQLITE_TRIGGERS:
        connection.execute(text(statement))


def drop_triggers(connection: Any) -> None:
    """Drop the triggers (and, on PostgreSQL, their functions), if they are there."""
    postgresql = connection.dialect.name == "postgresql"
    for statement in POSTGRESQL_DROPS if postgresql else SQLITE_DROPS:
        connection.execute(text(statement))


@dataclass(frozen=True)
class Repaired:
    #: Rows deleted (no line gives them), whose time was fixed, and inserted (missing).
    deleted: int
    retimed: int
    inserted: int


def repair(connection: Any) -> Repaired:
    """Make ``dashboard_seller_payment`` what the payments and lines say, in three set-based
    statements, in the caller's transaction. On PostgreSQL the payments and lines are locked
    against writers first (``SHARE``: reads go on; orders and payments wait for the repair), as
    the migration's backfill has them; on SQLite the transaction holds the write lock."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            text(
                "LOCK TABLE marketplace_payment, marketplace_account_move_line, "
                "dashboard_seller_payment IN SHARE MODE"
            )
        )
    deleted = connection.execute(text(_REPAIR_DELETE)).rowcount
    retimed = connection.execute(text(_REPAIR_UPDATE)).rowcount
    inserted = connection.execute(text(_REPAIR_INSERT)).rowcount
    return Repaired(deleted=deleted, retimed=retimed, inserted=inserted)
