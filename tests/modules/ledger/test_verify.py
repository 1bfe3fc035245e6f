"""``lapak ledger verify`` names the first row altered behind the triggers' back.

The ledger is built through the posting service, then altered as the superuser with the
triggers off (``session_replication_role = replica``), the way someone with the database's keys
could; the command, run through click with the app, must exit 1 naming that row.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from app.db import transaction
from modules.ledger.posting import post
from modules.user.services import create_user
from tests.servers import Services

from .conftest import behind_the_triggers, sql
from .test_posting import credit, spend


@pytest.fixture
def ledger(app: Flask, services: Services) -> dict[str, Any]:
    """Three transactions on one wallet: +100.00, -30.00, +5.00."""
    with app.app_context():
        customer = create_user("c@example.test", role="customer", password=None).id
        numbers = []
        for posting in (
            credit(customer, "100.00", "n1"),
            spend(customer, "30.00", "n2"),
            credit(customer, "5.00", "n3"),
        ):
            with transaction():
                numbers.append(post(posting).number)
    wallet_id, wallet_code = sql(
        services, "SELECT id, code FROM ledger_account WHERE purpose = 'wallet'"
    )[0]
    return {"numbers": numbers, "wallet_id": wallet_id, "wallet_code": wallet_code}


def run_verify(app: Flask) -> Any:
    return app.test_cli_runner().invoke(args=["ledger", "verify"])


def first_bad_row(output: str) -> str:
    (line,) = [line for line in output.splitlines() if line.startswith("first bad row: ")]
    return line


def test_a_clean_ledger_verifies(app: Flask, ledger: dict[str, Any]) -> None:
    result = run_verify(app)

    assert result.exit_code == 0, result.output
    assert "3 transactions, 6 entries, 3 accounts checked" in result.output
    assert "the ledger is consistent" in result.output


def test_an_entry_amount_changed_is_named(
    app: Flask, ledger: dict[str, Any], services: Services
) -> None:
    second = ledger["numbers"][1]
    entry_id = sql(
        services,
        "SELECT e.id FROM ledger_entry e JOIN ledger_transaction t ON t.id = e.transaction_id"
        " WHERE t.number = %s AND e.account_id = %s",
        second,
        ledger["wallet_id"],
    )[0][0]
    with behind_the_triggers(services) as connection:
        connection.execute("UPDATE ledger_entry SET debit = 20.00 WHERE id = %s", (entry_id,))

    result = run_verify(app)

    assert result.exit_code == 1, result.output
    bad = first_bad_row(result.output)
    assert f"entry {entry_id} of transaction {second}" in bad, bad
    assert "chain breaks: 1" in result.output


def test_a_memo_changed_breaks_the_chain_there(
    app: Flask, ledger: dict[str, Any], services: Services
) -> None:
    second = ledger["numbers"][1]
    with behind_the_triggers(services) as connection:
        connection.execute(
            "UPDATE ledger_transaction SET memo = 'nothing to see' WHERE number = %s", (second,)
        )

    result = run_verify(app)

    assert result.exit_code == 1, result.output
    bad = first_bad_row(result.output)
    assert f"transaction {second}" in bad, bad
    assert "hash does not match" in bad
    # Only that transaction: the next one still chains to the stored hash.
    assert "chain breaks: 1;" in result.output


def test_a_cached_balance_changed_is_named(
    app: Flask, ledger: dict[str, Any], services: Services
) -> None:
    with behind_the_triggers(services) as connection:
        connection.execute(
            "UPDATE ledger_account SET balance = 1000.00 WHERE id = %s", (ledger["wallet_id"],)
        )

    result = run_verify(app)

    assert result.exit_code == 1, result.output
    bad = first_bad_row(result.output)
    assert f"account {ledger['wallet_code']} (id {ledger['wallet_id']})" in bad, bad
    assert "cached balance 1000.00, its entries sum to 75.00" in bad


def _delete(connection: Any, number: str) -> None:
    connection.execute(
        "DELETE FROM ledger_entry WHERE transaction_id ="
        " (SELECT id FROM ledger_transaction WHERE number = %s)",
        (number,),
    )
    connection.execute("DELETE FROM ledger_transaction WHERE number = %s", (number,))


def test_a_deleted_transaction_is_a_gap_in_the_chain(
    app: Flask, ledger: dict[str, Any], services: Services
) -> None:
    second, third = ledger["numbers"][1:]
    with behind_the_triggers(services) as connection:
        _delete(connection, second)

    result = run_verify(app)

    assert result.exit_code == 1, result.output
    bad = first_bad_row(result.output)
    assert f"transaction {third}" in bad, bad
    assert "chain position 3, expected 2" in bad


def test_the_newest_transaction_cut_off_with_balances_restored_is_found(
    app: Flask, ledger: dict[str, Any], services: Services
) -> None:
    with behind_the_triggers(services) as connection:
        _delete(connection, ledger["numbers"][2])
        connection.execute(
            "UPDATE ledger_account a SET balance = coalesce((SELECT e.balance_after"
            " FROM ledger_entry e WHERE e.account_id = a.id ORDER BY e.id DESC LIMIT 1), 0)"
        )

    result = run_verify(app)

    assert result.exit_code == 1, result.output
    bad = first_bad_row(result.output)
    assert "chain head names transaction 3 of the chain, the journal ends at 2" in bad, bad


def test_an_account_given_to_another_holder_or_allowed_below_zero_is_named(
    app: Flask, ledger: dict[str, Any], services: Services
) -> None:
    with app.app_context():
        other = create_user("o@example.test", role="customer", password=None).id
    with behind_the_triggers(services) as connection:
        connection.execute(
            "UPDATE ledger_account SET holder_id = %s WHERE id = %s", (other, ledger["wallet_id"])
        )

    moved = run_verify(app)

    assert moved.exit_code == 1, moved.output
    assert f"account {ledger['wallet_code']} (id {ledger['wallet_id']})" in first_bad_row(
        moved.output
    )
    assert "accounts not as the chart says: 1" in moved.output

    with behind_the_triggers(services) as connection:
        connection.execute(
            "UPDATE ledger_account SET holder_id = (SELECT holder_id FROM ledger_account a"
            " WHERE a.id <> ledger_account.id AND a.purpose = 'wallet' LIMIT 1),"
            " allow_negative = true WHERE id = %s",
            (ledger["wallet_id"],),
        )
    assert "accounts not as the chart says: 1" in run_verify(app).output


def test_a_fingerprint_changed_is_named(
    app: Flask, ledger: dict[str, Any], services: Services
) -> None:
    first = ledger["numbers"][0]
    with behind_the_triggers(services) as connection:
        # Another fingerprint would turn a retry of this request into a duplicate-nonce.
        connection.execute(
            "UPDATE ledger_transaction SET fingerprint = repeat('0', 64) WHERE number = %s",
            (first,),
        )

    result = run_verify(app)

    assert result.exit_code == 1, result.output
    assert f"transaction {first}" in first_bad_row(result.output)
