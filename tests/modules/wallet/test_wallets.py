"""Wallets: opening (one per customer and currency, the sign-up credit once), balances and
statements from the ledger, freezing, the daily reward, who sees what; and the embedded default."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import clock
from app.config import SettingsError
from app.db import transaction
from modules.ledger.verify import verify
from modules.user.services import create_user
from tests.modules.conftest import PASSWORD, Caller, bearer, login

API = "/api/v1/wallets"
PROBLEM = "application/problem+json"


def call(client: FlaskClient, caller: Caller, method: str, path: str = "", **kw: Any):
    return client.open(f"{API}{path}", method=method, headers=caller.headers, **kw)


def ok(response: TestResponse, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    return response.get_json()


def problem(response: TestResponse, status: int, code: str) -> None:
    assert response.status_code == status, response.get_json()
    assert response.content_type == PROBLEM
    assert response.get_json()["type"] == f"urn:lapak:problem:{code}"


def ledger_ok(app: Flask) -> None:
    with app.app_context():
        report = verify()
    assert report.ok, report.problems


@pytest.fixture
def credits(config: dict[str, Any]) -> None:
    config["module_env"] = {
        **config["module_env"],
        "wallet_signup_credit": "5000",
        "wallet_daily_reward": "250.50",
    }


def test_a_customer_opens_one_wallet_per_currency(
    app: Flask, client: FlaskClient, customer: Caller, staff: Caller
) -> None:
    opened = ok(call(client, customer, "POST", json={}), 201)
    assert opened["currency"] == "IDR"
    assert opened["customer"] == str(customer.uuid)
    assert (opened["state"], opened["balance"], opened["account"]) == ("active", "0.00", None)
    problem(call(client, customer, "POST", json={"currency": "IDR"}), 409, "wallet-exists")
    usd = ok(call(client, customer, "POST", json={"currency": "USD"}), 201)
    problem(call(client, customer, "POST", json={"currency": "EUR"}), 422, "validation-failed")
    shown = ok(call(client, customer, "GET", f"/{opened['id']}"))
    assert shown == opened
    listed = ok(call(client, customer, "GET"))["items"]
    assert [w["id"] for w in listed] == [opened["id"], usd["id"]]
    # No sign-up credit by default: nothing was posted.
    assert ok(call(client, customer, "GET", f"/{opened['id']}/entries"))["items"] == []


def test_staff_open_for_customers_only_and_customers_only_their_own(
    app: Flask, client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    staff, buyer, other = log_in_as("staff"), log_in_as("customer"), log_in_as("customer")
    made = ok(call(client, staff, "POST", json={"customer": str(buyer.uuid)}), 201)
    assert made["customer"] == str(buyer.uuid)
    problem(call(client, staff, "POST", json={}), 422, "invalid-customer")  # staff hold none
    problem(call(client, staff, "POST", json={"customer": str(staff.uuid)}), 422,
            "invalid-customer")  # fmt: skip
    refused = call(client, other, "POST", json={"customer": str(buyer.uuid)})
    problem(refused, 403, "forbidden")
    # Another customer's wallet does not exist for them; staff see every wallet.
    problem(call(client, other, "GET", f"/{made['id']}"), 404, "not-found")
    problem(call(client, other, "GET", f"/{made['id']}/entries"), 404, "not-found")
    assert ok(call(client, other, "GET"))["items"] == []
    assert [w["id"] for w in ok(call(client, staff, "GET"))["items"]] == [made["id"]]
    by_customer = ok(call(client, staff, "GET", query_string={"customer": str(buyer.uuid)}))
    assert len(by_customer["items"]) == 1
    assert ok(call(client, staff, "GET", query_string={"state": "frozen"}))["items"] == []


@pytest.mark.usefixtures("credits")
def test_the_first_idr_wallet_gets_the_sign_up_credit_once(
    app: Flask, client: FlaskClient, customer: Caller, staff: Caller
) -> None:
    usd = ok(call(client, customer, "POST", json={"currency": "USD"}), 201)
    assert usd["balance"] == "0.00"  # credits are in IDR
    idr = ok(call(client, customer, "POST", json={"currency": "IDR"}), 201)
    assert idr["balance"] == "5000.00"
    assert idr["account"] is not None
    lines = ok(call(client, customer, "GET", f"/{idr['id']}/entries"))["items"]
    assert [(line["operation"], line["credit"], line["balance_after"]) for line in lines] == [
        ("SIGNUP_CREDIT", "5000.00", "5000.00")
    ]
    # The ledger account is the customer's: the same balance there.
    account = client.get(f"/api/v1/ledger/accounts/{idr['account']}", headers=customer.headers)
    assert ok(account)["balance"] == "5000.00"
    ledger_ok(app)


@pytest.mark.usefixtures("credits")
def test_a_sign_up_credit_already_given_by_hand_is_not_given_twice(
    app: Flask, client: FlaskClient, customer: Caller, staff: Caller
) -> None:
    by_hand = {
        "operation": "SIGNUP_CREDIT",
        "nonce": f"signup:{customer.uuid}",
        "currency": "IDR",
        "holder": str(customer.uuid),
        "amount": "100.00",
    }
    ok(client.post("/api/v1/ledger/transactions", json=by_hand, headers=staff.headers), 201)
    opened = ok(call(client, customer, "POST", json={}), 201)
    assert opened["balance"] == "100.00"
    ledger_ok(app)


@pytest.mark.usefixtures("credits")
def test_the_daily_reward_once_a_day_in_the_marketplace_time_zone(
    app: Flask, client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    buyer, other = log_in_as("customer"), log_in_as("customer")
    wallet = ok(call(client, buyer, "POST", json={}), 201)["id"]
    first = ok(call(client, buyer, "POST", f"/{wallet}/daily-reward"), 201)
    assert (first["amount"], first["replayed"]) == ("250.50", False)
    assert first["wallet"]["balance"] == "5250.50"
    again = ok(call(client, buyer, "POST", f"/{wallet}/daily-reward"), 200)
    assert again["replayed"] is True
    assert (again["transaction"], again["day"]) == (first["transaction"], first["day"])
    assert again["wallet"]["balance"] == "5250.50"
    problem(call(client, other, "POST", f"/{wallet}/daily-reward"), 404, "not-found")
    usd = ok(call(client, buyer, "POST", json={"currency": "USD"}), 201)["id"]
    problem(call(client, buyer, "POST", f"/{usd}/daily-reward"), 422, "reward-currency")
    with clock.travel(timedelta(days=1)):
        token = ok(login(client, buyer.email))["access_token"]
        tomorrow = ok(client.post(f"{API}/{wallet}/daily-reward", headers=bearer(token)), 201)
    assert tomorrow["day"] != first["day"]
    assert tomorrow["wallet"]["balance"] == "5501.00"
    ledger_ok(app)


def test_no_daily_reward_when_it_is_off(app: Flask, client: FlaskClient, customer: Caller) -> None:
    wallet = ok(call(client, customer, "POST", json={}), 201)["id"]
    problem(call(client, customer, "POST", f"/{wallet}/daily-reward"), 409, "rewards-off")
    assert ok(call(client, customer, "GET", f"/{wallet}"))["balance"] == "0.00"


@pytest.mark.usefixtures("credits")
def test_concurrent_claims_credit_the_reward_once(app: Flask, customer: Caller) -> None:
    wallet = ok(call(app.test_client(), customer, "POST", json={}), 201)["id"]
    statuses: list[int] = []
    start = threading.Barrier(8)

    def claim() -> None:
        start.wait()
        statuses.append(
            call(app.test_client(), customer, "POST", f"/{wallet}/daily-reward").status_code
        )

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 7 + [201]
    assert ok(call(app.test_client(), customer, "GET", f"/{wallet}"))["balance"] == "5250.50"
    ledger_ok(app)


@pytest.mark.usefixtures("credits")
def test_staff_freeze_and_unfreeze_a_wallet(
    app: Flask, client: FlaskClient, customer: Caller, staff: Caller
) -> None:
    wallet = ok(call(client, customer, "POST", json={}), 201)["id"]
    problem(call(client, customer, "POST", f"/{wallet}/freeze", json={"reason": "x"}), 403,
            "forbidden")  # fmt: skip
    problem(call(client, staff, "POST", f"/{wallet}/freeze", json={}), 422, "validation-failed")
    frozen = ok(call(client, staff, "POST", f"/{wallet}/freeze", json={"reason": "Chargeback"}))
    assert (frozen["state"], frozen["frozen_reason"]) == ("frozen", "Chargeback")
    assert frozen["frozen_at"] is not None
    problem(call(client, staff, "POST", f"/{wallet}/freeze", json={"reason": "again"}), 409,
            "wallet-frozen")  # fmt: skip
    problem(call(client, customer, "POST", f"/{wallet}/daily-reward"), 409, "wallet-frozen")
    assert ok(call(client, customer, "GET", f"/{wallet}"))["balance"] == "5000.00"
    thawed = ok(call(client, staff, "POST", f"/{wallet}/unfreeze"))
    assert (thawed["state"], thawed["frozen_reason"], thawed["frozen_at"]) == ("active", None, None)
    problem(call(client, staff, "POST", f"/{wallet}/unfreeze"), 409, "wallet-not-frozen")
    ok(call(client, customer, "POST", f"/{wallet}/daily-reward"), 201)


def test_the_embedded_default_opens_credits_and_reads_wallets(
    make_embedded_app: Callable[..., Flask],
) -> None:
    app = make_embedded_app(
        module_env={"wallet_signup_credit": "1000", "wallet_daily_reward": "10"}
    )
    with app.app_context(), transaction():
        create_user("c@example.test", role="customer", password=PASSWORD)
    client = app.test_client()
    buyer = bearer(login(client, "c@example.test").get_json()["access_token"])
    opened = client.post(API, json={}, headers=buyer)
    assert opened.status_code == 201, opened.get_json()
    assert opened.get_json()["balance"] == "1000.00"
    wallet = opened.get_json()["id"]
    reward = client.post(f"{API}/{wallet}/daily-reward", headers=buyer)
    assert reward.status_code == 201, reward.get_json()
    again = client.post(f"{API}/{wallet}/daily-reward", headers=buyer)
    assert again.status_code == 200
    shown = client.get(f"{API}/{wallet}", headers=buyer).get_json()
    assert Decimal(shown["balance"]) == Decimal("1010.00")
    lines = client.get(f"{API}/{wallet}/entries", headers=buyer).get_json()["items"]
    assert [line["balance_after"] for line in lines] == ["1010.00", "1000.00"]
    ledger_ok(app)


@pytest.mark.parametrize("value", ["-1", "abc", "1.234", "NaN", "1000000000.01"])
def test_a_bad_credit_setting_refuses_to_start(
    make_embedded_app: Callable[..., Flask], value: str
) -> None:
    with pytest.raises(SettingsError, match="LAPAK_WALLET_DAILY_REWARD"):
        make_embedded_app(module_env={"wallet_daily_reward": value})
