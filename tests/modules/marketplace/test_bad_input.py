"""Bad input: each a clear 4xx problem+json, and nothing written.

Cases share one app and one set of users (logins are the slow part), and every failed case is
reported together, with its label.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient

from tests.modules.conftest import Caller
from tests.servers import Services

from .conftest import (
    PROBLEM,
    MadeProduct,
    assert_problem,
    counts,
    nothing_written,
    order_body,
    place,
    post,
)

Case = tuple[str, dict[str, Any], int, str | None]


def check(
    client: FlaskClient, caller: Caller, cases: list[Case], services: Services
) -> list[dict[str, Any]]:
    failures, problems = [], []
    for label, body, status, where in cases:
        response = post(client, caller, "/orders", body)
        problem = response.get_json() or {}
        if (
            response.status_code != status
            or response.content_type != PROBLEM
            or (where is not None and where not in str(problem.get("errors", problem)))
        ):
            failures.append((label, response.status_code, problem))
        problems.append(problem)
    assert failures == []
    nothing_written(services)
    return problems


def test_bad_lines_are_refused(
    client: FlaskClient,
    customer: Caller,
    make_product: Callable[..., MadeProduct],
    services: Services,
) -> None:
    good = make_product("37000").id
    gone = make_product("1000", name="BAWAL", active=False).id

    def line(quantity: Any, product: str = good, **extra: Any) -> dict[str, Any]:
        return order_body({"product": product, "quantity": quantity, **extra})

    cases: list[Case] = [
        ("unknown product", line("1", str(uuid.uuid4())), 422, "lines.0.product"),
        ("unknown feed uuid", line("1", "no-such-listing"), 422, "lines.0.product"),
        ("inactive product", line("1", gone), 422, "lines.0.product"),
        ("zero", line("0"), 422, "lines.0.quantity"),
        ("negative", line("-1"), 422, "lines.0.quantity"),
        ("huge", line("1e9"), 422, "lines.0.quantity"),
        ("above the maximum", line("100000.001"), 422, "lines.0.quantity"),
        ("four decimals", line("1.0001"), 422, "lines.0.quantity"),
        ("not a number", line("abc"), 422, "quantity"),
        ("a JSON float", line(1.5), 422, "quantity"),
        ("a boolean", line(True), 422, "quantity"),
        ("NaN", line("NaN"), 422, "quantity"),
        ("Infinity", line("Infinity"), 422, "quantity"),
        ("decimal comma", line("1,5"), 422, "quantity"),
        ("two dots", line("1.2.3"), 422, "quantity"),
        ("empty", line(""), 422, "quantity"),
        ("hex", line("0x10"), 422, "quantity"),
        ("too long", line("1" * 41), 422, "quantity"),
        ("malformed price_unit", line("1", price_unit="37.000,00"), 422, "price_unit"),
        ("no lines", order_body(), 422, "lines"),
        (
            "101 lines",
            order_body(*[(good, "1")] * 101),
            422,
            "lines",
        ),
        ("no lines key", {"payment": {"method": "cash"}}, 422, "lines"),
        ("no payment", {"lines": [{"product": good, "quantity": "1"}]}, 422, "payment"),
        ("line without quantity", order_body({"product": good}), 422, "quantity"),
        ("computed line field", line("1", price_subtotal="1.00"), 422, "price_subtotal"),
    ]
    check(client, customer, cases, services)


def test_bad_currency_and_payment_are_refused(
    client: FlaskClient, customer: Caller, product: MadeProduct, services: Services
) -> None:
    def order(**extra: Any) -> dict[str, Any]:
        return order_body((product.id, "1"), **extra)

    cases: list[Case] = [
        ("EUR", order(currency="EUR"), 422, "currency"),
        ("empty currency", order(currency=""), 422, "currency"),
        ("currency as a number", order(currency=360), 422, "currency"),
        ("unknown method", order(payment={"method": "crypto"}), 422, "method"),
        ("amount above total", order(payment={"method": "cash", "amount": "41070.01"}), 422,
         "payment.amount"),
        ("zero amount", order(payment={"method": "cash", "amount": "0"}), 422, "amount"),
        ("negative amount", order(payment={"method": "cash", "amount": "-5"}), 422, "amount"),
        ("sub-cent amount", order(payment={"method": "cash", "amount": "10.001"}), 422, "amount"),
        ("float amount", order(payment={"method": "cash", "amount": 10.5}), 422, "amount"),
        ("long reference", order(payment={"method": "cash", "reference": "x" * 201}), 422,
         "reference"),
    ]  # fmt: skip
    problems = check(client, customer, cases, services)
    over = problems[4]
    assert over["type"] == "urn:lapak:problem:payment-exceeds-residual"
    assert (over["step"], over["residual"]) == ("payment", "41070.00")


def test_a_price_that_is_not_the_catalogue_price_is_a_409_with_the_current_price(
    client: FlaskClient,
    customer: Caller,
    make_product: Callable[..., MadeProduct],
    services: Services,
) -> None:
    cheap = make_product("1000")
    product = make_product("37000")
    body = order_body(
        (cheap.id, "1"), {"product": product.id, "quantity": "1", "price_unit": "36000"}
    )
    problem = assert_problem(post(client, customer, "/orders", body), 409, "price-changed")
    assert (problem["current_price"], problem["currency"], problem["line"]) == (
        "37000.00",
        "IDR",
        1,
    )
    assert problem["product"] == product.id
    assert problem["step"] == "order"
    # USD: the converted price is the one compared.
    usd = order_body({"product": product.id, "quantity": "1", "price_unit": "2.32"}, currency="USD")
    problem = assert_problem(post(client, customer, "/orders", usd), 409, "price-changed")
    assert (problem["current_price"], problem["currency"]) == ("2.31", "USD")
    nothing_written(services)


def test_a_customer_cannot_set_what_the_server_computes_or_order_for_someone_else(
    client: FlaskClient,
    customer: Caller,
    log_in_as: Callable[..., Caller],
    product: MadeProduct,
    services: Services,
) -> None:
    other = log_in_as("customer")
    cases: list[Case] = [
        ("state", order_body((product.id, "1"), state="draft"), 422, "state"),
        ("amount_total", order_body((product.id, "1"), amount_total="1.00"), 422, "amount_total"),
        ("id", order_body((product.id, "1"), id=str(uuid.uuid4())), 422, "id"),
        ("payment state", order_body((product.id, "1"),
                                     payment={"method": "cash", "state": "paid"}), 422, "state"),
        ("someone else", order_body((product.id, "1"), customer=str(other.uuid)), 403, None),
        ("not a uuid", order_body((product.id, "1"), customer="me"), 422, "customer"),
    ]  # fmt: skip
    problems = check(client, customer, cases, services)
    assert problems[4]["type"] == "urn:lapak:problem:forbidden"
    # Naming themself is allowed.
    placed = place(client, customer, order_body((product.id, "1"), customer=str(customer.uuid)))
    assert placed["order"]["customer"] == str(customer.uuid)


def test_staff_must_name_an_active_customer(
    client: FlaskClient,
    staff: Caller,
    log_in_as: Callable[..., Caller],
    product: MadeProduct,
    services: Services,
) -> None:
    seller = log_in_as("seller")
    cases: list[Case] = [
        ("no customer", order_body((product.id, "1")), 422, "customer"),
        ("unknown customer", order_body((product.id, "1"), customer=str(uuid.uuid4())), 422,
         "customer"),
        ("a seller", order_body((product.id, "1"), customer=str(seller.uuid)), 422, "customer"),
        ("staff themself", order_body((product.id, "1"), customer=str(staff.uuid)), 422,
         "customer"),
    ]  # fmt: skip
    check(client, staff, cases, services)
    # Sellers do not place orders at all.
    assert_problem(post(client, seller, "/orders", order_body((product.id, "1"))), 403)
    nothing_written(services)


def test_the_same_idempotency_key_with_another_body_is_a_422(
    client: FlaskClient, customer: Caller, product: MadeProduct, services: Services
) -> None:
    first = place(client, customer, order_body((product.id, "1")), key="order-42")
    again = post(client, customer, "/orders", order_body((product.id, "1")), key="order-42")
    assert again.status_code == 201
    assert again.get_json() == first
    other = post(client, customer, "/orders", order_body((product.id, "2")), key="order-42")
    assert_problem(other, 422, "idempotency-key-reused")
    bad_key = post(client, customer, "/orders", order_body((product.id, "2")), key="x" * 256)
    assert_problem(bad_key, 422)
    written = counts(services)
    assert (written["marketplace_sale_order"], written["marketplace_idempotency_key"]) == (1, 1)


def test_a_body_that_is_not_json_is_refused(
    client: FlaskClient, customer: Caller, services: Services
) -> None:
    for data in ("not json", "[]", '"lines"'):
        response = client.post(
            "/api/v1/marketplace/orders",
            data=data,
            headers={**customer.headers, "Content-Type": "application/json"},
        )
        assert 400 <= response.status_code < 500, (data, response.status_code)
        assert response.content_type == PROBLEM
    nothing_written(services)


def test_numbers_and_text_the_database_cannot_hold_are_422s_naming_the_field(
    client: FlaskClient, customer: Caller, product: MadeProduct, services: Services
) -> None:
    def order(line: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        return order_body({"product": product.id, "quantity": "1", **(line or {})}, **extra)

    forty_digits = "1234567890" * 4
    cases: list[Case] = [
        ("40-digit amount", order(payment={"method": "cash", "amount": forty_digits}), 422,
         "payment.amount"),
        ("40-digit amount with decimals", order(payment={"method": "cash",
                                                         "amount": forty_digits[:37] + ".00"}),
         422, "payment.amount"),
        ("40-digit JSON integer quantity", order({"quantity": int(forty_digits)}), 422,
         "lines.0.quantity"),
        ("price beyond the column", order({"price_unit": "1" * 17}), 422, "lines.0.price_unit"),
        ("NUL in a product id", order({"product": "abc\x00"}), 422, "lines.0.product"),
        ("NUL in a payment reference", order(payment={"method": "cash", "reference": "a\x00b"}),
         422, "payment.reference"),
        ("escape in the currency", order(currency="ID\x1bR"), 422, "currency"),
    ]  # fmt: skip
    problems = check(client, customer, cases, services)
    assert all(p["type"] == "urn:lapak:problem:validation-failed" for p in problems), problems


def test_a_total_too_large_to_store_is_a_422_not_a_retryable_503(
    client: FlaskClient,
    customer: Caller,
    make_product: Callable[..., MadeProduct],
    services: Services,
) -> None:
    # Each number fits its column; their product (10^21 IDR) does not fit NUMERIC(18, 2).
    dear = make_product("9999999999999999")
    body = order_body((dear.id, "100000"))

    response = post(client, customer, "/orders", body)

    assert assert_problem(response, 422, "value-not-storable")["step"] == "order"
    assert "Retry-After" not in response.headers
    nothing_written(services)


def test_a_product_price_beyond_its_column_is_a_422_naming_it(
    client: FlaskClient, admin: Caller
) -> None:
    for price in ("1" * 17, "1" * 40, 10**16, "1.001"):
        response = post(client, admin, "/products", {"name": "lele", "list_price": price})
        assert list(assert_problem(response, 422, "validation-failed")["errors"]) == [
            "list_price"
        ], price


def test_a_control_character_in_a_query_argument_is_a_422_naming_it(
    client: FlaskClient, customer: Caller
) -> None:
    response = client.get(
        "/api/v1/marketplace/products", query_string={"name": "ikan\x00"}, headers=customer.headers
    )

    assert list(assert_problem(response, 422, "validation-failed")["errors"]) == ["name"]
