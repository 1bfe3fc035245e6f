"""ledger: accounts, transactions, entries, the hash chain head; append-only and balance triggers

On PostgreSQL the database itself refuses what the service refuses (PAYMENTS.md §2): an UPDATE
or DELETE of a transaction or an entry, a change to an account other than its cached balance,
and (a deferred constraint trigger, checked at commit) a transaction whose entries do not
balance per currency or that has fewer than two. SQLite gets the append-only triggers; its
balance rule is the service's check.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 02:07:41.782646+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


POSTGRESQL_TRIGGERS = (
    """
    CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the ledger is append-only: % on % refused (post a reversing transaction)',
            TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
    END $$
    """,
    """
    CREATE TRIGGER ledger_transaction_append_only BEFORE UPDATE OR DELETE ON ledger_transaction
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()
    """,
    """
    CREATE TRIGGER ledger_entry_append_only BEFORE UPDATE OR DELETE ON ledger_entry
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()
    """,
    """
    CREATE FUNCTION ledger_account_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' OR NEW.id <> OLD.id OR NEW.uuid <> OLD.uuid OR NEW.code <> OLD.code
           OR NEW.kind <> OLD.kind OR NEW.purpose <> OLD.purpose OR NEW.currency <> OLD.currency
           OR NEW.holder_id IS DISTINCT FROM OLD.holder_id
           OR NEW.allow_negative <> OLD.allow_negative THEN
            RAISE EXCEPTION 'a ledger account keeps what it is; only its balance changes'
                USING ERRCODE = 'restrict_violation';
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER ledger_account_guard BEFORE UPDATE OR DELETE ON ledger_account
    FOR EACH ROW EXECUTE FUNCTION ledger_account_guard()
    """,
    """
    CREATE FUNCTION ledger_assert_balanced(tx bigint, count_legs boolean) RETURNS void
    LANGUAGE plpgsql AS $$
    DECLARE
        legs integer;
        bad record;
    BEGIN
        SELECT e.currency, sum(e.debit) AS debit, sum(e.credit) AS credit INTO bad
          FROM ledger_entry e WHERE e.transaction_id = tx
         GROUP BY e.currency HAVING sum(e.debit) <> sum(e.credit) LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'ledger transaction % does not balance in %: debit %, credit %',
                tx, bad.currency, bad.debit, bad.credit USING ERRCODE = 'check_violation';
        END IF;
        IF count_legs THEN
            SELECT count(*) INTO legs FROM ledger_entry e WHERE e.transaction_id = tx;
            IF legs < 2 THEN
                RAISE EXCEPTION 'ledger transaction % has % leg(s); it needs two or more',
                    tx, legs USING ERRCODE = 'check_violation';
            END IF;
        END IF;
    END $$
    """,
    """
    CREATE FUNCTION ledger_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM ledger_assert_balanced(NEW.transaction_id, false);
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION ledger_transaction_has_legs() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM ledger_assert_balanced(NEW.id, true);
        RETURN NULL;
    END $$
    """,
    """
    CREATE CONSTRAINT TRIGGER ledger_entry_balanced AFTER INSERT ON ledger_entry
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_entry_balanced()
    """,
    """
    CREATE CONSTRAINT TRIGGER ledger_transaction_has_legs AFTER INSERT ON ledger_transaction
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_has_legs()
    """,
)
POSTGRESQL_DROPS = (
    "DROP TRIGGER IF EXISTS ledger_transaction_has_legs ON ledger_transaction",
    "DROP TRIGGER IF EXISTS ledger_entry_balanced ON ledger_entry",
    "DROP TRIGGER IF EXISTS ledger_account_guard ON ledger_account",
    "DROP TRIGGER IF EXISTS ledger_entry_append_only ON ledger_entry",
    "DROP TRIGGER IF EXISTS ledger_transaction_append_only ON ledger_transaction",
    "DROP FUNCTION IF EXISTS ledger_transaction_has_legs()",
    "DROP FUNCTION IF EXISTS ledger_entry_balanced()",
    "DROP FUNCTION IF EXISTS ledger_assert_balanced(bigint, boolean)",
    "DROP FUNCTION IF EXISTS ledger_account_guard()",
    "DROP FUNCTION IF EXISTS ledger_refuse_change()",
)
SQLITE_TRIGGERS = tuple(
    f"""
    CREATE TRIGGER {table}_no_{verb} BEFORE {verb.upper()} ON {table}
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: post a reversing transaction'); END
    """
    for table in ("ledger_transaction", "ledger_entry")
    for verb in ("update", "delete")
)


def upgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table(
        "ledger_chain",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("last_index", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=80), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("year_count", sa.Integer(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_ledger_chain_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_chain")),
    )
    op.create_table(
        "ledger_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=80), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("holder_id", sa.Integer(), nullable=True),
        sa.Column("allow_negative", sa.Boolean(), nullable=False),
        sa.Column("balance", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('asset', 'liability', 'income', 'expense', 'equity')",
            name=op.f("ck_ledger_account_kind"),
        ),
        sa.CheckConstraint(
            "allow_negative OR balance >= 0", name=op.f("ck_ledger_account_balance_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["holder_id"],
            ["user_account.id"],
            name=op.f("fk_ledger_account_holder_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_account")),
        sa.UniqueConstraint("code", name=op.f("uq_ledger_account_code")),
        sa.UniqueConstraint("uuid", name=op.f("uq_ledger_account_uuid")),
    )
    with op.batch_alter_table("ledger_account", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_account_holder_currency", ["holder_id", "currency"], unique=False
        )
        batch_op.create_index(
            "ix_ledger_account_purpose_currency", ["purpose", "currency"], unique=False
        )

    op.create_table(
        "ledger_transaction",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("chain_index", sa.BigInteger(), nullable=False),
        sa.Column("operation", sa.String(length=40), nullable=False),
        sa.Column("nonce", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=120), nullable=True),
        sa.Column("memo", sa.String(length=500), nullable=True),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column(
            "reverses_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hash", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["user_account.id"],
            name=op.f("fk_ledger_transaction_actor_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["reverses_id"],
            ["ledger_transaction.id"],
            name=op.f("fk_ledger_transaction_reverses_id_ledger_transaction"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transaction")),
        sa.UniqueConstraint("chain_index", name=op.f("uq_ledger_transaction_chain_index")),
        sa.UniqueConstraint("number", name=op.f("uq_ledger_transaction_number")),
        sa.UniqueConstraint(
            "operation", "nonce", name=op.f("uq_ledger_transaction_operation_nonce")
        ),
        sa.UniqueConstraint("uuid", name=op.f("uq_ledger_transaction_uuid")),
    )
    with op.batch_alter_table("ledger_transaction", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_transaction_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_ledger_transaction_reference", ["reference"], unique=False)

    op.create_table(
        "ledger_entry",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "transaction_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("debit", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("credit", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("balance_after", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.CheckConstraint("(debit > 0) <> (credit > 0)", name=op.f("ck_ledger_entry_one_side")),
        sa.CheckConstraint("credit >= 0", name=op.f("ck_ledger_entry_credit_not_negative")),
        sa.CheckConstraint("debit >= 0", name=op.f("ck_ledger_entry_debit_not_negative")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_account.id"],
            name=op.f("fk_ledger_entry_account_id_ledger_account"),
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transaction.id"],
            name=op.f("fk_ledger_entry_transaction_id_ledger_transaction"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entry")),
    )
    with op.batch_alter_table("ledger_entry", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_entry_account_id", ["account_id", "id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_ledger_entry_transaction_id"), ["transaction_id"], unique=False
        )

    # ### end Alembic commands ###
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRESQL_TRIGGERS:
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRESQL_DROPS:
            op.execute(statement)
    # ### commands auto generated by Alembic - please adjust! ###
    with op.batch_alter_table("ledger_entry", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_entry_transaction_id"))
        batch_op.drop_index("ix_ledger_entry_account_id")

    op.drop_table("ledger_entry")
    with op.batch_alter_table("ledger_transaction", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_transaction_reference")
        batch_op.drop_index("ix_ledger_transaction_created_at")

    op.drop_table("ledger_transaction")
    with op.batch_alter_table("ledger_account", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_account_purpose_currency")
        batch_op.drop_index("ix_ledger_account_holder_currency")

    op.drop_table("ledger_account")
    op.drop_table("ledger_chain")
    # ### end Alembic commands ###
