"""The ledger's tables: accounts, transactions, entries and the head of the hash chain.

- An **account** belongs to the platform (one per purpose and currency) or to a holder (a
  customer's receivable or wallet, a seller's pending and available balances). Its ``balance``
  is a cache of its entries, kept on the account's *normal side*: debits minus credits for assets
  and expenses, credits minus debits for liabilities, income and equity. So a holder account
  that may not go below zero is simply ``balance >= 0``, whatever its kind.
- A **transaction** is one balanced posting: an operation (the "why", as TigerBeetle's ``code``),
  a nonce unique per operation, what it refers to, a memo and an actor. It is append-only and
  chained: ``hash`` covers its canonical content and the previous transaction's hash
  (:mod:`.chain`).
- An **entry** is one leg: exactly one of ``debit`` and ``credit`` is positive, and
  ``balance_after`` is the account's balance once the entry is applied.

On PostgreSQL the migration adds what the ORM cannot say: a deferred constraint trigger that
refuses an unbalanced transaction at commit, and triggers that refuse UPDATE and DELETE of
transactions and entries (and any change to an account but its balance).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow

MONEY = Numeric(18, 2)
ACCOUNT_KINDS = ("asset", "liability", "income", "expense", "equity")
#: Kinds whose balance grows with debits; the others grow with credits.
DEBIT_NORMAL = frozenset({"asset", "expense"})


def _one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    return CheckConstraint(f"{column} IN ({', '.join(repr(v) for v in values)})", name=column)


class Account(Base):
    __tablename__ = "ledger_account"
    __table_args__ = (
        _one_of("kind", ACCOUNT_KINDS),
        CheckConstraint("allow_negative OR balance >= 0", name="balance_not_negative"),
        Index("ix_ledger_account_holder_currency", "holder_id", "currency"),
        Index("ix_ledger_account_purpose_currency", "purpose", "currency"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    #: ``purpose:currency`` or ``purpose:currency:holder id``: how postings find the account.
    code: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    holder_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    allow_negative: Mapped[bool] = mapped_column()
    balance: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0.00"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Transaction(Base):
    __tablename__ = "ledger_transaction"
    __table_args__ = (
        UniqueConstraint("operation", "nonce"),
        Index("ix_ledger_transaction_created_at", "created_at"),
        Index("ix_ledger_transaction_reference", "reference"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    #: ``LT/YYYY/NNNNN``: gap-free per year, in chain order.
    number: Mapped[str] = mapped_column(String(32), unique=True)
    #: 1, 2, 3...: the transaction's place in the hash chain.
    chain_index: Mapped[int] = mapped_column(BigInteger, unique=True)
    operation: Mapped[str] = mapped_column(String(40))
    nonce: Mapped[str] = mapped_column(String(200))
    #: SHA-256 of the canonical request: the same nonce with another request is refused.
    fingerprint: Mapped[str] = mapped_column(String(64))
    #: What caused it, e.g. ``invoice:<uuid>``.
    reference: Mapped[str | None] = mapped_column(String(120))
    memo: Mapped[str | None] = mapped_column(String(500))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    #: The transaction this one reverses (a correction), if any.
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transaction.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: ``$<version>$<hex sha256>`` of the previous hash and this transaction's canonical content.
    hash: Mapped[str] = mapped_column(String(80))


class Entry(Base):
    __tablename__ = "ledger_entry"
    __table_args__ = (
        CheckConstraint("debit >= 0", name="debit_not_negative"),
        CheckConstraint("credit >= 0", name="credit_not_negative"),
        CheckConstraint("(debit > 0) <> (credit > 0)", name="one_side"),
        # A statement: an account's entries in posting order.
        Index("ix_ledger_entry_account_id", "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transaction.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_account.id"))
    currency: Mapped[str] = mapped_column(String(3))
    debit: Mapped[Decimal] = mapped_column(MONEY)
    credit: Mapped[Decimal] = mapped_column(MONEY)
    balance_after: Mapped[Decimal] = mapped_column(MONEY)


class ChainHead(Base):
    """One row: the last transaction of the hash chain. Its row lock orders all postings."""

    __tablename__ = "ledger_chain"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    last_index: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(80))
    #: The year of the last transaction's number, and how many the year has had.
    year: Mapped[int] = mapped_column(Integer)
    year_count: Mapped[int] = mapped_column(Integer)
