"""The whole flow over HTTP: place, pay, confirm, cancel, with exact states and amounts.

IDR and USD orders, 11% tax rounded half-up per line, partial then further payments, credit
notes, and the outbox events a placed order leaves behind.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app.dumping import fast_dump
from app.security import Principal
from modules.marketplace import services
from modules.marketplace.schemas import PlacedSchema
from tests.modules.conftest import Caller
from tests.servers import Services

from .conftest import (
    MARKETPLACE_EVENTS,
    YEAR,
    MadeProduct,
    assert_problem,
    created,
    get,
    order_body,
    place,
    post,
    sql,
)


def test_idr_order_partial_payment_then_further_payment_then_paid(
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    make_product: Callable[..., MadeProduct],
) -> None:
    tuna = make_product("37000")
    small = make_product("20.30", name="LELE")
    # 2.5 x 37000 = 92500.00, tax 10175.00; 5 x 20.30 = 101.50, tax 11.165 -> 11.17 (half-up).
    body = order_body(
        (tuna.id, "2.5"),
        {"product": small.id, "quantity": "5", "price_unit": "20.30"},
        payment={"method": "bank_transfer", "amount": "50000.00", "reference": "TRX-1"},
    )
    placed = place(client, customer, body)

    order, invoice, payment = placed["order"], placed["invoice"], placed["payment"]
    assert order["number"] == f"SO/{YEAR}/00001"
    assert order["state"] == "sale"
    assert order["customer"] == str(customer.uuid)
    assert (order["currency"], order["currency_rate"], order["tax_percent"]) == ("IDR", "1", "11")
    assert (order["amount_untaxed"], order["amount_tax"], order["amount_total"]) == (
        "92601.50",
        "10186.17",
        "102787.67",
    )
    assert [
        (line["product"], line["quantity"], line["price_unit"], line["price_subtotal"],
         line["price_tax"], line["price_total"])
        for line in order["lines"]
    ] == [
        (tuna.id, "2.5", "37000.00", "92500.00", "10175.00", "102675.00"),
        (small.id, "5", "20.30", "101.50", "11.17", "112.67"),
    ]  # fmt: skip
    assert order["cancelled_at"] is None
    assert order["date_order"].endswith(("Z", "+00:00"))

    assert invoice["number"] == f"INV/{YEAR}/00001"
    assert (invoice["move_type"], invoice["state"], invoice["payment_state"]) == (
        "out_invoice",
        "posted",
        "partial",
    )
    assert invoice["order"] == order["id"]
    assert (invoice["amount_total"], invoice["amount_residual"]) == ("102787.67", "52787.67")
    assert (invoice["amount_untaxed"], invoice["amount_tax"]) == ("92601.50", "10186.17")
    assert invoice["reversed_entry"] is None
    assert len(invoice["lines"]) == 2
    assert invoice["invoice_date_due"] > invoice["invoice_date"]

    assert payment["number"] == f"PAY/{YEAR}/00001"
    assert (payment["state"], payment["amount"], payment["currency"]) == (
        "in_process",
        "50000.00",
        "IDR",
    )
    assert (payment["method"], payment["reference"], payment["invoice"]) == (
        "bank_transfer",
        "TRX-1",
        invoice["id"],
    )

    # Staff confirm the first payment: it is paid, the invoice is still partial.
    confirmed = created(post(client, staff, f"/payments/{payment['id']}/confirm"), 200)
    assert confirmed["state"] == "paid"
    assert confirmed["confirmed_at"] is not None
    shown = created(get(client, customer, f"/invoices/{invoice['id']}"), 200)
    assert (shown["payment_state"], shown["amount_residual"]) == ("partial", "52787.67")

    # A further payment of the rest (amount defaults to the residual): in_payment, residual 0.
    second = created(
        post(client, customer, f"/invoices/{invoice['id']}/payments", {"method": "cash"})
    )
    assert second["number"] == f"PAY/{YEAR}/00002"
    assert (second["state"], second["amount"], second["method"]) == (
        "in_process",
        "52787.67",
        "cash",
    )
    shown = created(get(client, customer, f"/invoices/{invoice['id']}"), 200)
    assert (shown["payment_state"], shown["amount_residual"]) == ("in_payment", "0.00")

    # Nothing more can be paid.
    assert_problem(
        post(client, customer, f"/invoices/{invoice['id']}/payments", {"method": "cash"}), 409
    )

    # Confirming the second payment makes the invoice paid; confirming twice is harmless.
    assert created(post(client, staff, f"/payments/{second['id']}/confirm"), 200)["state"] == "paid"
    assert created(post(client, staff, f"/payments/{second['id']}/confirm"), 200)["state"] == "paid"
    detail = created(get(client, customer, f"/orders/{order['id']}"), 200)
    assert detail["order"]["state"] == "sale"
    assert [
        (i["number"], i["payment_state"], i["amount_residual"]) for i in detail["invoices"]
    ] == [(f"INV/{YEAR}/00001", "paid", "0.00")]
    assert [(p["number"], p["state"], p["amount"]) for p in detail["payments"]] == [
        (f"PAY/{YEAR}/00001", "paid", "50000.00"),
        (f"PAY/{YEAR}/00002", "paid", "52787.67"),
    ]

    # Once money is confirmed the order cannot be cancelled, by staff or the customer.
    refused = assert_problem(post(client, staff, f"/orders/{order['id']}/cancel"), 409)
    assert f"PAY/{YEAR}/00001" in refused["detail"]
    assert_problem(post(client, customer, f"/orders/{order['id']}/cancel"), 409)
    assert created(get(client, customer, f"/orders/{order['id']}"), 200)["order"]["state"] == "sale"


def test_usd_order_converts_the_idr_price_and_stores_the_rate(
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    make_product: Callable[..., MadeProduct],
    services: Services,
) -> None:
    tuna = make_product("37000")  # 37000 x 0.0000625 = 2.3125 -> 2.31 USD
    shrimp = make_product("54500", name="UDANG VANAME")  # 3.40625 -> 3.41 USD
    body = order_body(
        {"product": tuna.id, "quantity": "3", "price_unit": "2.31"},
        (shrimp.id, "1.5"),
        currency="USD",
    )
    placed = place(client, customer, body)
    order, invoice, payment = placed["order"], placed["invoice"], placed["payment"]
    assert (order["currency"], order["currency_rate"]) == ("USD", "0.0000625")
    # 3 x 2.31 = 6.93, tax 0.7623 -> 0.76; 1.5 x 3.41 = 5.115 -> 5.12, tax 0.5632 -> 0.56.
    assert [
        (line["price_unit"], line["price_subtotal"], line["price_tax"], line["price_total"])
        for line in order["lines"]
    ] == [("2.31", "6.93", "0.76", "7.69"), ("3.41", "5.12", "0.56", "5.68")]
    assert (order["amount_untaxed"], order["amount_tax"], order["amount_total"]) == (
        "12.05",
        "1.32",
        "13.37",
    )
    assert (invoice["currency"], invoice["amount_total"], invoice["amount_residual"]) == (
        "USD",
        "13.37",
        "0.00",
    )
    assert invoice["payment_state"] == "in_payment"
    assert (payment["amount"], payment["currency"], payment["state"]) == (
        "13.37",
        "USD",
        "in_process",
    )
    stored = sql(services, "SELECT currency_rate, rate_source FROM marketplace_sale_order")
    assert [(str(rate.normalize()), source) for rate, source in stored] == [("0.0000625", "fixed")]

    assert (
        created(post(client, staff, f"/payments/{payment['id']}/confirm"), 200)["state"] == "paid"
    )
    shown = created(get(client, staff, f"/invoices/{invoice['id']}"), 200)
    assert (shown["payment_state"], shown["amount_residual"]) == ("paid", "0.00")


def test_a_usd_order_cannot_be_paid_in_cash(
    client: FlaskClient, customer: Caller, product: MadeProduct, services: Services
) -> None:
    body = order_body((product.id, "1"), currency="USD", payment={"method": "cash"})
    problem = assert_problem(post(client, customer, "/orders", body), 422)
    assert problem["step"] == "payment"
    assert sql(services, "SELECT count(*) FROM marketplace_sale_order") == [(0,)]


def test_cancel_before_confirmation_reverses_the_invoice_with_a_credit_note(
    client: FlaskClient,
    customer: Caller,
    log_in_as: Callable[..., Caller],
    product: MadeProduct,
    services: Services,
) -> None:
    placed = place(
        client,
        customer,
        order_body((product.id, "2"), payment={"method": "cash", "amount": "30000"}),
    )
    order, invoice, payment = placed["order"], placed["invoice"], placed["payment"]
    assert invoice["payment_state"] == "partial"
    # 2 x 37000 = 74000 + 8140 tax = 82140; 30000 paid, 52140 due.
    assert (invoice["amount_total"], invoice["amount_residual"]) == ("82140.00", "52140.00")

    # Another customer does not even learn the order exists.
    stranger = log_in_as("customer")
    assert_problem(post(client, stranger, f"/orders/{order['id']}/cancel"), 404)

    cancelled = created(post(client, customer, f"/orders/{order['id']}/cancel"), 200)
    assert cancelled["state"] == "cancel"
    assert cancelled["cancelled_at"] is not None

    detail = created(get(client, customer, f"/orders/{order['id']}"), 200)
    assert detail["order"]["state"] == "cancel"
    original, credit_note = detail["invoices"]
    assert (original["id"], original["state"], original["payment_state"]) == (
        invoice["id"],
        "posted",
        "reversed",
    )
    assert original["amount_residual"] == "0.00"
    assert credit_note["number"] == f"RINV/{YEAR}/00001"
    assert (credit_note["move_type"], credit_note["state"], credit_note["reversed_entry"]) == (
        "out_refund",
        "posted",
        invoice["id"],
    )
    assert (credit_note["amount_total"], credit_note["amount_tax"]) == ("82140.00", "8140.00")
    assert [(p["id"], p["state"]) for p in detail["payments"]] == [(payment["id"], "canceled")]
    assert detail["payments"][0]["cancelled_at"] is not None

    shown = created(get(client, customer, f"/invoices/{credit_note['id']}"), 200)
    assert shown["reversed_entry"] == invoice["id"]

    # A cancelled payment cannot be confirmed; a reversed invoice takes no further payment.
    staff = log_in_as("staff")
    assert_problem(post(client, staff, f"/payments/{payment['id']}/confirm"), 409)
    assert_problem(
        post(client, customer, f"/invoices/{invoice['id']}/payments", {"method": "cash"}), 409
    )
    assert_problem(
        post(client, customer, f"/invoices/{credit_note['id']}/payments", {"method": "cash"}), 409
    )
    # Cancelling again changes nothing and burns no second credit-note number.
    assert created(post(client, staff, f"/orders/{order['id']}/cancel"), 200)["state"] == "cancel"
    assert sql(
        services, "SELECT name FROM marketplace_account_move WHERE move_type = 'out_refund'"
    ) == [(f"RINV/{YEAR}/00001",)]

    query = "SELECT name FROM core_outbox_event WHERE " + MARKETPLACE_EVENTS  # noqa: S608
    names = [row[0] for row in sql(services, query + " ORDER BY id")]
    assert names[-2:] == ["order.cancelled", "invoice.reversed"]


def test_staff_order_for_a_customer_and_staff_cancel(
    client: FlaskClient, staff: Caller, customer: Caller, product: MadeProduct
) -> None:
    placed = place(client, staff, order_body((product.id, "1"), customer=str(customer.uuid)))
    assert placed["order"]["customer"] == str(customer.uuid)
    assert placed["invoice"]["payment_state"] == "in_payment"
    assert placed["invoice"]["customer"] == str(customer.uuid)
    assert placed["payment"]["customer"] == str(customer.uuid)
    # The customer sees it as theirs.
    assert created(get(client, customer, f"/orders/{placed['order']['id']}"), 200)
    cancelled = created(post(client, staff, f"/orders/{placed['order']['id']}/cancel"), 200)
    assert cancelled["state"] == "cancel"
    shown = created(get(client, customer, f"/invoices/{placed['invoice']['id']}"), 200)
    assert shown["payment_state"] == "reversed"


def test_placing_an_order_records_the_three_events_in_the_outbox(
    client: FlaskClient, customer: Caller, product: MadeProduct, services: Services
) -> None:
    placed = place(client, customer, order_body((product.id, "1")))
    query = "SELECT name, payload FROM core_outbox_event WHERE " + MARKETPLACE_EVENTS  # noqa: S608
    rows = sql(services, query + " ORDER BY id")
    by_name = {name: payload for name, payload in rows}
    # Three facts of one transaction; invoice.posted is written last, once its number is taken.
    assert sorted(name for name, _ in rows) == [
        "invoice.posted",
        "order.confirmed",
        "payment.registered",
    ]
    assert by_name["order.confirmed"]["order"] == placed["order"]["id"]
    assert by_name["order.confirmed"]["name"] == f"SO/{YEAR}/00001"
    assert by_name["order.confirmed"]["amount_total"] == "41070.00"  # a string, never a float
    assert by_name["invoice.posted"]["invoice"] == placed["invoice"]["id"]
    assert by_name["invoice.posted"]["name"] == f"INV/{YEAR}/00001"
    assert by_name["payment.registered"]["payment"] == placed["payment"]["id"]
    assert by_name["payment.registered"]["amount"] == "41070.00"


def test_confirming_a_payment_needs_staff(
    client: FlaskClient, customer: Caller, product: MadeProduct
) -> None:
    placed = place(client, customer, order_body((product.id, "1")))
    assert_problem(post(client, customer, f"/payments/{placed['payment']['id']}/confirm"), 403)
    shown = created(get(client, customer, f"/payments/{placed['payment']['id']}"), 200)
    assert shown["state"] == "in_process"


def test_the_order_answer_points_at_the_order(
    client: FlaskClient, customer: Caller, product: MadeProduct
) -> None:
    response = post(client, customer, "/orders", order_body((product.id, "1")))
    assert response.status_code == 201
    order_id = response.get_json()["order"]["id"]
    assert response.headers["Location"].endswith(f"/api/v1/marketplace/orders/{order_id}")


def test_a_product_can_be_ordered_by_its_feed_uuid(
    client: FlaskClient, customer: Caller, make_product: Callable[..., MadeProduct]
) -> None:
    feed_uuid = "72af7ab1-44bf-4d18-8445-6d462dc4e075"
    made = make_product("54500", feed_uuid=feed_uuid)
    placed = place(client, customer, order_body((feed_uuid.upper(), "1")))
    assert placed["order"]["lines"][0]["product"] == made.id
    assert placed["order"]["amount_total"] == "60495.00"


def test_the_placed_answer_is_what_its_schema_dumps(
    app: Flask, customer: Caller, make_product: Callable[..., MadeProduct]
) -> None:
    # The write paths answer through app.dumping.fast_dump: exactly PlacedSchema().dump.
    fish, rice = make_product("37000"), make_product("12500.50", name="BERAS")
    actor = Principal(customer.user_id, customer.uuid, customer.email, "customer")
    order = services.OrderRequest(
        lines=[
            services.LineRequest(fish.id, Decimal("2.5")),
            services.LineRequest(rice.id, Decimal(3)),
        ],
        payment=services.PaymentRequest(method="bank_transfer", amount=Decimal("5.01")),
        currency="USD",
    )
    fast = fast_dump(PlacedSchema())

    def both(placed: services.Placed) -> dict[str, Any]:
        return {"schema": PlacedSchema().dump(placed), "fast": fast(placed)}

    with app.test_request_context():
        _, body = services.place_order(actor, order, None, both)
    assert body["fast"] == body["schema"]
    assert body["fast"]["order"]["lines"][1]["quantity"] == "3"
