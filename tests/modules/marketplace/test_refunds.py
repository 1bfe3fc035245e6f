"""Refunds over HTTP: who may refund and read them, idempotency, marking them done, the rules
under concurrency, and the embedded default."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from decimal import Decimal

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.db import Session, transaction
from modules.ledger.verify import verify
from modules.marketplace.models import Product
from modules.user.services import create_user
from tests.modules.conftest import PASSWORD, Caller, bearer, login
from tests.servers import Services

from .conftest import (
    API,
    YEAR,
    MadeProduct,
    assert_problem,
    get,
    new_key,
    order_body,
    place,
    post,
    sql,
)
from .test_concurrency import in_parallel
from .test_ledger import assert_consistent, nonzero

D = Decimal


def paid_order(client: FlaskClient, customer: Caller, staff: Caller, product: MadeProduct) -> dict:
    placed = place(client, customer, order_body((product.id, "1")))  # 41,070.00
    confirmed = post(client, staff, f"/payments/{placed['payment']['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.get_json()
    return placed


def test_20_concurrent_refunds_of_10_percent_exactly_10_succeed_with_gap_free_credit_notes(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    product: MadeProduct,
    services: Services,
) -> None:
    placed = paid_order(client, customer, staff, product)
    payment_id = placed["payment"]["id"]
    responses = in_parallel(
        app,
        20,
        lambda c, i: post(
            c, staff, f"/payments/{payment_id}/refunds", {"amount": "4107.00", "reason": f"r{i}"}
        ),
    )
    assert Counter(r.status_code for r in responses) == {201: 10, 422: 10}, [
        r.get_json() for r in responses if r.status_code not in (201, 422)
    ]
    for response in responses:
        if response.status_code == 422:
            assert_problem(response, 422, "refund-exceeds-payment")
    ((refunded,),) = sql(services, "SELECT sum(amount) FROM marketplace_refund")
    assert refunded == D("41070.00")
    notes = sorted(
        row[0]
        for row in sql(
            services, "SELECT name FROM marketplace_account_move WHERE move_type = 'out_refund'"
        )
    )
    assert notes == [f"RINV/{YEAR}/{n:05d}" for n in range(1, 11)]
    shown = sorted(r.get_json()["credit_note_number"] for r in responses if r.status_code == 201)
    assert shown == notes
    invoice = get(client, staff, f"/invoices/{placed['invoice']['id']}").get_json()
    assert invoice["payment_state"] == "reversed"
    assert nonzero(app) == {}
    assert_consistent(app)


def test_only_a_confirmed_payment_is_refunded(
    app: Flask, client: FlaskClient, customer: Caller, staff: Caller, product: MadeProduct
) -> None:
    placed = place(client, customer, order_body((product.id, "1")))
    response = post(
        client, staff, f"/payments/{placed['payment']['id']}/refunds", {"reason": "changed mind"}
    )
    body = assert_problem(response, 409, "payment-not-refundable")
    assert body["state"] == "in_process"
    assert get(client, staff, f"/payments/{placed['payment']['id']}/refunds").get_json() == {
        "items": [],
        "next_cursor": None,
    }


def test_refund_amounts_are_checked(
    client: FlaskClient, customer: Caller, staff: Caller, product: MadeProduct
) -> None:
    placed = paid_order(client, customer, staff, product)
    path = f"/payments/{placed['payment']['id']}/refunds"
    assert_problem(post(client, staff, path, {"amount": "41070.01", "reason": "x"}), 422)
    assert_problem(post(client, staff, path, {"amount": "0", "reason": "x"}), 422)
    assert_problem(post(client, staff, path, {"amount": "1.001", "reason": "x"}), 422)
    assert_problem(post(client, staff, path, {"amount": "1.00"}), 422)  # no reason
    assert_problem(post(client, staff, path, {"amount": "1.00", "reason": ""}), 422)


def test_who_refunds_and_who_reads_refunds(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    log_in_as: Callable[..., Caller],
    product: MadeProduct,
    services: Services,
) -> None:
    other = log_in_as("customer")
    seller = log_in_as("seller")
    placed = paid_order(client, customer, staff, product)
    payment_id = placed["payment"]["id"]
    path = f"/payments/{payment_id}/refunds"
    assert_problem(post(client, customer, path, {"reason": "mine"}), 403)
    assert_problem(post(client, seller, path, {"reason": "mine"}), 403)

    key = new_key()
    first = post(client, staff, path, {"amount": "1000.00", "reason": "late"}, key)
    assert first.status_code == 201, first.get_json()
    refund = first.get_json()
    assert first.headers["Location"].endswith(f"/refunds/{refund['id']}")
    replay = post(client, staff, path, {"amount": "1000.00", "reason": "late"}, key)
    assert replay.status_code == 201
    assert replay.get_json() == refund
    assert_problem(
        post(client, staff, path, {"amount": "2000.00", "reason": "late"}, key),
        422,
        "idempotency-key-reused",
    )
    assert sql(services, "SELECT count(*) FROM marketplace_refund") == [(1,)]

    for reader in (staff, customer):
        assert get(client, reader, f"/refunds/{refund['id']}").get_json() == refund
        assert get(client, reader, path).get_json()["items"] == [refund]
    for stranger in (other, seller):
        assert_problem(get(client, stranger, f"/refunds/{refund['id']}"), 404)
        assert_problem(get(client, stranger, path), 404)

    assert_problem(post(client, customer, f"/refunds/{refund['id']}/done"), 403)
    done = post(client, staff, f"/refunds/{refund['id']}/done")
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["state"] == "succeeded"
    assert done.get_json()["confirmed_at"] is not None
    again = post(client, staff, f"/refunds/{refund['id']}/done")
    assert again.get_json() == done.get_json()
    events = sql(
        services,
        "SELECT name, payload->>'state' FROM core_outbox_event "
        "WHERE name LIKE 'refund.%' ORDER BY id",
    )
    assert events == [("refund.created", "pending"), ("refund.succeeded", "succeeded")]
    assert_problem(get(client, staff, "/refunds/00000000-0000-0000-0000-000000000000"), 404)
    assert_consistent(app)


def test_on_embedded_sqlite_an_order_is_placed_confirmed_refunded_and_the_ledger_verifies(
    make_embedded_app: Callable[..., Flask],
) -> None:
    app = make_embedded_app()
    with app.app_context(), transaction():
        create_user("staff@example.test", role="staff", password=PASSWORD)
        create_user("buyer@example.test", role="customer", password=PASSWORD)
        seller = create_user("seller@example.test", role="seller", password=PASSWORD)
        Session().add(Product(name="BANDENG", list_price=D("37000"), seller_id=seller.id))
    client = app.test_client()
    staff = bearer(login(client, "staff@example.test").get_json()["access_token"])
    buyer = bearer(login(client, "buyer@example.test").get_json()["access_token"])
    with app.app_context():
        product_id = str(Session().scalars(select(Product.uuid)).one())
    placed = client.post(
        f"{API}/orders",
        json={"lines": [{"product": product_id, "quantity": "1"}], "payment": {"method": "cash"}},
        headers=buyer,
    ).get_json()
    payment_id = placed["payment"]["id"]
    assert client.post(f"{API}/payments/{payment_id}/confirm", headers=staff).status_code == 200
    part = client.post(
        f"{API}/payments/{payment_id}/refunds",
        json={"amount": "1070.00", "reason": "one damaged"},
        headers=staff,
    )
    assert part.status_code == 201, part.get_json()
    assert part.get_json()["credit_note_number"] == f"RINV/{YEAR}/00001"
    rest = client.post(
        f"{API}/payments/{payment_id}/refunds", json={"reason": "all of it"}, headers=staff
    )
    assert rest.status_code == 201, rest.get_json()
    assert rest.get_json()["amount"] == "40000.00"
    listed = client.get(f"{API}/payments/{payment_id}/refunds", headers=buyer).get_json()
    assert [r["amount"] for r in listed["items"]] == ["1070.00", "40000.00"]
    cancelled = client.post(f"{API}/orders/{placed['order']['id']}/cancel", headers=buyer)
    assert cancelled.status_code == 200, cancelled.get_json()
    assert nonzero(app) == {}
    with app.app_context():
        assert verify().ok
