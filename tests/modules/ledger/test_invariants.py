"""The database refuses what the service refuses, with the service out of the way (hordak style).

Every statement here is raw SQL through psycopg as the application's own role: no ORM, no
posting service. Each shows one rule of the ledger holding at the database: the journal is
append-only, a transaction balances and has two legs or more (checked at COMMIT by deferred
constraint triggers, so each INSERT on its own succeeds), an account keeps what it is, and a
holder's balance never goes below zero.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from flask import Flask

from app.db import transaction
from modules.ledger.posting import post
from modules.user.services import create_user
from tests.servers import Services

from .conftest import D, primary_dsn, sql
from .test_posting import credit

JOURNAL = ("ledger_entry", "ledger_transaction")


@pytest.fixture
def ledger(app: Flask, services: Services) -> dict[str, int]:
    """One posted transaction: a customer's wallet credited 100.00. Ids of its rows."""
    with app.app_context():
        customer = create_user("c@example.test", role="customer", password=None).id
        with transaction():
            posted = post(credit(customer, "100.00", "n1"))
    accounts = dict(sql(services, "SELECT purpose, id FROM ledger_account"))
    return {
        "transaction": posted.id,
        "wallet": accounts["wallet"],
        "clearing": accounts["manual_clearing"],
    }


@pytest.fixture
def raw(services: Services) -> Iterator[psycopg.Connection]:
    """A connection in a transaction of its own (not autocommit): COMMIT is where it fails."""
    with psycopg.connect(primary_dsn(services)) as connection:
        yield connection


@pytest.mark.parametrize("table", JOURNAL)
@pytest.mark.parametrize(
    "statement",
    ["UPDATE {table} SET id = id", "DELETE FROM {table}"],
    ids=["update", "delete"],
)
def test_the_journal_refuses_update_and_delete(
    ledger: dict[str, int], services: Services, table: str, statement: str
) -> None:
    with (
        psycopg.connect(primary_dsn(services), autocommit=True) as connection,
        pytest.raises(psycopg.errors.RestrictViolation, match="append-only"),
    ):
        connection.execute(statement.format(table=table))

    assert sql(services, f"SELECT count(*) FROM {table}")[0][0] >= 1  # noqa: S608


def _raw_transaction(connection: psycopg.Connection, nonce: str) -> int:
    return connection.execute(
        "INSERT INTO ledger_transaction (uuid, number, chain_index, operation, nonce, fingerprint,"
        " created_at, hash) VALUES (%s, %s, %s, 'ADJUSTMENT', %s, 'raw', now(), 'raw')"
        " RETURNING id",
        (uuid.uuid4(), f"RAW/{nonce}", 1000 + len(nonce), nonce),
    ).fetchone()[0]


def _raw_entry(
    connection: psycopg.Connection, transaction_id: int, account_id: int, debit: str, credit: str
) -> None:
    connection.execute(
        "INSERT INTO ledger_entry (transaction_id, account_id, currency, debit, credit,"
        " balance_after) VALUES (%s, %s, 'IDR', %s, %s, 0)",
        (transaction_id, account_id, D(debit), D(credit)),
    )


def test_an_unbalanced_transaction_fails_at_commit_though_each_insert_succeeded(
    ledger: dict[str, int], raw: psycopg.Connection, services: Services
) -> None:
    transaction_id = _raw_transaction(raw, "unbalanced")
    _raw_entry(raw, transaction_id, ledger["clearing"], "100.00", "0")
    _raw_entry(raw, transaction_id, ledger["wallet"], "0", "90.00")  # each INSERT is accepted

    with pytest.raises(psycopg.errors.CheckViolation, match="does not balance in IDR"):
        raw.commit()

    assert sql(services, "SELECT count(*) FROM ledger_transaction")[0][0] == 1
    assert sql(services, "SELECT count(*) FROM ledger_entry")[0][0] == 2


@pytest.mark.parametrize("legs", [0, 1])
def test_a_transaction_with_fewer_than_two_legs_fails_at_commit(
    ledger: dict[str, int], raw: psycopg.Connection, services: Services, legs: int
) -> None:
    transaction_id = _raw_transaction(raw, f"legs-{legs}")
    if legs:
        _raw_entry(raw, transaction_id, ledger["clearing"], "1.00", "0")

    with pytest.raises(psycopg.errors.CheckViolation, match=r"leg\(s\)|does not balance"):
        raw.commit()

    assert sql(services, "SELECT count(*) FROM ledger_transaction")[0][0] == 1


def test_a_balanced_raw_transaction_is_accepted(
    ledger: dict[str, int], raw: psycopg.Connection, services: Services
) -> None:
    """The control: the triggers refuse what is wrong, not every write behind the service."""
    transaction_id = _raw_transaction(raw, "balanced")
    _raw_entry(raw, transaction_id, ledger["clearing"], "5.00", "0")
    _raw_entry(raw, transaction_id, ledger["wallet"], "0", "3.00")
    _raw_entry(raw, transaction_id, ledger["wallet"], "0", "2.00")

    raw.commit()

    assert sql(services, "SELECT count(*) FROM ledger_transaction")[0][0] == 2


@pytest.mark.parametrize(
    "change",
    [
        "code = code || ':x'",
        "kind = 'asset'",
        "purpose = 'adjustment'",
        "currency = 'USD'",
        "holder_id = NULL",
        "allow_negative = true",
        "uuid = '00000000-0000-0000-0000-000000000000'",
    ],
)
def test_an_account_keeps_what_it_is(
    ledger: dict[str, int], services: Services, change: str
) -> None:
    with (
        psycopg.connect(primary_dsn(services), autocommit=True) as connection,
        pytest.raises(psycopg.errors.RestrictViolation, match="keeps what it is"),
    ):
        connection.execute(f"UPDATE ledger_account SET {change} WHERE id = %s", (ledger["wallet"],))  # noqa: S608


def test_an_account_cannot_be_deleted(ledger: dict[str, int], services: Services) -> None:
    with (
        psycopg.connect(primary_dsn(services), autocommit=True) as connection,
        pytest.raises(psycopg.errors.RestrictViolation),
    ):
        connection.execute("DELETE FROM ledger_account WHERE id = %s", (ledger["wallet"],))


def test_a_holder_account_never_goes_below_zero_a_platform_account_may(
    ledger: dict[str, int], services: Services
) -> None:
    with (
        psycopg.connect(primary_dsn(services), autocommit=True) as connection,
        pytest.raises(psycopg.errors.CheckViolation, match="balance_not_negative"),
    ):
        connection.execute(
            "UPDATE ledger_account SET balance = -0.01 WHERE id = %s", (ledger["wallet"],)
        )

    sql(services, "UPDATE ledger_account SET balance = -1 WHERE id = %s", ledger["clearing"])
    assert sql(services, "SELECT balance FROM ledger_account WHERE id = %s", ledger["wallet"]) == [
        (D("100.00"),)
    ]


@pytest.mark.parametrize(
    "change",
    ["debit = -1, credit = 0", "debit = 1, credit = 1", "debit = 0, credit = 0"],
    ids=["negative", "both-sides", "neither-side"],
)
def test_an_entry_is_exactly_one_positive_side(
    ledger: dict[str, int], raw: psycopg.Connection, change: str
) -> None:
    transaction_id = _raw_transaction(raw, "sides")
    debit, credit = (part.split("=")[1].strip() for part in change.split(","))
    with pytest.raises(psycopg.errors.CheckViolation):
        _raw_entry(raw, transaction_id, ledger["clearing"], debit, credit)


def test_on_sqlite_the_journal_is_append_only_too(
    make_embedded_app: Callable[..., Flask], tmp_path: Path
) -> None:
    import sqlite3

    app = make_embedded_app()
    with app.app_context():
        customer = create_user("c@example.test", role="customer", password=None).id
        with transaction():
            post(credit(customer, "1.00", "n1"))
    with sqlite3.connect(tmp_path / "lapak.db") as connection:
        for table in JOURNAL:
            for statement in (f"UPDATE {table} SET id = id", f"DELETE FROM {table}"):  # noqa: S608
                with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                    connection.execute(statement)
