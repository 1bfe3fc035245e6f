"""Concurrency with real parallel connections: each thread has its own test client, so its own
app context, session and pooled PostgreSQL connection; a barrier starts them together."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.modules.conftest import Caller
from tests.servers import Services

from .conftest import (
    YEAR,
    MadeProduct,
    assert_problem,
    counts,
    get,
    in_parallel,
    order_body,
    place,
    post,
    sql,
)


def test_50_concurrent_orders_get_50_gap_free_invoice_numbers(
    app: Flask, customer: Caller, product: MadeProduct, services: Services
) -> None:
    responses = in_parallel(
        app, 50, lambda c, i: post(c, customer, "/orders", order_body((product.id, "1")))
    )
    assert Counter(r.status_code for r in responses) == {201: 50}, [
        r.get_json() for r in responses if r.status_code != 201
    ]
    expected = {f"{code}/{YEAR}/{n:05d}" for code in ("INV",) for n in range(1, 51)}
    invoices = [r.get_json()["invoice"]["number"] for r in responses]
    assert sorted(invoices) == sorted(expected)
    stored = [row[0] for row in sql(services, "SELECT name FROM marketplace_account_move")]
    assert sorted(stored) == sorted(expected)
    for code, table in (("SO", "marketplace_sale_order"), ("PAY", "marketplace_payment")):
        names = [row[0] for row in sql(services, f"SELECT name FROM {table}")]  # noqa: S608
        assert len(names) == len(set(names)) == 50
        assert all(name.startswith(f"{code}/{YEAR}/") for name in names)
    assert counts(services)["marketplace_sale_order"] == 50


def test_20_concurrent_payments_never_exceed_the_invoice_total(
    app: Flask, client: FlaskClient, customer: Caller, product: MadeProduct, services: Services
) -> None:
    # 41070.00 due; 1070.00 paid with the order leaves 40000.00; 20 x 3000.00 are offered.
    placed = place(
        client,
        customer,
        order_body((product.id, "1"), payment={"method": "cash", "amount": "1070.00"}),
    )
    invoice_id = placed["invoice"]["id"]
    responses = in_parallel(
        app,
        20,
        lambda c, i: post(
            c, customer, f"/invoices/{invoice_id}/payments", {"method": "cash", "amount": "3000"}
        ),
    )
    accepted = [r for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code != 201]
    for response in refused:
        assert_problem(response, 422, "payment-exceeds-residual")
    assert len(accepted) == 13  # 13 x 3000 = 39000 <= 40000 < 14 x 3000
    accepted_total = sum(Decimal(r.get_json()["amount"]) for r in accepted)
    assert accepted_total + Decimal("1070.00") <= Decimal("41070.00")

    shown = get(client, customer, f"/invoices/{invoice_id}").get_json()
    assert shown["payment_state"] == "partial"
    assert Decimal(shown["amount_residual"]) == Decimal("41070.00") - Decimal("1070.00") - (
        accepted_total
    )
    assert Decimal(shown["amount_residual"]) >= 0
    ((paid, residual, total),) = sql(
        services,
        "SELECT (SELECT sum(amount) FROM marketplace_payment), amount_residual, amount_total "
        "FROM marketplace_account_move",
    )
    assert paid + residual == total
    numbers = [row[0] for row in sql(services, "SELECT name FROM marketplace_payment")]
    assert len(set(numbers)) == len(numbers) == 14


def test_confirm_and_cancel_race_one_wins_and_the_state_is_consistent(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    product: MadeProduct,
    services: Services,
) -> None:
    orders = [place(client, customer, order_body((product.id, "1"))) for _ in range(4)]
    for placed in orders:
        order, invoice, payment = placed["order"], placed["invoice"], placed["payment"]

        def race(c: FlaskClient, index: int, order: Any = order, payment: Any = payment) -> Any:
            if index == 0:
                return post(c, staff, f"/payments/{payment['id']}/confirm")
            return post(c, staff, f"/orders/{order['id']}/cancel")

        confirmed, cancelled = in_parallel(app, 2, race)
        statuses = (confirmed.status_code, cancelled.status_code)
        assert statuses in ((200, 409), (409, 200)), (confirmed.get_json(), cancelled.get_json())
        detail = get(client, staff, f"/orders/{order['id']}").get_json()
        states = (
            detail["order"]["state"],
            [(i["move_type"], i["payment_state"]) for i in detail["invoices"]],
            [p["state"] for p in detail["payments"]],
        )
        if statuses == (200, 409):
            assert_problem(cancelled, 409)
            assert states == ("sale", [("out_invoice", "paid")], ["paid"])
        else:
            assert_problem(confirmed, 409)
            assert states == (
                "cancel",
                [("out_invoice", "reversed"), ("out_refund", "paid")],
                ["canceled"],
            )
            assert detail["invoices"][1]["reversed_entry"] == invoice["id"]
    refunds = [
        row[0]
        for row in sql(
            services,
            "SELECT name FROM marketplace_account_move WHERE move_type = 'out_refund' ORDER BY 1",
        )
    ]
    assert refunds == [f"RINV/{YEAR}/{n:05d}" for n in range(1, len(refunds) + 1)]


def test_20_concurrent_retries_of_one_idempotency_key_make_one_order(
    app: Flask, customer: Caller, product: MadeProduct, services: Services
) -> None:
    body = order_body((product.id, "2"))
    responses = in_parallel(
        app, 20, lambda c, i: post(c, customer, "/orders", body, key="retry-me-1")
    )
    assert Counter(r.status_code for r in responses) == {201: 20}, [
        r.get_json() for r in responses if r.status_code != 201
    ]
    answers = [r.get_json() for r in responses]
    assert all(answer == answers[0] for answer in answers)
    written = counts(services)
    assert written["marketplace_sale_order"] == 1
    assert written["marketplace_account_move"] == 1
    assert written["marketplace_payment"] == 1
    assert written["marketplace_idempotency_key"] == 1
    assert written["core_outbox_event"] == 3
    assert answers[0]["invoice"]["number"] == f"INV/{YEAR}/00001"


def test_concurrent_retries_of_a_further_payment_register_it_once(
    app: Flask, client: FlaskClient, customer: Caller, product: MadeProduct, services: Services
) -> None:
    placed = place(
        client, customer, order_body((product.id, "1"), payment={"method": "cash", "amount": "70"})
    )
    invoice_id = placed["invoice"]["id"]
    responses = in_parallel(
        app,
        10,
        lambda c, i: post(
            c,
            customer,
            f"/invoices/{invoice_id}/payments",
            {"method": "cash", "amount": "1000"},
            key="pay-once",
        ),
    )
    assert Counter(r.status_code for r in responses) == {201: 10}
    assert len({r.get_json()["id"] for r in responses}) == 1
    assert counts(services)["marketplace_payment"] == 2
    shown = get(client, customer, f"/invoices/{invoice_id}").get_json()
    assert shown["amount_residual"] == "40000.00"
