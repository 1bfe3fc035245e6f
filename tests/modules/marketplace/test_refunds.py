"""Refunds over HTTP: who may refund and read them, idempotency, marking them done, the rules
under concurrency, and the embedded default."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from decimal import Decimal

import psycopg
from flask import Flask
from flask.testing import FlaskClient

from modules.ledger.verify import verify
from tests.modules.conftest import Caller
from tests.servers import Services

from .conftest import (
    YEAR,
    MadeProduct,
    assert_problem,
    confirm,
    get,
    in_parallel,
    new_key,
    order_body,
    paid_order,
    place,
    post,
    shop_in,
    sql,
)
from .test_ledger import assert_consistent, nonzero

D = Decimal


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
    shop = shop_in(app, sold_by_a_seller=True)
    client, staff, buyer = shop.client, shop.staff, shop.buyer
    placed = place(client, buyer, order_body((shop.product.id, "1"), payment={"method": "cash"}))
    payment_id = placed["payment"]["id"]
    confirm(client, staff, payment_id)
    part = post(
        client,
        staff,
        f"/payments/{payment_id}/refunds",
        {"amount": "1070.00", "reason": "one damaged"},
    )
    assert part.status_code == 201, part.get_json()
    assert part.get_json()["credit_note_number"] == f"RINV/{YEAR}/00001"
    rest = post(client, staff, f"/payments/{payment_id}/refunds", {"reason": "all of it"})
    assert rest.status_code == 201, rest.get_json()
    assert rest.get_json()["amount"] == "40000.00"
    listed = get(client, buyer, f"/payments/{payment_id}/refunds").get_json()
    assert [r["amount"] for r in listed["items"]] == ["1070.00", "40000.00"]
    cancelled = post(client, buyer, f"/orders/{placed['order']['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.get_json()
    assert nonzero(app) == {}
    with app.app_context():
        assert verify().ok


def test_a_database_refusal_at_confirm_or_refund_is_a_503_that_saved_nothing(
    make_app: Callable[..., Flask], services: Services
) -> None:
    # The app's connections give up on a lock after 300 ms; the ledger's chain head is held
    # elsewhere, so the posting at the end of each change is refused.
    app = make_app(database_url=f"{services.database_url}?options=-c%20lock_timeout%3D300")
    shop = shop_in(app)
    client, staff = shop.client, shop.staff
    placed = place(client, shop.buyer, order_body((shop.product.id, "1")))
    payment_id = placed["payment"]["id"]

    def blocked(path: str, body: dict | None = None):  # type: ignore[no-untyped-def]
        with psycopg.connect(services.database_url.replace("+psycopg", "")) as blocker:
            blocker.execute("SELECT * FROM ledger_chain FOR UPDATE")
            return post(client, staff, path, body)

    refused = blocked(f"/payments/{payment_id}/confirm")
    assert assert_problem(refused, 503)["detail"].endswith("nothing was saved, try again")
    assert refused.headers["Retry-After"].isdigit()
    assert sql(services, "SELECT state FROM marketplace_payment") == [("in_process",)]
    assert post(client, staff, f"/payments/{payment_id}/confirm").status_code == 200

    refund = {"amount": "100.00", "reason": "damaged"}
    assert_problem(blocked(f"/payments/{payment_id}/refunds", refund), 503)
    assert sql(services, "SELECT count(*) FROM marketplace_refund") == [(0,)]
    assert post(client, staff, f"/payments/{payment_id}/refunds", refund).status_code == 201
    with app.app_context():
        assert verify().ok


def test_many_small_refunds_credit_each_line_exactly_what_it_was_invoiced(
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    make_product: Callable[..., MadeProduct],
    log_in_as: Callable[..., Caller],
    services: Services,
) -> None:
    # Two sellers' lines of 1.00 + 11% tax: 2.22, refunded 0.03 at a time (74 refunds). Each
    # credit note splits over what each line has left, so the odd cents cannot pile up on the
    # first line: each line ends credited exactly its 1.00 and 0.11, as the ledger took back.
    sellers = [log_in_as("seller").user_id for _ in range(2)]
    lines = [(make_product("1.00", seller_id=seller).id, "1") for seller in sellers]
    placed = place(client, customer, order_body(*lines))
    payment_id = placed["payment"]["id"]
    assert post(client, staff, f"/payments/{payment_id}/confirm").status_code == 200
    for index in range(74):
        refund = {"amount": "0.03", "reason": f"part {index}"}
        assert post(client, staff, f"/payments/{payment_id}/refunds", refund).status_code == 201

    credited = sql(
        services,
        "SELECT l.sequence, sum(l.price_subtotal), sum(l.price_tax), min(l.price_subtotal)"
        " FROM marketplace_account_move_line l JOIN marketplace_account_move m"
        " ON m.id = l.move_id WHERE m.move_type = 'out_refund' GROUP BY l.sequence"
        " ORDER BY l.sequence",
    )
    assert [(sequence, subtotal, tax) for sequence, subtotal, tax, _ in credited] == [
        (0, D("1.00"), D("0.11")),
        (1, D("1.00"), D("0.11")),
    ]
    assert all(smallest >= 0 for *_, smallest in credited)
    pending = sql(services, "SELECT balance FROM ledger_account WHERE purpose = 'seller_pending'")
    assert pending == [(D("0.00"),), (D("0.00"),)]
