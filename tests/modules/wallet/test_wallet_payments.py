"""Paying from the wallet (settles at once, the balance checked under the account's lock),
refunds back into it, and top-ups through a provider (the demo gateway's signed notification,
staff confirming a bank transfer).

Over the test client against the harness's PostgreSQL; concurrent payments each in their own
thread with their own client, app context and session, as gunicorn threads would.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from app.db import transaction
from modules.marketplace.models import Product
from modules.user.services import create_user
from tests.modules.conftest import PASSWORD, Caller, bearer, login
from tests.modules.marketplace.conftest import MadeProduct, order_body, sql
from tests.modules.payment.conftest import (
    assert_ledger_consistent,
    assert_problem,
    events,
    notification,
    notify,
    provider_secret,
)
from tests.modules.payment.test_demo_gateway import choose
from tests.servers import Services

D = Decimal
PAYMENTS = "/api/v1/payments"
WALLETS = "/api/v1/wallets"
ORDERS = "/api/v1/marketplace/orders"
#: Below the app's pool (5 + 10 overflow): requests wait on locks, not on connections.
WORKERS = 10


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    return response.get_json()


def fund(client: FlaskClient, staff: Caller, customer: Caller, amount: str, currency: str = "IDR"):
    """Open the customer's wallet and credit it by hand (``CREDIT_ADD``, staff)."""
    opened = client.post(WALLETS, json={"currency": currency}, headers=customer.headers)
    assert opened.status_code in (201, 409), opened.get_json()
    credit = {
        "operation": "CREDIT_ADD",
        "nonce": f"fund-{customer.uuid}-{currency}-{amount}",
        "currency": currency,
        "holder": str(customer.uuid),
        "amount": amount,
    }
    ok(client.post("/api/v1/ledger/transactions", json=credit, headers=staff.headers), 201)


def wallet_of(client: FlaskClient, customer: Caller, currency: str = "IDR") -> dict[str, Any]:
    listed = ok(client.get(f"{WALLETS}?currency={currency}", headers=customer.headers))["items"]
    assert len(listed) == 1
    return listed[0]


def unpaid_invoice(client: FlaskClient, customer: Caller, product: MadeProduct) -> dict[str, Any]:
    """An order whose invoice awaits payment: placed through a bank transfer the payer then
    gives up, so nothing is reserved on it."""
    body = order_body((product.id, "1"))
    body["payment"] = {"provider": "bank_transfer"}
    placed = ok(client.post(ORDERS, json=body, headers=customer.headers), 201)
    tx = placed["transaction"]
    ok(client.post(f"{PAYMENTS}/{tx['id']}/cancel", headers=customer.headers))
    return placed["invoice"]


def pay(client: FlaskClient, customer: Caller, invoice_id: str, **extra: Any):
    body = {"invoice": invoice_id, "provider": "wallet", **extra}
    return client.post(PAYMENTS, json=body, headers=customer.headers)


def seller_pending(services: Services, seller_id: int) -> Decimal:
    rows = sql(
        services,
        "SELECT balance FROM ledger_account WHERE purpose = 'seller_pending' AND holder_id = %s",
        seller_id,
    )
    return rows[0][0] if rows else D("0.00")


@pytest.fixture
def seller_id(make_user: Callable[..., tuple[int, Any, str]]) -> int:
    return make_user(role="seller")[0]


@pytest.fixture
def thousand(make_product: Callable[..., MadeProduct], seller_id: int) -> MadeProduct:
    """A seller's product whose invoice is exactly 1,000.00 (900.90 + 11% PPN 99.10)."""
    return make_product("900.90", name="BANDENG", seller_id=seller_id)


def test_paycorex_example_a_wallet_of_5000_pays_1000_in_one_order_request(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    customer: Caller,
    thousand: MadeProduct,
    seller_id: int,
    services: Services,
) -> None:
    fund(client, staff, customer, "5000.00")
    body = order_body((thousand.id, "1"))
    body["payment"] = {"provider": "wallet"}

    placed = ok(client.post(ORDERS, json=body, headers=customer.headers), 201)

    assert placed["invoice"]["amount_total"] == "1000.00"
    tx = placed["transaction"]
    assert (tx["provider"], tx["state"], tx["kind"]) == ("wallet", "success", "invoice")
    assert tx["action"]["type"] == "wallet"
    assert tx["action"]["balance"] == "4000.00"
    assert placed["payment"]["state"] == "paid"
    assert placed["invoice"]["payment_state"] == "paid"
    assert wallet_of(client, customer)["balance"] == "4000.00"
    # The seller's share: 900.90 less 5% commission (45.05), on hold.
    assert seller_pending(services, seller_id) == D("855.85")
    succeeded = events(services, "payment.succeeded")
    assert [event["reference"] for event in succeeded] == [tx["reference"]]
    # The capture drew the wallet itself: no clearing account for the wallet method.
    legs = sql(
        services,
        "SELECT a.purpose, e.debit, e.credit FROM ledger_entry e JOIN ledger_account a "
        "ON a.id = e.account_id JOIN ledger_transaction t ON t.id = e.transaction_id "
        "WHERE t.operation = 'PAYMENT_CAPTURE' ORDER BY e.id",
    )
    assert ("wallet", D("1000.00"), D("0.00")) in legs
    assert not any(purpose.startswith("clearing_") for purpose, _, _ in legs)
    # Shown again, the order's transaction is the settled one.
    shown = ok(client.get(f"{PAYMENTS}/{tx['id']}", headers=customer.headers))
    assert shown["state"] == "success"
    assert_ledger_consistent(app)


def test_paying_an_invoice_from_the_wallet_answers_the_new_balance(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    customer: Caller,
    thousand: MadeProduct,
    services: Services,
) -> None:
    fund(client, staff, customer, "1500.00")
    invoice = unpaid_invoice(client, customer, thousand)

    partial = ok(pay(client, customer, invoice["id"], amount="400.00"), 201)
    assert (partial["state"], partial["action"]["balance"]) == ("success", "1100.00")
    rest = ok(pay(client, customer, invoice["id"]), 201)
    assert (rest["amount"], rest["action"]["balance"]) == ("600.00", "500.00")

    shown = ok(client.get(f"/api/v1/marketplace/invoices/{invoice['id']}",
                          headers=customer.headers))  # fmt: skip
    assert (shown["payment_state"], shown["amount_residual"]) == ("paid", "0.00")
    assert len(events(services, "payment.succeeded")) == 2
    assert_ledger_consistent(app)


def test_a_wallet_that_cannot_cover_the_payment_changes_nothing(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    customer: Caller,
    thousand: MadeProduct,
    services: Services,
) -> None:
    fund(client, staff, customer, "999.99")
    invoice = unpaid_invoice(client, customer, thousand)
    before = sql(services, "SELECT count(*) FROM payment_transaction")[0][0]

    body = assert_problem(pay(client, customer, invoice["id"]), 422, "insufficient-balance")
    assert body["balance"] == "999.99"
    # An order paying from a wallet that cannot cover it is refused whole too.
    order = order_body((thousand.id, "1"))
    order["payment"] = {"provider": "wallet"}
    assert_problem(client.post(ORDERS, json=order, headers=customer.headers), 422,
                   "insufficient-balance")  # fmt: skip

    assert sql(services, "SELECT count(*) FROM payment_transaction")[0][0] == before
    assert wallet_of(client, customer)["balance"] == "999.99"
    assert events(services, "payment.succeeded") == []
    assert_ledger_consistent(app)


def test_no_wallet_or_a_frozen_one_pays_nothing(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    customer: Caller,
    thousand: MadeProduct,
) -> None:
    invoice = unpaid_invoice(client, customer, thousand)
    assert_problem(pay(client, customer, invoice["id"]), 422, "no-wallet")
    fund(client, staff, customer, "5000.00")
    wallet = wallet_of(client, customer)
    ok(client.post(f"{WALLETS}/{wallet['id']}/freeze", json={"reason": "review"},
                   headers=staff.headers))  # fmt: skip

    assert_problem(pay(client, customer, invoice["id"]), 409, "wallet-frozen")

    ok(client.post(f"{WALLETS}/{wallet['id']}/unfreeze", headers=staff.headers))
    ok(pay(client, customer, invoice["id"]), 201)
    assert_ledger_consistent(app)


def test_fifty_concurrent_payments_of_100_on_a_wallet_of_1000_exactly_ten_succeed(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    customer: Caller,
    make_product: Callable[..., MadeProduct],
    seller_id: int,
    services: Services,
) -> None:
    hundred = make_product("90.09", name="LELE", seller_id=seller_id)  # 90.09 + 9.91 PPN
    fund(client, staff, customer, "1000.00")
    invoices = [unpaid_invoice(client, customer, hundred)["id"] for _ in range(50)]

    def one(invoice_id: str) -> tuple[int, dict[str, Any]]:
        response = pay(app.test_client(), customer, invoice_id)
        return response.status_code, response.get_json()

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        answers = list(pool.map(one, invoices))

    statuses = Counter(status for status, _ in answers)
    assert statuses == {201: 10, 422: 40}, statuses
    refusals = {answer["type"] for status, answer in answers if status == 422}
    assert refusals == {"urn:lapak:problem:insufficient-balance"}
    assert {answer["state"] for status, answer in answers if status == 201} == {"success"}
    assert wallet_of(client, customer)["balance"] == "0.00"
    # The wallet's balance is the ledger's own sum of its entries.
    (summed,) = sql(
        services,
        "SELECT sum(e.credit) - sum(e.debit) FROM ledger_entry e JOIN ledger_account a "
        "ON a.id = e.account_id WHERE a.purpose = 'wallet' AND a.holder_id = %s",
        customer.user_id,
    )[0]
    assert summed == D("0.00")
    assert len(events(services, "payment.succeeded")) == 10
    paid = sql(services, "SELECT count(*) FROM marketplace_account_move WHERE payment_state = "
                         "'paid' AND move_type = 'out_invoice'")  # fmt: skip
    assert paid[0][0] == 10
    assert_ledger_consistent(app)


def test_a_wallet_payment_refunded_goes_back_to_the_wallet_at_once(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    customer: Caller,
    thousand: MadeProduct,
    seller_id: int,
    services: Services,
) -> None:
    fund(client, staff, customer, "1000.00")
    invoice = unpaid_invoice(client, customer, thousand)
    paid = ok(pay(client, customer, invoice["id"]), 201)
    payment_id = paid["payment"]

    refund = ok(client.post(f"/api/v1/marketplace/payments/{payment_id}/refunds",
                            json={"reason": "damaged", "amount": "250.00"},
                            headers=staff.headers), 201)  # fmt: skip

    assert (refund["destination"], refund["state"]) == ("wallet", "succeeded")
    assert refund["confirmed_at"] is not None
    assert wallet_of(client, customer)["balance"] == "250.00"
    assert len(events(services, "refund.succeeded")) == 1
    assert_ledger_consistent(app)


def test_staff_may_send_any_refund_to_the_wallet_which_opens_if_missing(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    customer: Caller,
    thousand: MadeProduct,
    services: Services,
) -> None:
    body = order_body((thousand.id, "1"))
    placed = ok(client.post(ORDERS, json=body, headers=customer.headers), 201)  # bank transfer
    payment_id = placed["payment"]["id"]
    ok(client.post(f"/api/v1/marketplace/payments/{payment_id}/confirm", headers=staff.headers))
    refunds = f"/api/v1/marketplace/payments/{payment_id}/refunds"
    bad = client.post(refunds, json={"reason": "x", "destination": "cash"}, headers=staff.headers)
    assert_problem(bad, 422, "invalid-refund-destination")
    assert sql(services, "SELECT count(*) FROM marketplace_refund")[0][0] == 0

    to_wallet = ok(client.post(refunds, json={"reason": "goodwill", "amount": "100.00",
                                              "destination": "wallet"},
                               headers=staff.headers), 201)  # fmt: skip
    by_hand = ok(client.post(refunds, json={"reason": "rest"}, headers=staff.headers), 201)

    assert (to_wallet["destination"], to_wallet["state"]) == ("wallet", "succeeded")
    assert (by_hand["destination"], by_hand["state"]) == ("bank_transfer", "pending")
    assert wallet_of(client, customer)["balance"] == "100.00"
    assert_ledger_consistent(app)


def test_a_top_up_through_the_demo_gateway_credits_the_wallet_once(
    app: Flask, client: FlaskClient, customer: Caller, services: Services
) -> None:
    started = ok(client.post(f"{WALLETS}/top-ups", json={"provider": "demo",
                                                         "amount": "50000.00"},
                             headers=customer.headers), 201)  # fmt: skip
    tx, wallet = started["transaction"], started["wallet"]
    assert (tx["kind"], tx["state"], tx["invoice"]) == ("top_up", "pending", None)
    assert tx["action"]["type"] == "redirect"
    assert wallet["balance"] == "0.00"
    secret = provider_secret(app)

    for _ in range(3):  # the provider repeats itself
        assert notify(client, secret, notification(tx, "success")).status_code == 200

    assert wallet_of(client, customer)["balance"] == "50000.00"
    credits = sql(services, "SELECT count(*) FROM ledger_transaction WHERE operation = "
                            "'CREDIT_ADD'")  # fmt: skip
    assert credits[0][0] == 1
    assert len(events(services, "wallet.topped_up")) == 1
    assert len(events(services, "payment.succeeded")) == 1
    # Listed with the customer's transactions; a seller sees no top-up.
    mine = ok(client.get(PAYMENTS, headers=customer.headers))["items"]
    assert [item["kind"] for item in mine] == ["top_up"]
    assert_ledger_consistent(app)


def test_a_failed_top_up_credits_nothing_and_limits_and_the_wallet_provider_are_refused(
    app: Flask, client: FlaskClient, customer: Caller, staff: Caller, services: Services
) -> None:
    top_up = f"{WALLETS}/top-ups"
    small = client.post(top_up, json={"provider": "demo", "amount": "9999.99"},
                        headers=customer.headers)  # fmt: skip
    assert assert_problem(small, 422, "top-up-limits")["minimum"] == "10000.00"
    big = client.post(top_up, json={"provider": "demo", "amount": "20000000.01"},
                      headers=customer.headers)  # fmt: skip
    assert_problem(big, 422, "top-up-limits")
    itself = client.post(top_up, json={"provider": "wallet", "amount": "10000.00"},
                         headers=customer.headers)  # fmt: skip
    assert_problem(itself, 422, "provider-unavailable")
    by_staff = client.post(top_up, json={"provider": "demo", "amount": "10000.00"},
                           headers=staff.headers)  # fmt: skip
    assert by_staff.status_code == 403
    assert sql(services, "SELECT count(*) FROM payment_transaction")[0][0] == 0

    started = ok(client.post(top_up, json={"provider": "demo", "amount": "10000.00"},
                             headers=customer.headers), 201)  # fmt: skip
    failed = notify(client, provider_secret(app), notification(started["transaction"], "failed"))
    assert failed.status_code == 200

    assert wallet_of(client, customer)["balance"] == "0.00"
    assert sql(services, "SELECT count(*) FROM ledger_transaction")[0][0] == 0
    assert_ledger_consistent(app)


def test_a_bank_transfer_top_up_is_credited_when_staff_confirm_it(
    app: Flask, client: FlaskClient, customer: Caller, staff: Caller
) -> None:
    started = ok(client.post(f"{WALLETS}/top-ups", json={"provider": "bank_transfer",
                                                         "amount": "25000.00"},
                             headers=customer.headers), 201)  # fmt: skip
    tx = started["transaction"]
    assert tx["action"]["type"] == "bank_transfer"

    confirmed = ok(client.post(f"{PAYMENTS}/{tx['id']}/confirm", headers=staff.headers))

    assert confirmed["state"] == "success"
    assert wallet_of(client, customer)["balance"] == "25000.00"
    assert_ledger_consistent(app)


def test_the_embedded_default_tops_up_through_the_demo_gateway_and_pays_from_the_wallet(
    make_embedded_app: Callable[..., Flask], serve: Callable[[Flask], str]
) -> None:
    """What a newcomer sees (SQLite, no Redis): the gateway's hosted page, its notification
    over HTTP from an in-process job, then an order paid from the wallet in one request."""
    app = make_embedded_app()
    with app.app_context():
        create_user("buyer@example.test", role="customer", password=PASSWORD)
        with transaction() as session:
            item = Product(name="LELE", list_price=Decimal("37000"), active=True)
            session.add(item)
            session.flush()
            product_id = str(item.uuid)
    base = serve(app)
    token = login(app.test_client(), "buyer@example.test").get_json()["access_token"]
    headers = bearer(token)

    started = requests.post(f"{base}{WALLETS}/top-ups", json={"provider": "demo",
                            "amount": "50000.00"}, headers=headers, timeout=30)  # fmt: skip
    assert started.status_code == 201, started.text
    tx = started.json()["transaction"]
    choose(tx["action"]["url"], "success")
    deadline = time.monotonic() + 30
    while (balance := _balance(base, headers)) != "50000.00":
        assert time.monotonic() < deadline, balance
        time.sleep(0.1)

    body = order_body((product_id, "1"))
    body["payment"] = {"provider": "wallet"}
    placed = requests.post(f"{base}{ORDERS}", json=body, headers=headers, timeout=30)

    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert order["transaction"]["state"] == "success"
    assert order["invoice"]["payment_state"] == "paid"
    left = D("50000.00") - D(order["invoice"]["amount_total"])
    assert _balance(base, headers) == str(left)
    assert_ledger_consistent(app)


def _balance(base: str, headers: dict[str, str]) -> str:
    response = requests.get(f"{base}{WALLETS}?currency=IDR", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["items"][0]["balance"]


def test_only_the_owner_pays_from_a_wallet_and_sellers_never_see_the_payers_action(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    customer: Caller,
    log_in_as: Callable[..., Caller],
    make_product: Callable[..., MadeProduct],
) -> None:
    seller = log_in_as("seller")
    theirs = make_product("900.90", name="BANDENG", seller_id=seller.user_id)
    fund(client, staff, customer, "5000.00")
    invoice = unpaid_invoice(client, customer, theirs)
    by_staff = client.post(PAYMENTS, json={"invoice": invoice["id"], "provider": "wallet"},
                           headers=staff.headers)  # fmt: skip
    assert_problem(by_staff, 403)

    paid = ok(pay(client, customer, invoice["id"]), 201)

    assert paid["action"]["balance"] == "4000.00"
    as_seller = ok(client.get(f"{PAYMENTS}/{paid['id']}", headers=seller.headers))
    assert as_seller["state"] == "success"
    assert as_seller["action"] is None  # the payer's wallet and balance are theirs
    listed = ok(client.get(f"{PAYMENTS}?provider=wallet", headers=seller.headers))["items"]
    assert [item["action"] for item in listed] == [None]
    as_staff = ok(client.get(f"{PAYMENTS}/{paid['id']}", headers=staff.headers))
    assert as_staff["action"]["balance"] == "4000.00"


def test_staff_post_credit_add_from_a_holder_and_amount_only(
    client: FlaskClient, staff: Caller, customer: Caller, services: Services
) -> None:
    legs = {
        "operation": "CREDIT_ADD",
        "nonce": "by-legs",
        "currency": "IDR",
        "legs": [
            {"purpose": "clearing_demo", "debit": "10.00"},
            {"purpose": "wallet", "holder": str(customer.uuid), "credit": "10.00"},
        ],
    }
    refused = client.post("/api/v1/ledger/transactions", json=legs, headers=staff.headers)
    assert assert_problem(refused, 422, "invalid-operation")["errors"]["legs"]
    assert sql(services, "SELECT count(*) FROM ledger_transaction")[0][0] == 0


@pytest.fixture
def signup_credit(config: dict[str, Any]) -> None:
    config["module_env"] = {**config["module_env"], "wallet_signup_credit": "5000"}


@pytest.mark.usefixtures("signup_credit")
def test_a_wallet_a_refund_opened_gets_the_sign_up_credit_with_its_first_top_up(
    app: Flask, client: FlaskClient, staff: Caller, customer: Caller, thousand: MadeProduct
) -> None:
    placed = ok(client.post(ORDERS, json=order_body((thousand.id, "1")), headers=customer.headers),
                201)  # fmt: skip
    payment_id = placed["payment"]["id"]
    ok(client.post(f"/api/v1/marketplace/payments/{payment_id}/confirm", headers=staff.headers))
    ok(client.post(f"/api/v1/marketplace/payments/{payment_id}/refunds",
                   json={"reason": "goodwill", "amount": "100.00", "destination": "wallet"},
                   headers=staff.headers), 201)  # fmt: skip
    assert wallet_of(client, customer)["balance"] == "100.00"  # opened by the refund, no credit

    started = ok(client.post(f"{WALLETS}/top-ups", json={"provider": "demo",
                                                         "amount": "10000.00"},
                             headers=customer.headers), 201)  # fmt: skip

    assert started["wallet"]["balance"] == "5100.00"
    again = ok(client.post(f"{WALLETS}/top-ups", json={"provider": "demo", "amount": "10000.00"},
                           headers=customer.headers), 201)  # fmt: skip
    assert again["wallet"]["balance"] == "5100.00"  # once per customer, ever
    assert_ledger_consistent(app)


def test_providers_made_by_a_refused_first_request_are_made_again(
    app: Flask, client: FlaskClient, customer: Caller, thousand: MadeProduct
) -> None:
    """The first use of the providers makes their rows; when that request is refused they roll
    back with it, and the next request makes them again (not a 404 for every provider)."""
    order = order_body((thousand.id, "1"))
    order["payment"] = {"provider": "wallet"}
    assert_problem(client.post(ORDERS, json=order, headers=customer.headers), 422, "no-wallet")

    order["payment"] = {"provider": "demo"}
    placed = ok(client.post(ORDERS, json=order, headers=customer.headers), 201)

    assert placed["transaction"]["provider"] == "demo"
