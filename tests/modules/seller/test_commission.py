"""A seller's own commission percent: fixed on each invoice when it is posted, splitting every
payment and refund of it; and orders of the platform's own products run exactly the statements
they ran without the seller module.

The order: seller A (own 10%) 1 x 10,000; seller B (the marketplace's 5%) 2 x 20,000; the
platform's own 1 x 5,000. A's commission is 1,000, B's 2,000; T = 61,050.00.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from tests.modules.conftest import Caller
from tests.modules.marketplace.conftest import MadeProduct, order_body, place
from tests.modules.marketplace.test_ledger import assert_consistent, balances, confirm, nonzero
from tests.modules.marketplace.test_ledger import refund as refund_payment
from tests.servers import Services

from .conftest import call, ok, sql

D = Decimal
WITHOUT_SELLER = ("user", "auth", "fetch", "ledger", "marketplace", "payment", "wallet")


def own_percent(client: FlaskClient, admin: Caller, seller_uuid: Any, percent: str | None) -> None:
    ok(call(client, admin, "PATCH", f"/{seller_uuid}", json={"commission_percent": percent}))


def test_a_sellers_own_percent_is_fixed_on_the_invoice_when_posted(
    app: Flask,
    client: FlaskClient,
    services: Services,
    customer: Caller,
    staff: Caller,
    admin: Caller,
    make_user: Callable[..., tuple[int, Any, str]],
    make_product: Callable[..., MadeProduct],
) -> None:
    (seller_a, uuid_a, _), (seller_b, uuid_b, _) = (
        make_user(role="seller"),
        make_user(role="seller"),
    )
    own_percent(client, admin, uuid_a, "10")
    own_percent(client, admin, uuid_b, "5.00")  # the marketplace's: nothing to fix
    a = make_product("10000", name="BANDENG", seller_id=seller_a)
    b = make_product("20000", name="LELE", seller_id=seller_b)
    platform = make_product("5000", name="TONGKOL")
    placed = place(client, customer, order_body((a.id, "1"), (b.id, "2"), (platform.id, "1")))
    assert sql(services, "SELECT seller_id, percent FROM marketplace_invoice_commission") == [
        (seller_a, D("10.00"))
    ]

    own_percent(client, admin, uuid_a, "20")  # later changes reach later invoices only
    confirm(client, staff, placed["payment"]["id"])
    assert nonzero(app) == {
        "clearing_bank_transfer": D("61050.00"),
        f"seller_pending:{seller_a}": D("9000.00"),
        f"seller_pending:{seller_b}": D("38000.00"),
        "commission_income": D("3000.00"),
        "sales_income": D("5000.00"),
        "tax_payable": D("6050.00"),
    }
    # A refund of half takes back half of each share, at the percents of the invoice.
    answer = refund_payment(client, staff, placed["payment"]["id"], "30525.00")
    assert answer.status_code == 201, answer.get_json()
    assert balances(app)[f"seller_pending:{seller_a}"] == D("4500.00")
    assert balances(app)["commission_income"] == D("1500.00")
    answer = refund_payment(client, staff, placed["payment"]["id"])
    assert answer.status_code == 201, answer.get_json()
    assert balances(app)[f"seller_pending:{seller_a}"] == 0
    assert balances(app)["commission_income"] == 0
    assert_consistent(app)

    second = place(client, customer, order_body((a.id, "1")))
    confirm(client, staff, second["payment"]["id"])
    assert balances(app)[f"seller_pending:{seller_a}"] == D("8000.00")  # now at 20%
    own_percent(client, admin, uuid_a, None)
    third = place(client, customer, order_body((a.id, "1")))
    confirm(client, staff, third["payment"]["id"])
    assert balances(app)[f"seller_pending:{seller_a}"] == D("17500.00")  # back at 5%
    assert_consistent(app)


@contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engines = app.extensions["lapak.db"].engines()
    for engine in engines:
        event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", before)


def test_orders_without_sellers_run_the_statements_they_ran_without_the_seller_module(
    make_app: Callable[..., Flask],
    make_user: Callable[..., tuple[int, Any, str]],
    log_in_as: Callable[..., Caller],
    make_product: Callable[..., MadeProduct],
) -> None:
    customer, staff, admin = log_in_as("customer"), log_in_as("staff"), log_in_as("admin")
    seller_id, seller_uuid, _ = make_user(role="seller")
    platform = make_product("5000", name="TONGKOL")
    of_seller = make_product("10000", name="BANDENG", seller_id=seller_id)

    def place_and_confirm(app: Flask, product: str) -> tuple[list[str], list[str]]:
        client = app.test_client()
        # The first order and confirmation: the year's numbers and the accounts opened, the
        # callers' sessions read; the second of each is compared.
        confirm(client, staff, place(client, customer, order_body((product, "1")))["payment"]["id"])
        with statements(app) as placing:
            placed = place(client, customer, order_body((product, "1")))
        with statements(app) as confirming:
            confirm(client, staff, placed["payment"]["id"])
        return placing, confirming

    with_seller = make_app(modules=(*WITHOUT_SELLER, "seller"))
    own_percent(with_seller.test_client(), admin, seller_uuid, "10")
    without = place_and_confirm(make_app(modules=WITHOUT_SELLER), platform.id)
    assert place_and_confirm(with_seller, platform.id) == without
    for listed in without:
        assert not [s for s in listed if "seller_profile" in s or "invoice_commission" in s]

    # An order of a seller's products asks for their percent and fixes it; its capture reads it.
    placing, confirming = place_and_confirm(with_seller, of_seller.id)
    assert len([s for s in placing if "FROM seller_profile" in s]) == 1
    assert len([s for s in placing if "INSERT INTO marketplace_invoice_commission" in s]) == 1
    assert len([s for s in confirming if "FROM marketplace_invoice_commission" in s]) == 1
