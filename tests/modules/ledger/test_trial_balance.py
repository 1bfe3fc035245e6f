"""The trial balance equals an independent recomputation, at any moment, to the cent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from flask.testing import FlaskClient

from tests.modules.conftest import Caller
from tests.servers import Services

from .conftest import D, assert_problem, get, ok, post_tx, simple, sql

ZERO = D("0.00")


def balances_by_sql(services: Services, at: datetime) -> dict[str, tuple[Decimal, Decimal]]:
    """Account uuid -> (debit balance, credit balance) from raw sums of entries."""
    rows = sql(
        services,
        "SELECT a.uuid::text, sum(e.debit) - sum(e.credit) FROM ledger_entry e"
        " JOIN ledger_transaction t ON t.id = e.transaction_id"
        " JOIN ledger_account a ON a.id = e.account_id"
        " WHERE t.created_at <= %s GROUP BY a.uuid",
        at,
    )
    return {uuid: (net if net > 0 else ZERO, -net if net < 0 else ZERO) for uuid, net in rows}


def by_account(trial: dict[str, Any]) -> dict[str, tuple[Decimal, Decimal]]:
    return {line["account"]: (D(line["debit"]), D(line["credit"])) for line in trial["accounts"]}


def assert_balances(trial: dict[str, Any]) -> None:
    """Per currency, debits equal credits, and the totals are the lines' sums."""
    for total in trial["totals"]:
        lines = [line for line in trial["accounts"] if line["currency"] == total["currency"]]
        assert D(total["debit"]) == sum((D(line["debit"]) for line in lines), ZERO)
        assert D(total["credit"]) == sum((D(line["credit"]) for line in lines), ZERO)
        assert total["debit"] == total["credit"], total
    assert {line["currency"] for line in trial["accounts"]} == {
        total["currency"] for total in trial["totals"]
    }


def test_the_trial_balance_equals_sql_at_any_moment_and_balances(
    client: FlaskClient,
    staff: Caller,
    log_in_as: Callable[..., Caller],
    make_user: Callable[..., Any],
    services: Services,
) -> None:
    before_anything = datetime.now(UTC)
    alice, bob = log_in_as("customer"), log_in_as("customer")
    _, seller, _ = make_user(role="seller")
    # Cents that a float would not add exactly, and an amount near the column's limit.
    for n, amount in enumerate(["0.10", "0.20", "0.70", "1234567890123.45"]):
        ok(post_tx(client, staff, simple("CREDIT_ADD", alice.uuid, amount, f"a-{n}")))
    ok(post_tx(client, staff, simple("SIGNUP_CREDIT", bob.uuid, "10.00", "b-1")))
    ok(post_tx(client, staff, {**simple("DAILY_REWARD", bob.uuid, "0.01", "usd"),
                               "currency": "USD"}))  # fmt: skip
    between = datetime.now(UTC)
    ok(post_tx(client, staff, simple("CREDIT_SPEND", alice.uuid, "0.30", "a-spend")))
    adjustment = {
        "operation": "ADJUSTMENT",
        "nonce": "adj",
        "currency": "IDR",
        "legs": [
            {"purpose": "adjustment", "debit": "99.99"},
            {"purpose": "seller_available", "holder": str(seller), "credit": "33.33"},
            {"purpose": "wallet", "holder": str(bob.uuid), "credit": "66.66"},
        ],
    }
    ok(post_tx(client, staff, adjustment))

    now = ok(get(client, staff, "/trial-balance"), 200)
    earlier = ok(get(client, staff, "/trial-balance", at=between.isoformat()), 200)
    empty = ok(get(client, staff, "/trial-balance", at=before_anything.isoformat()), 200)

    assert by_account(now) == balances_by_sql(services, datetime.now(UTC))
    assert by_account(earlier) == balances_by_sql(services, between)
    assert by_account(earlier) != by_account(now)
    assert empty == {"at": empty["at"], "currency": None, "accounts": [], "totals": []}
    for trial in (now, earlier):
        assert_balances(trial)
    assert now["totals"] == [
        {"currency": "IDR", "debit": "1234567890234.44", "credit": "1234567890234.44"},
        {"currency": "USD", "debit": "0.01", "credit": "0.01"},
    ]
    # Now, each account's line is its cached balance, on the side its kind keeps it.
    cached = dict(sql(services, "SELECT uuid::text, balance FROM ledger_account"))
    kinds = {line["account"]: line["kind"] for line in now["accounts"]}
    for account, (debit, credit) in by_account(now).items():
        normal = debit - credit if kinds[account] in ("asset", "expense") else credit - debit
        assert normal == cached[account], account
    lines = {(line["purpose"], line["holder"], line["currency"]): line for line in now["accounts"]}
    assert lines[("wallet", str(alice.uuid), "IDR")]["credit"] == "1234567890124.15"
    assert lines[("adjustment", None, "IDR")]["debit"] == "99.99"
    assert lines[("promotion_expense", None, "USD")]["debit"] == "0.01"


def test_the_trial_balance_of_one_currency(
    client: FlaskClient, staff: Caller, customer: Caller
) -> None:
    ok(post_tx(client, staff, simple("CREDIT_ADD", customer.uuid, "5.00", "idr")))
    ok(post_tx(client, staff, {**simple("CREDIT_ADD", customer.uuid, "7.00", "usd"),
                               "currency": "USD"}))  # fmt: skip

    usd = ok(get(client, staff, "/trial-balance", currency="USD"), 200)

    assert usd["currency"] == "USD"
    assert {line["currency"] for line in usd["accounts"]} == {"USD"}
    assert usd["totals"] == [{"currency": "USD", "debit": "7.00", "credit": "7.00"}]


def test_the_trial_balance_refuses_a_moment_that_is_not_one(
    client: FlaskClient, admin: Caller
) -> None:
    for at in ("yesterday", "2026-13-01T00:00:00Z", "2026-11-29"):
        problem = assert_problem(get(client, admin, "/trial-balance", at=at), 422)
        assert "at" in problem["errors"]
