"""``/api/v1/ledger`` over HTTP: posting by hand, replays, refusals, reading what one may see."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.db import transaction
from modules.ledger.operations import Operation
from modules.ledger.registry import KEY
from modules.user.services import create_user, deactivate_user
from tests.modules.conftest import PASSWORD, Caller, bearer, login
from tests.servers import Services

from .conftest import API, D, assert_problem, count, get, ok, post_tx, simple, sql

WRITTEN = ("ledger_transaction", "ledger_entry", "ledger_account")


def written(services: Services) -> dict[str, int]:
    return {table: count(services, table) for table in WRITTEN}


def test_staff_credit_a_wallet_and_everyone_reads_it_back(
    client: FlaskClient, staff: Caller, customer: Caller
) -> None:
    body = simple("CREDIT_ADD", customer.uuid, "150.00", "top-up-1",
                  memo="cash at the counter", reference="RCPT-1")  # fmt: skip
    response = post_tx(client, staff, body)

    body = ok(response, 201)
    assert response.headers["Location"].endswith(f"{API}/transactions/{body['id']}")
    assert body["number"].startswith("LT/")
    assert body["number"].endswith("/00001")
    assert body["operation"] == "CREDIT_ADD"
    assert body["nonce"] == "top-up-1"
    assert body["memo"] == "cash at the counter"
    assert body["reference"] == "RCPT-1"
    assert body["actor"] == str(staff.uuid)
    assert body["replayed"] is False
    assert body["hash"].startswith("$1$")
    debit, credit = body["entries"]
    assert (debit["purpose"], debit["holder"], debit["debit"], debit["credit"]) == (
        "manual_clearing", None, "150.00", "0.00")  # fmt: skip
    assert (credit["purpose"], credit["holder"], credit["credit"], credit["balance_after"]) == (
        "wallet", str(customer.uuid), "150.00", "150.00")  # fmt: skip
    assert {e["currency"] for e in body["entries"]} == {"IDR"}

    shown = ok(client.get(response.headers["Location"], headers=staff.headers), 200)
    assert shown == {**body, "replayed": False}

    # The customer: their wallet only, its balance and statement, and the transaction.
    accounts = ok(get(client, customer, "/accounts"), 200)
    assert [(a["purpose"], a["holder"], a["balance"]) for a in accounts["items"]] == [
        ("wallet", str(customer.uuid), "150.00")
    ]
    wallet = accounts["items"][0]
    assert wallet["id"] == credit["account"]
    assert ok(get(client, customer, f"/accounts/{wallet['id']}"), 200)["balance"] == "150.00"
    statement = ok(get(client, customer, f"/accounts/{wallet['id']}/entries"), 200)
    assert statement["next_cursor"] is None
    assert statement["items"] == [
        {
            "transaction": body["id"],
            "number": body["number"],
            "operation": "CREDIT_ADD",
            "created_at": body["created_at"],
            "debit": "0.00",
            "credit": "150.00",
            "balance_after": "150.00",
        }
    ]
    seen = ok(get(client, customer, f"/transactions/{body['id']}"), 200)
    # Their own leg only: another leg's amount could tell another holder's balance.
    assert seen["entries"] == [credit]
    assert debit not in seen["entries"]
    assert seen["actor"] is None


def test_the_same_nonce_and_body_replays_another_body_is_a_conflict(
    client: FlaskClient, staff: Caller, admin: Caller, customer: Caller, services: Services
) -> None:
    body = simple("SIGNUP_CREDIT", customer.uuid, "25.00", "welcome")
    first = ok(post_tx(client, staff, body), 201)

    again = post_tx(client, admin, body)  # another staff member: the same request all the same
    replayed = ok(again, 200)
    assert replayed == {**first, "replayed": True}
    assert again.headers["Location"].endswith(f"/transactions/{first['id']}")

    other = assert_problem(post_tx(client, staff, {**body, "amount": "26.00"}), 409,
                           "duplicate-nonce")  # fmt: skip
    assert "nonce" in other["detail"]
    assert other["transaction"] == first["id"]  # where to look: the first use of the nonce
    assert count(services, "ledger_transaction") == 1
    # A nonce belongs to its operation: the same one under another is a new transaction.
    ok(post_tx(client, staff, {**body, "operation": "DAILY_REWARD"}), 201)


def test_a_request_posted_before_its_holder_was_deactivated_still_replays(
    app: Flask, client: FlaskClient, staff: Caller, customer: Caller
) -> None:
    body = simple("CREDIT_ADD", customer.uuid, "3.00", "before")
    first = ok(post_tx(client, staff, body), 201)
    with app.app_context():
        deactivate_user(customer.uuid)

    assert ok(post_tx(client, staff, body), 200) == {**first, "replayed": True}
    assert_problem(post_tx(client, staff, {**body, "amount": "4.00"}), 409, "duplicate-nonce")
    refused = post_tx(client, staff, {**body, "nonce": "after"})
    assert assert_problem(refused, 422, "invalid-holder")["errors"] == {"holder": ["not active"]}


def test_an_adjustment_posts_explicit_legs(
    client: FlaskClient, staff: Caller, make_user: Callable[..., tuple[int, uuid.UUID, str]]
) -> None:
    _, seller, _ = make_user(role="seller")
    body = {
        "operation": "ADJUSTMENT",
        "nonce": "fix-1",
        "currency": "USD",
        "memo": "seller paid by hand",
        "legs": [
            {"purpose": "adjustment", "debit": "10.50"},
            {"purpose": "seller_available", "holder": str(seller), "credit": "10.50"},
        ],
    }

    posted = ok(post_tx(client, staff, body), 201)

    assert [(e["purpose"], e["debit"], e["credit"], e["currency"]) for e in posted["entries"]] == [
        ("adjustment", "10.50", "0.00", "USD"),
        ("seller_available", "0.00", "10.50", "USD"),
    ]
    # equity on its normal (credit) side: a debit takes it below zero, which it may.
    assert posted["entries"][0]["balance_after"] == "-10.50"
    accounts = ok(get(client, staff, "/accounts", holder=str(seller)), 200)["items"]
    assert [(a["purpose"], a["currency"], a["balance"]) for a in accounts] == [
        ("seller_available", "USD", "10.50")
    ]


def test_a_spend_beyond_the_balance_is_refused_and_writes_nothing(
    client: FlaskClient, staff: Caller, customer: Caller, services: Services
) -> None:
    ok(post_tx(client, staff, simple("CREDIT_ADD", customer.uuid, "10.00", "in")), 201)
    before = written(services)

    refused = assert_problem(
        post_tx(client, staff, simple("CREDIT_SPEND", customer.uuid, "10.01", "out")),
        422,
        "insufficient-balance",
    )

    assert refused["available"] == "10.00"
    assert refused["currency"] == "IDR"
    assert written(services) == before
    spent = ok(post_tx(client, staff, simple("CREDIT_SPEND", customer.uuid, "10.00", "out")))
    assert spent["entries"][0]["balance_after"] == "0.00"


def test_refusals_name_the_field_and_write_nothing(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    customer: Caller,
    make_user: Callable[..., tuple[int, uuid.UUID, str]],
    services: Services,
) -> None:
    system_only = Operation(
        "SYSTEM_ONLY",
        "posted by Lapak itself",
        frozenset({"manual_clearing"}),
        frozenset({"wallet"}),
    )
    app.extensions[KEY].add(operations=[system_only])
    _, seller, _ = make_user(role="seller")
    _, staff_member, _ = make_user(role="staff")
    _, inactive, _ = make_user(role="customer", active=False)
    adjustment = {
        "operation": "ADJUSTMENT",
        "nonce": "adj",
        "currency": "IDR",
        "legs": [
            {"purpose": "adjustment", "debit": "1.00"},
            {"purpose": "manual_clearing", "credit": "1.00"},
        ],
    }
    cases = [
        (simple("NOPE", customer.uuid, "1", "a"), "invalid-operation", "operation"),
        (simple("SYSTEM_ONLY", customer.uuid, "1", "b"), "invalid-operation", "operation"),
        (simple("CREDIT_ADD", seller, "1", "c"), "invalid-holder", "holder"),
        (simple("CREDIT_ADD", staff_member, "1", "d"), "invalid-holder", "holder"),
        (simple("CREDIT_ADD", inactive, "1", "e"), "invalid-holder", "holder"),
        (simple("CREDIT_ADD", uuid.uuid4(), "1", "f"), "invalid-holder", "holder"),
        (simple("CREDIT_ADD", customer.uuid, "0", "g"), "invalid-operation", "amount"),
        ({**simple("CREDIT_ADD", customer.uuid, "1", "h"), "amount": None}, "invalid-operation",
         "amount"),
        ({**adjustment, "legs": None}, "invalid-operation", "legs"),
        ({**adjustment, "holder": str(customer.uuid)}, "invalid-operation", "legs"),
        ({**adjustment, "legs": [{**adjustment["legs"][0], "credit": "1.00"},
                                 adjustment["legs"][1]]}, "invalid-operation", "legs.0"),
        ({**adjustment, "legs": [adjustment["legs"][0], {**adjustment["legs"][1],
                                                         "credit": "2.00"}]},
         "invalid-operation", "legs"),
        ({**adjustment, "legs": [{"purpose": "nope", "debit": "1.00"}, adjustment["legs"][1]]},
         "invalid-operation", "legs.0.purpose"),
        ({**adjustment, "legs": [{**adjustment["legs"][0], "holder": str(customer.uuid)},
                                 adjustment["legs"][1]]}, "invalid-operation", "legs.0.holder"),
        ({**adjustment, "legs": [adjustment["legs"][0], {"purpose": "wallet", "credit": "1.00"}]},
         "invalid-operation", "legs.1.holder"),
        ({**adjustment, "legs": [adjustment["legs"][0], {"purpose": "wallet", "credit": "1.00",
                                                         "holder": str(seller)}]},
         "invalid-holder", "legs.1.holder"),
        ({**adjustment, "legs": [{"purpose": "commission_income", "debit": "1.00"},
                                 adjustment["legs"][1]]}, "invalid-operation", "legs.0.purpose"),
        ({**adjustment, "nonce": "x" * 201}, "validation-failed", "nonce"),
        ({**adjustment, "nonce": "tab\there"}, "invalid-operation", "nonce"),
        ({**adjustment, "currency": "idr"}, "validation-failed", "currency"),
        ({**adjustment, "extra": 1}, "validation-failed", "extra"),
        ({**simple("CREDIT_ADD", customer.uuid, "1", "i"), "amount": 1.5}, "validation-failed",
         "amount"),
    ]  # fmt: skip
    for body, code, field in cases:
        problem = assert_problem(post_tx(client, staff, body), 422, code)
        assert field in problem["errors"], (body, problem)

    assert written(services) == {table: 0 for table in written(services)}


@pytest.mark.parametrize("role", ["customer", "seller"])
def test_only_staff_post_and_see_the_trial_balance(
    client: FlaskClient, log_in_as: Callable[..., Caller], role: str, services: Services
) -> None:
    caller = log_in_as(role)

    assert_problem(post_tx(client, caller, simple("CREDIT_ADD", caller.uuid, "1", "n")), 403)
    assert_problem(get(client, caller, "/trial-balance"), 403)
    assert count(services, "ledger_transaction") == 0


def test_customers_and_sellers_see_only_their_own_accounts(
    client: FlaskClient,
    staff: Caller,
    log_in_as: Callable[..., Caller],
) -> None:
    alice, bob, seller = log_in_as("customer"), log_in_as("customer"), log_in_as("seller")
    ok(post_tx(client, staff, simple("CREDIT_ADD", alice.uuid, "5.00", "a")))
    bobs = ok(post_tx(client, staff, simple("CREDIT_ADD", bob.uuid, "7.00", "b")))
    bob_wallet = bobs["entries"][1]["account"]
    platform = bobs["entries"][0]["account"]

    for caller in (alice, seller):
        for path in (f"/accounts/{bob_wallet}", f"/accounts/{bob_wallet}/entries",
                     f"/accounts/{platform}", f"/transactions/{bobs['id']}"):  # fmt: skip
            assert_problem(get(client, caller, path), 404, "not-found")
        # Filtering by someone else's id finds nothing rather than their accounts.
        assert ok(get(client, caller, "/accounts", holder=str(bob.uuid)), 200)["items"] == []
    assert [a["balance"] for a in ok(get(client, alice, "/accounts"), 200)["items"]] == ["5.00"]
    assert ok(get(client, seller, "/accounts"), 200)["items"] == []
    # Staff see everything: both wallets and the platform's account.
    everything = ok(get(client, staff, "/accounts"), 200)["items"]
    assert sorted(a["purpose"] for a in everything) == ["manual_clearing", "wallet", "wallet"]
    assert ok(get(client, staff, f"/accounts/{platform}"), 200)["balance"] == "12.00"
    assert_problem(get(client, staff, f"/accounts/{uuid.uuid4()}"), 404)
    assert_problem(get(client, staff, f"/transactions/{uuid.uuid4()}"), 404)


def test_accounts_filter_and_page(
    client: FlaskClient, staff: Caller, log_in_as: Callable[..., Caller]
) -> None:
    customers = [log_in_as("customer") for _ in range(3)]
    for index, caller in enumerate(customers):
        ok(post_tx(client, staff, simple("CREDIT_ADD", caller.uuid, "1.00", f"idr-{index}")))
    ok(post_tx(client, staff, {**simple("CREDIT_ADD", customers[0].uuid, "2.00", "usd"),
                               "currency": "USD"}))  # fmt: skip

    wallets = ok(get(client, staff, "/accounts", purpose="wallet", currency="IDR"), 200)
    assert [a["holder"] for a in wallets["items"]] == [str(c.uuid) for c in customers]
    first = get(client, staff, "/accounts", limit=2)
    page = ok(first, 200)
    assert len(page["items"]) == 2
    assert 'rel="next"' in first.headers["Link"]
    rest = ok(get(client, staff, "/accounts", limit=2, cursor=page["next_cursor"]), 200)
    rest2 = ok(get(client, staff, "/accounts", limit=2, cursor=rest["next_cursor"]), 200)
    seen = [a["id"] for a in page["items"] + rest["items"] + rest2["items"]]
    assert len(seen) == len(set(seen)) == 6  # 4 wallets, manual_clearing in IDR and USD
    assert rest2["next_cursor"] is None
    usd = ok(get(client, staff, "/accounts", holder=str(customers[0].uuid), currency="USD"), 200)
    assert [(a["purpose"], a["balance"]) for a in usd["items"]] == [("wallet", "2.00")]
    assert_problem(get(client, staff, "/accounts", cursor="forged"), 400, "invalid-cursor")


def test_a_statement_pages_newest_first_with_running_balances(
    client: FlaskClient, staff: Caller, customer: Caller
) -> None:
    for index in range(5):
        ok(post_tx(client, staff, simple("CREDIT_ADD", customer.uuid, "10.00", f"in-{index}")))
    spent = ok(post_tx(client, staff, simple("CREDIT_SPEND", customer.uuid, "15.00", "out")))
    wallet = spent["entries"][0]["account"]

    lines, cursor = [], None
    while True:
        params = {"limit": 2} if cursor is None else {"limit": 2, "cursor": cursor}
        page = ok(get(client, customer, f"/accounts/{wallet}/entries", **params), 200)
        lines += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert [line["balance_after"] for line in lines] == [
        "35.00", "50.00", "40.00", "30.00", "20.00", "10.00"]  # fmt: skip
    assert [line["operation"] for line in lines] == ["CREDIT_SPEND"] + ["CREDIT_ADD"] * 5
    assert lines[0]["debit"] == "15.00"
    assert lines[0]["transaction"] == spent["id"]
    numbers = [line["number"] for line in lines]
    assert numbers == sorted(numbers, reverse=True)
    # A cursor of another listing is refused.
    accounts_cursor = ok(get(client, staff, "/accounts", limit=1), 200)["next_cursor"]
    assert_problem(get(client, customer, f"/accounts/{wallet}/entries", cursor=accounts_cursor),
                   400, "invalid-cursor")  # fmt: skip


def test_a_database_failure_while_writing_is_a_503_to_retry_never_a_500(
    make_app: Callable[..., Flask], services: Services
) -> None:
    # The app's connections give up on a lock after 300 ms; the chain head is held elsewhere.
    app = make_app(database_url=f"{services.database_url}?options=-c%20lock_timeout%3D300")
    client = app.test_client()
    with app.app_context(), transaction():
        create_user("staff@example.test", role="staff", password=PASSWORD)
        holder = create_user("c@example.test", role="customer", password=PASSWORD).uuid
    staff = bearer(login(client, "staff@example.test").get_json()["access_token"])
    first = client.post(f"{API}/transactions", headers=staff,
                        json=simple("CREDIT_ADD", holder, "1.00", "first"))  # fmt: skip
    assert first.status_code == 201, first.get_json()
    body = simple("CREDIT_ADD", holder, "2.00", "second")

    with psycopg.connect(services.database_url.replace("+psycopg", "")) as blocker:
        blocker.execute("SELECT * FROM ledger_chain FOR UPDATE")
        refused = client.post(f"{API}/transactions", json=body, headers=staff)

    problem = assert_problem(refused, 503, "ledger-write-failed")
    assert refused.headers["Retry-After"].isdigit()
    assert "try again" in problem["detail"]
    assert sql(services, "SELECT count(*) FROM ledger_transaction")[0][0] == 1
    retried = client.post(f"{API}/transactions", json=body, headers=staff)
    assert retried.status_code == 201, retried.get_json()


def test_a_value_the_database_cannot_store_is_a_422(
    client: FlaskClient, staff: Caller, customer: Caller, services: Services
) -> None:
    # Each leg fits NUMERIC(18, 2); the running balance after both does not.
    largest = "9999999999999999.99"
    ok(post_tx(client, staff, simple("CREDIT_ADD", customer.uuid, largest, "max")))

    refused = post_tx(client, staff, simple("CREDIT_ADD", customer.uuid, "1.00", "over"))

    assert_problem(refused, 422, "value-not-storable")
    assert count(services, "ledger_transaction") == 1


def test_the_embedded_default_posts_and_reads_back(make_embedded_app: Callable[..., Flask]) -> None:
    app = make_embedded_app()
    with app.app_context(), transaction():
        create_user("staff@example.test", role="staff", password=PASSWORD)
        holder = create_user("c@example.test", role="customer", password=PASSWORD).uuid
    client = app.test_client()
    staff = bearer(login(client, "staff@example.test").get_json()["access_token"])
    buyer = bearer(login(client, "c@example.test").get_json()["access_token"])

    body = simple("CREDIT_ADD", holder, "100.10", "one")
    created = client.post(f"{API}/transactions", json=body, headers=staff)
    assert created.status_code == 201, created.get_json()
    replay = client.post(f"{API}/transactions", json=body, headers=staff)
    assert replay.status_code == 200
    assert replay.get_json()["replayed"] is True
    conflict = client.post(f"{API}/transactions", json={**body, "amount": "1"}, headers=staff)
    assert conflict.status_code == 409
    spend = simple("CREDIT_SPEND", holder, "0.10", "two")
    assert client.post(f"{API}/transactions", json=spend, headers=staff).status_code == 201
    too_much = client.post(f"{API}/transactions", headers=staff,
                           json=simple("CREDIT_SPEND", holder, "100.01", "three"))  # fmt: skip
    assert too_much.status_code == 422
    assert too_much.get_json()["type"] == "urn:lapak:problem:insufficient-balance"

    shown = client.get(created.headers["Location"], headers=buyer)
    assert shown.status_code == 200
    assert shown.get_json()["number"] == created.get_json()["number"]
    wallet = created.get_json()["entries"][1]["account"]
    account = client.get(f"{API}/accounts/{wallet}", headers=buyer).get_json()
    assert account["balance"] == "100.00"
    lines = client.get(f"{API}/accounts/{wallet}/entries", headers=buyer).get_json()["items"]
    assert [line["balance_after"] for line in lines] == ["100.00", "100.10"]
    trial = client.get(f"{API}/trial-balance", headers=staff).get_json()
    assert trial["totals"] == [{"currency": "IDR", "debit": "100.10", "credit": "100.10"}]
    assert Decimal(trial["totals"][0]["debit"]) == D("100.10")
