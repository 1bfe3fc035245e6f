"""``/api/v1/payments`` over HTTP: paying invoices, the manual bank transfer confirmed by staff,
fees, idempotency, listings and who sees what, the providers' admin (secrets write-only), and
orders placed with ``payment.provider``."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.errors import Invalid
from modules.payment.demo import DemoGateway
from tests.modules.conftest import Caller
from tests.modules.marketplace.conftest import counts
from tests.servers import Services

from .conftest import (
    API,
    MARKETPLACE,
    MadeProduct,
    assert_ledger_consistent,
    assert_problem,
    events,
    execute,
    ledger_operations,
    notification,
    notify,
    order_body,
    place,
    place_with_provider,
    provider_secret,
    tx_row,
)


def partly_paid_invoice(client: FlaskClient, caller: Caller, product_id: str) -> dict[str, Any]:
    """An order whose bank transfer paid 1,000 of it: the invoice is ``partial``."""
    paid_in_part = {"method": "bank_transfer", "amount": "1000"}
    return place(client, caller, order_body((product_id, "1"), payment=paid_in_part))["invoice"]


def pay(client: FlaskClient, caller: Caller, body: dict[str, Any], key: str | None = None) -> Any:
    headers = dict(caller.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(API, json=body, headers=headers)


def test_manual_bank_transfer_shows_bank_details_and_staff_confirm_it(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    product: MadeProduct,
    services: Services,
) -> None:
    placed = place_with_provider(client, customer, product.id, provider="bank_transfer")
    tx = placed["transaction"]
    assert placed["payment"]["method"] == "bank_transfer"
    assert placed["invoice"]["payment_state"] == "in_payment"  # today's behaviour
    action = tx["action"]
    assert action["type"] == "bank_transfer"
    assert action["reference"] == tx["reference"]
    assert action["account_number"]
    assert action["amount"] == tx["amount"]
    assert tx["reference"].startswith("TX/")
    # The customer cannot confirm their own transfer; staff can, once.
    url = f"{API}/{tx['id']}/confirm"
    assert_problem(client.post(url, headers=customer.headers), 403)
    confirmed = client.post(url, headers=staff.headers)
    assert confirmed.status_code == 200, confirmed.get_json()
    assert confirmed.get_json()["state"] == "success"
    assert_problem(client.post(url, headers=staff.headers), 409, "invalid-transition")
    row = tx_row(services, tx["reference"])
    assert (row["payment"], row["invoice"]) == ("paid", "paid")
    assert ledger_operations(app).count("PAYMENT_CAPTURE") == 1
    assert len(events(services, "payment.succeeded")) == 1
    assert_ledger_consistent(app)


def test_pay_an_invoice_defaults_to_the_residual_and_computes_fee_and_net(
    client: FlaskClient, customer: Caller, admin: Caller, product: MadeProduct
) -> None:
    invoice = partly_paid_invoice(client, customer, product.id)
    changed = client.patch(f"{API}/providers/demo", json={"fee_percent": "2.5",
                           "fee_fixed": "1000"}, headers=admin.headers)  # fmt: skip
    assert changed.status_code == 200, changed.get_json()
    response = pay(client, customer, {"invoice": invoice["id"], "provider": "demo"})
    assert response.status_code == 201, response.get_json()
    tx = response.get_json()
    residual = Decimal(invoice["amount_total"]) - 1000
    assert Decimal(tx["amount"]) == residual
    fee = (residual * Decimal("2.5") / 100).quantize(Decimal("0.01"), ROUND_HALF_UP) + 1000
    assert Decimal(tx["fee"]) == fee
    assert Decimal(tx["net"]) == residual - fee
    assert tx["action"]["type"] == "redirect"
    assert response.headers["Location"].endswith(f"{API}/{tx['id']}")
    # Nothing more is due: a second payment is refused.
    assert_problem(pay(client, customer, {"invoice": invoice["id"], "provider": "demo"}), 409)


def test_a_partial_amount_and_an_amount_over_the_residual(
    client: FlaskClient, customer: Caller, product: MadeProduct
) -> None:
    invoice = partly_paid_invoice(client, customer, product.id)
    too_much = {"invoice": invoice["id"], "provider": "demo", "amount": invoice["amount_total"]}
    assert_problem(pay(client, customer, too_much), 422, "payment-exceeds-residual")
    part = pay(client, customer, {"invoice": invoice["id"], "provider": "demo", "amount": "500"})
    assert part.status_code == 201, part.get_json()
    assert part.get_json()["amount"] == "500.00"


def test_idempotency_key_replays_the_first_answer(
    client: FlaskClient, customer: Caller, product: MadeProduct, services: Services
) -> None:
    invoice = partly_paid_invoice(client, customer, product.id)
    body = {"invoice": invoice["id"], "provider": "demo"}
    first = pay(client, customer, body, key="k-1")
    again = pay(client, customer, body, key="k-1")
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    assert counts(services, ("payment_transaction",)) == {"payment_transaction": 1}
    other = pay(client, customer, {**body, "amount": "10"}, key="k-1")
    assert_problem(other, 422, "idempotency-key-reused")


def test_who_may_pay_and_with_what(
    client: FlaskClient,
    customer: Caller,
    log_in_as: Callable[..., Caller],
    admin: Caller,
    product: MadeProduct,
    services: Services,
) -> None:
    invoice = partly_paid_invoice(client, customer, product.id)
    stranger = log_in_as("customer")
    assert_problem(pay(client, stranger, {"invoice": invoice["id"], "provider": "demo"}), 404)
    assert_problem(pay(client, customer, {"invoice": invoice["id"], "provider": "nope"}), 404)
    disabled = client.patch(f"{API}/providers/demo", json={"state": "disabled"},
                            headers=admin.headers)  # fmt: skip
    assert disabled.get_json()["state"] == "disabled"
    refused = pay(client, customer, {"invoice": invoice["id"], "provider": "demo"})
    assert_problem(refused, 422, "provider-unavailable")
    client.patch(f"{API}/providers/demo", json={"state": "test", "currencies": ["USD"]},
                 headers=admin.headers)  # fmt: skip
    refused = pay(client, customer, {"invoice": invoice["id"], "provider": "demo"})
    assert_problem(refused, 422, "provider-unavailable")
    assert counts(services, ("payment_transaction",)) == {"payment_transaction": 0}
    bad = pay(client, customer, {"invoice": invoice["id"], "provider": "demo", "state": "x"})
    assert_problem(bad, 422)


def test_the_payer_may_cancel_and_the_amount_is_due_again(
    client: FlaskClient, customer: Caller, log_in_as: Callable[..., Caller], product: MadeProduct,
    services: Services,
) -> None:  # fmt: skip
    placed = place_with_provider(client, customer, product.id)
    tx = placed["transaction"]
    stranger = log_in_as("customer")
    assert_problem(client.post(f"{API}/{tx['id']}/cancel", headers=stranger.headers), 404)
    response = client.post(f"{API}/{tx['id']}/cancel", headers=customer.headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["state"] == "canceled"
    row = tx_row(services, tx["reference"])
    assert (row["payment"], row["invoice"]) == ("canceled", "not_paid")
    assert str(row["residual"]) == placed["invoice"]["amount_total"]
    again = client.post(f"{API}/{tx['id']}/cancel", headers=customer.headers)
    assert_problem(again, 409, "invalid-transition")
    # The invoice takes a new payment for its whole amount.
    retry = pay(client, customer, {"invoice": placed["invoice"]["id"], "provider": "demo"})
    assert retry.status_code == 201, retry.get_json()
    assert retry.get_json()["amount"] == placed["invoice"]["amount_total"]


def test_listing_filters_and_visibility(
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    log_in_as: Callable[..., Caller],
    make_product: Callable[..., MadeProduct],
    make_user: Callable[..., Any],
    secret: str,
) -> None:
    seller_id, _, seller_email = make_user(role="seller")
    from tests.modules.conftest import login

    seller_token = login(client, seller_email).get_json()["access_token"]
    seller = Caller(seller_email, None, seller_id, seller_token)  # type: ignore[arg-type]
    sellers_product = make_product("50000", seller_id=seller_id)
    own_product = make_product("37000")
    other = log_in_as("customer")
    mine = [place_with_provider(client, customer, own_product.id)["transaction"]
            for _ in range(3)]  # fmt: skip
    theirs = place_with_provider(client, other, sellers_product.id, provider="bank_transfer")
    from .conftest import notification, notify

    assert notify(client, secret, notification(mine[0], "success")).status_code == 200

    def listed(caller: Caller, **params: Any) -> list[str]:
        response = client.get(API, query_string=params, headers=caller.headers)
        assert response.status_code == 200, response.get_json()
        return [item["reference"] for item in response.get_json()["items"]]

    everyone = [tx["reference"] for tx in [*mine, theirs["transaction"]]]
    assert listed(staff) == everyone[::-1]  # newest first
    assert listed(customer) == [tx["reference"] for tx in mine][::-1]
    assert listed(other) == [theirs["transaction"]["reference"]]
    assert listed(seller) == [theirs["transaction"]["reference"]]
    assert listed(staff, state="success") == [mine[0]["reference"]]
    assert listed(staff, provider="bank_transfer") == [theirs["transaction"]["reference"]]
    assert listed(staff, customer=str(other.uuid)) == [theirs["transaction"]["reference"]]
    high = Decimal(theirs["transaction"]["amount"])
    assert listed(staff, amount_min=str(high)) == [theirs["transaction"]["reference"]]
    assert set(listed(staff, amount_max=str(high - 1))) == {tx["reference"] for tx in mine}
    assert listed(staff, **{"from": "2000-01-01", "to": "2000-12-31"}) == []
    # Keyset pages: two, then the rest, no overlap.
    first = client.get(API, query_string={"limit": 2}, headers=staff.headers).get_json()
    rest = client.get(API, query_string={"limit": 2, "cursor": first["next_cursor"]},
                      headers=staff.headers).get_json()  # fmt: skip
    assert [i["reference"] for i in first["items"] + rest["items"]] == everyone[::-1]
    assert rest["next_cursor"] is None
    # Single reads: one's own, not another's.
    one = client.get(f"{API}/{mine[0]['id']}", headers=customer.headers)
    assert one.status_code == 200
    assert one.get_json()["state"] == "success"
    assert_problem(client.get(f"{API}/{mine[0]['id']}", headers=other.headers), 404)


def test_providers_admin_never_returns_secret_values(
    app: Flask, client: FlaskClient, staff: Caller, admin: Caller, customer: Caller
) -> None:
    listed = client.get(f"{API}/providers", headers=staff.headers)
    assert listed.status_code == 200, listed.get_json()
    providers = {p["code"]: p for p in listed.get_json()}
    assert set(providers) >= {"bank_transfer", "demo"}
    assert providers["demo"]["secrets_set"] == ["webhook_secret"]
    assert providers["demo"]["state"] == "test"
    secret = provider_secret(app)
    assert secret not in listed.get_data(as_text=True)
    new_secret = "a-new-webhook-secret-" + "z" * 20
    changed = client.patch(
        f"{API}/providers/demo",
        json={"secrets": {"webhook_secret": new_secret}, "fee_fixed": "100"},
        headers=admin.headers,
    )
    assert changed.status_code == 200, changed.get_json()
    assert new_secret not in changed.get_data(as_text=True)
    assert changed.get_json()["fee_fixed"] == "100.00"
    assert provider_secret(app) == new_secret
    assert_problem(client.patch(f"{API}/providers/demo", json={"state": "enabled"},
                                headers=staff.headers), 403)  # fmt: skip
    assert_problem(client.get(f"{API}/providers", headers=customer.headers), 403)
    unknown = client.patch(f"{API}/providers/demo", json={"secrets": {"api_key": "x" * 20}},
                           headers=admin.headers)  # fmt: skip
    assert_problem(unknown, 422)
    bank = client.patch(
        f"{API}/providers/bank_transfer",
        json={"settings": {"account_number": "123-456-7890"}},
        headers=admin.headers,
    )
    assert bank.get_json()["settings"]["account_number"] == "123-456-7890"


def test_the_demo_gateway_can_never_be_enabled_in_production() -> None:
    gateway = DemoGateway()
    for state in ("enabled", "test"):
        with pytest.raises(Invalid):
            gateway.check_state(state, True)
    gateway.check_state("disabled", True)
    gateway.check_state("test", False)
    gateway.check_state("enabled", False)
    assert gateway.defaults(True)["state"] == "disabled"


def test_the_demo_gateway_never_takes_money_in_production(
    app: Flask,
    make_app: Callable[..., Flask],
    client: FlaskClient,
    customer: Caller,
    admin: Caller,
    product: MadeProduct,
    services: Services,
) -> None:
    """Its row left in ``test`` (made before going live): an app in production still refuses
    paying with it, its notifications, its checkout page and any state but disabled."""
    tx = place_with_provider(client, customer, product.id)["transaction"]
    secret = provider_secret(app)
    live = make_app(env="production").test_client()
    body = order_body((product.id, "1"), payment={"provider": "demo"})
    refused = live.post(f"{MARKETPLACE}/orders", json=body, headers=customer.headers)
    assert_problem(refused, 422, "provider-unavailable")
    invoice = client.get(f"{API}/{tx['id']}", headers=customer.headers).get_json()["invoice"]
    assert_problem(pay(live, customer, {"invoice": invoice, "provider": "demo"}), 422,
                   "provider-unavailable")  # fmt: skip
    assert_problem(notify(live, secret, notification(tx, "success")), 404)
    checkout = urlsplit(tx["action"]["url"]).path
    page = live.get(checkout)
    assert page.status_code == 404
    assert b"<form" not in page.data
    chosen = live.post(checkout, data={"outcome": "success"})
    assert chosen.status_code == 404
    for state in ("test", "enabled"):
        changed = live.patch(f"{API}/providers/demo", json={"state": state}, headers=admin.headers)
        assert_problem(changed, 422)
    disabled = live.patch(f"{API}/providers/demo", json={"state": "disabled"},
                          headers=admin.headers)  # fmt: skip
    assert disabled.status_code == 200, disabled.get_json()
    assert tx_row(services, tx["reference"])["state"] == "pending"
    assert counts(services, ("payment_transaction",)) == {"payment_transaction": 1}
    assert ledger_operations(app).count("PAYMENT_CAPTURE") == 0


def test_an_order_without_provider_keeps_todays_behaviour(
    client: FlaskClient, customer: Caller, product: MadeProduct, services: Services
) -> None:
    body = place(client, customer, order_body((product.id, "1")))
    assert "transaction" not in body
    assert body["invoice"]["payment_state"] == "in_payment"
    assert counts(services, ("payment_transaction",)) == {"payment_transaction": 0}
    both = order_body((product.id, "1"), payment={"method": "cash", "provider": "demo"})
    bad = client.post(f"{MARKETPLACE}/orders", json=both, headers=customer.headers)
    assert_problem(bad, 422)
    unknown = order_body((product.id, "1"), payment={"provider": "nope"})
    refused = client.post(f"{MARKETPLACE}/orders", json=unknown, headers=customer.headers)
    assert_problem(refused, 422, "provider-unavailable")
    assert counts(services, ("marketplace_sale_order",)) == {"marketplace_sale_order": 1}


def test_the_database_refuses_a_broken_transaction_row(
    client: FlaskClient, customer: Caller, product: MadeProduct, services: Services
) -> None:
    import psycopg

    tx = place_with_provider(client, customer, product.id)["transaction"]
    for change in (
        "net = net + 1",
        "state = 'done'",
        "fee = amount + 1, net = -1",
        "state = 'success', account_payment_id = NULL",
    ):
        with pytest.raises(psycopg.errors.IntegrityError):
            statement = f"UPDATE payment_transaction SET {change} WHERE reference = %s"  # noqa: S608
            execute(services, statement, tx["reference"])
    assert tx_row(services, tx["reference"])["state"] == "pending"


def test_the_order_answer_documents_the_transactions_real_path(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    described = spec["components"]["schemas"]["Placed"]["properties"]["transaction"]["description"]
    path = re.search(r"GET (/api/\S+)", described).group(1)  # type: ignore[union-attr]

    def shape(template: str) -> str:
        return re.sub(r"\{[^}]+\}", "{}", template)

    operations = {shape(known): item for known, item in spec["paths"].items()}
    assert "get" in operations.get(shape(path), {}), path
