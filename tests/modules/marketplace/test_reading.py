"""Reading orders: who sees what, filters, cursor pages newest first, and the read replica."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient
from itsdangerous import URLSafeSerializer
from sqlalchemy import event, make_url, select
from sqlalchemy.orm import undefer

from app.db import LSN_HEADER, Session, transaction
from app.http import Page
from modules.marketplace.models import AccountMove, SaleOrder
from modules.marketplace.schemas import OrderPageSchema, OrderSummarySchema
from tests.conftest import wait_for_replica
from tests.modules.conftest import Caller
from tests.servers import Services

from .conftest import (
    API,
    YEAR,
    MadeProduct,
    assert_problem,
    created,
    get,
    order_body,
    place,
    post,
)


def numbers(response: Any) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [order["number"] for order in response.get_json()["items"]]


def test_staff_see_all_customers_their_own_sellers_theirs(
    client: FlaskClient,
    staff: Caller,
    log_in_as: Callable[..., Caller],
    make_product: Callable[..., MadeProduct],
) -> None:
    alice, bob = log_in_as("customer"), log_in_as("customer")
    seller, other_seller = log_in_as("seller"), log_in_as("seller")
    mine = make_product("1000", seller_id=seller.user_id)
    theirs = make_product("2000", seller_id=other_seller.user_id)
    house = make_product("3000")
    place(client, alice, order_body((mine.id, "1")))  # SO 1
    place(client, bob, order_body((theirs.id, "1")))  # SO 2
    place(client, alice, order_body((house.id, "1"), (mine.id, "2")))  # SO 3
    so = [f"SO/{YEAR}/{n:05d}" for n in range(1, 4)]

    assert numbers(get(client, staff, "/orders")) == [so[2], so[1], so[0]]
    assert numbers(get(client, alice, "/orders")) == [so[2], so[0]]
    assert numbers(get(client, bob, "/orders")) == [so[1]]
    assert numbers(get(client, seller, "/orders")) == [so[2], so[0]]
    assert numbers(get(client, other_seller, "/orders")) == [so[1]]


def test_another_customers_order_invoice_and_payment_are_404(
    client: FlaskClient,
    staff: Caller,
    log_in_as: Callable[..., Caller],
    product: MadeProduct,
) -> None:
    alice, bob = log_in_as("customer"), log_in_as("customer")
    seller = log_in_as("seller")
    placed = place(client, alice, order_body((product.id, "1")))
    paths = [
        f"/orders/{placed['order']['id']}",
        f"/invoices/{placed['invoice']['id']}",
        f"/payments/{placed['payment']['id']}",
    ]
    for path in paths:
        assert get(client, alice, path).status_code == 200
        assert get(client, staff, path).status_code == 200
        assert_problem(get(client, bob, path), 404, "not-found")
        assert_problem(get(client, seller, path), 404)  # not their product
    # Paying or cancelling someone else's is a 404 as well, not a 403 that confirms it exists.
    assert_problem(
        post(client, bob, f"/invoices/{placed['invoice']['id']}/payments", {"method": "cash"}), 404
    )
    assert_problem(post(client, bob, f"/orders/{placed['order']['id']}/cancel"), 404)
    detail = created(get(client, alice, paths[0]), 200)
    assert detail["order"]["id"] == placed["order"]["id"]
    assert [i["id"] for i in detail["invoices"]] == [placed["invoice"]["id"]]
    assert [p["id"] for p in detail["payments"]] == [placed["payment"]["id"]]


def test_filters_and_cursor_pages_newest_first(
    client: FlaskClient,
    staff: Caller,
    log_in_as: Callable[..., Caller],
    make_product: Callable[..., MadeProduct],
) -> None:
    alice, bob = log_in_as("customer"), log_in_as("customer")
    cheap, dear = make_product("1000"), make_product("100000", name="UDANG")
    # Totals with tax: cheap 1110.00, dear 111000.00.
    place(client, alice, order_body((cheap.id, "1")))  # 1: alice, in_payment
    place(client, bob, order_body((dear.id, "1")))  # 2: bob
    third = place(  # 3: alice, partial, then cancelled (reversed)
        client, alice, order_body((dear.id, "1"), payment={"method": "cash", "amount": "10"})
    )
    place(client, alice, order_body((cheap.id, "2"), payment={"method": "cash", "amount": "5"}))
    place(client, bob, order_body((cheap.id, "1")))  # 5
    created(post(client, staff, f"/orders/{third['order']['id']}/cancel"), 200)
    so = {n: f"SO/{YEAR}/{n:05d}" for n in range(1, 6)}

    assert numbers(get(client, staff, "/orders")) == [so[5], so[4], so[3], so[2], so[1]]
    assert numbers(get(client, staff, "/orders", state="cancel")) == [so[3]]
    assert numbers(get(client, staff, "/orders", state="sale")) == [so[5], so[4], so[2], so[1]]
    assert numbers(get(client, staff, "/orders", payment_state="partial")) == [so[4]]
    assert numbers(get(client, staff, "/orders", payment_state="reversed")) == [so[3]]
    assert numbers(get(client, staff, "/orders", payment_state="in_payment")) == [
        so[5],
        so[2],
        so[1],
    ]
    assert numbers(get(client, staff, "/orders", customer=str(bob.uuid))) == [so[5], so[2]]
    assert numbers(get(client, staff, "/orders", total_min="100000")) == [so[3], so[2]]
    assert numbers(get(client, staff, "/orders", total_max="1110.00")) == [so[5], so[1]]
    assert numbers(get(client, staff, "/orders", total_min="1110", total_max="2220")) == [
        so[5],
        so[4],
        so[1],
    ]
    assert numbers(get(client, staff, "/orders", number="00003")) == [so[3]]
    assert numbers(get(client, staff, "/orders", number=f"so/{YEAR}/0000")) == list(
        reversed(so.values())
    )
    assert numbers(get(client, staff, "/orders", number="%")) == []
    # A customer's customer filter cannot widen what they see.
    assert numbers(get(client, alice, "/orders", customer=str(bob.uuid))) == []

    every = get(client, staff, "/orders").get_json()["items"]
    newest, oldest = every[0]["date_order"], every[-1]["date_order"]
    assert numbers(get(client, staff, "/orders", **{"from": newest})) == [so[5]]
    assert numbers(get(client, staff, "/orders", to=oldest)) == [so[1]]
    assert numbers(get(client, staff, "/orders", **{"from": oldest[:10], "to": newest[:10]})) == [
        so[5],
        so[4],
        so[3],
        so[2],
        so[1],
    ]
    assert numbers(get(client, staff, "/orders", to="2000-01-01")) == []

    # Cursor pages of two, newest first, with a Link header, until next_cursor is null.
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, "state": "sale", **({"cursor": cursor} if cursor else {})}
        response = get(client, staff, "/orders", **params)
        seen += numbers(response)
        cursor = response.get_json()["next_cursor"]
        pages += 1
        if cursor is None:
            assert "Link" not in response.headers
            break
        assert 'rel="next"' in response.headers["Link"]
    assert (seen, pages) == ([so[5], so[4], so[2], so[1]], 2)
    assert_problem(get(client, staff, "/orders", cursor="garbage"), 400, "invalid-cursor")
    assert_problem(get(client, staff, "/orders", state="paid"), 422)
    assert_problem(get(client, staff, "/orders", total_min="abc"), 422)
    assert_problem(get(client, staff, "/orders", **{"from": "yesterday"}), 422)


@contextmanager
def recovery_of_order_queries(app: Flask) -> Iterator[list[bool]]:
    """``pg_is_in_recovery()`` of the connection each marketplace_sale_order SELECT ran on."""
    seen: list[bool] = []

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM marketplace_sale_order" in (
            statement
        ):
            seen.append(cursor.connection.execute("SELECT pg_is_in_recovery()").fetchone()[0])

    engines = app.extensions["lapak.db"].engines()
    for engine in engines:
        event.listen(engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "after_cursor_execute", after)


def test_listing_orders_runs_on_the_replica(
    app: Flask, client: FlaskClient, customer: Caller, product: MadeProduct, services: Services
) -> None:
    placed = place(client, customer, order_body((product.id, "1")))
    wait_for_replica(services)
    reader = app.test_client()  # no LSN cookie: any caught-up replica will do
    with recovery_of_order_queries(app) as recovery:
        listed = get(reader, customer, "/orders")
        shown = get(reader, customer, f"/orders/{placed['order']['id']}")
    assert numbers(listed) == [placed["order"]["number"]]
    assert shown.status_code == 200
    assert recovery, "no order query was seen"
    assert all(recovery), recovery
    # Writes stay on the primary.
    with recovery_of_order_queries(app) as recovery:
        created(post(reader, customer, f"/orders/{placed['order']['id']}/cancel"), 200)
    assert recovery, "no order query was seen"
    assert not any(recovery), recovery


def test_a_customer_sees_the_order_they_just_placed_while_the_replica_is_paused(
    app: Flask, paused_replica: Services, log_in_as: Callable[..., Caller], product: MadeProduct
) -> None:
    customer, staff = log_in_as("customer"), log_in_as("staff")
    writer = app.test_client()  # keeps the lapak_lsn cookie the write answer sets
    response = post(writer, customer, "/orders", order_body((product.id, "1")))
    assert response.status_code == 201, response.get_json()
    lsn = response.headers[LSN_HEADER]
    number = response.get_json()["order"]["number"]
    order_id = response.get_json()["order"]["id"]

    with recovery_of_order_queries(app) as recovery:
        assert numbers(get(writer, customer, "/orders")) == [number]
        assert get(writer, customer, f"/orders/{order_id}").status_code == 200
    assert recovery, "no order query was seen"
    assert not any(recovery), recovery  # the paused replica was skipped for the primary

    # Another client that echoes the header is sent to the primary too ...
    echo = app.test_client()
    echoed = echo.get("/api/v1/marketplace/orders", headers={**customer.headers, LSN_HEADER: lsn})
    assert numbers(echoed) == [number]
    # ... while one that has not seen the write reads the paused replica, which lacks it.
    stranger = app.test_client()
    with recovery_of_order_queries(app) as recovery:
        assert numbers(get(stranger, staff, "/orders")) == []
    assert recovery, "no order query was seen"
    assert all(recovery), recovery


def test_each_order_shows_its_invoices_payment_state_in_one_query_per_page(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    customer: Caller,
    product: MadeProduct,
) -> None:
    paid = place(client, customer, order_body((product.id, "1")))
    partial = place(
        client, customer, order_body((product.id, "1"), payment={"method": "cash", "amount": "5"})
    )
    cancelled = place(client, customer, order_body((product.id, "2")))
    answer = created(post(client, customer, f"/orders/{cancelled['order']['id']}/cancel"), 200)
    assert answer["payment_state"] == "reversed"

    with order_queries(app) as queries:
        listed = get(client, staff, "/orders")

    assert [(o["number"], o["payment_state"]) for o in listed.get_json()["items"]] == [
        (cancelled["order"]["number"], "reversed"),
        (partial["order"]["number"], "partial"),
        (paid["order"]["number"], "in_payment"),
    ]
    assert len(queries) == 1, queries
    assert paid["order"]["payment_state"] == "in_payment"
    detail = created(get(client, customer, f"/orders/{partial['order']['id']}"), 200)
    assert detail["order"]["payment_state"] == "partial"


@contextmanager
def order_queries(app: Flask) -> Iterator[list[str]]:
    """The statements that read marketplace_sale_order, on any engine."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM marketplace_sale_order" in statement:
            seen.append(statement)

    engines = app.extensions["lapak.db"].engines()
    for engine in engines:
        event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", before)


def test_the_payment_state_filter_matches_the_state_each_order_shows(
    app: Flask, client: FlaskClient, staff: Caller, customer: Caller, product: MadeProduct
) -> None:
    placed = place(client, customer, order_body((product.id, "1")))
    number = placed["order"]["number"]
    # A later invoice of the same order (today's API makes one; an ERP makes more): the order
    # shows the latest one's state, so the filter must match that one, not any invoice's.
    with app.app_context(), transaction() as session:
        first = session.scalars(
            select(AccountMove).where(AccountMove.uuid == uuid.UUID(placed["invoice"]["id"]))
        ).one()
        later = AccountMove(
            move_type="out_invoice",
            state="posted",
            payment_state="not_paid",
            order_id=first.order_id,
            customer_id=first.customer_id,
            currency=first.currency,
            invoice_date=first.invoice_date,
            invoice_date_due=first.invoice_date_due,
            amount_untaxed=first.amount_untaxed,
            amount_tax=first.amount_tax,
            amount_total=first.amount_total,
            amount_residual=first.amount_total,
        )
        session.add(later)

    listed = get(client, staff, "/orders").get_json()["items"]
    assert [(o["number"], o["payment_state"]) for o in listed] == [(number, "not_paid")]
    assert numbers(get(client, staff, "/orders", payment_state="not_paid")) == [number]
    assert numbers(get(client, staff, "/orders", payment_state="in_payment")) == []


def test_a_listed_order_is_rendered_as_the_order_schema_renders_it(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    customer: Caller,
    make_product: Callable[..., MadeProduct],
) -> None:
    # The listing renders rows with schemas.order_summary, not OrderSummarySchema: every field,
    # its order and its format (rates' own digits, money's two places, UTC times, the invoice's
    # payment state, a cancellation time) must be what the schema dumps for the same order.
    tuna = make_product("37000")
    placed = [
        place(client, customer, order_body((tuna.id, "1.5"))),
        place(client, customer, order_body((tuna.id, "3"), currency="USD")),
        place(
            client, customer, order_body((tuna.id, "1"), payment={"method": "cash", "amount": "5"})
        ),
        place(client, customer, order_body((tuna.id, "2"))),
    ]
    created(post(client, customer, f"/orders/{placed[3]['order']['id']}/cancel"), 200)

    with app.test_request_context():
        orders = list(
            Session().scalars(
                select(SaleOrder)
                .options(undefer(SaleOrder.payment_state))
                .order_by(SaleOrder.date_order.desc(), SaleOrder.id.desc())
            )
        )
        expected = [OrderSummarySchema().dump(order) for order in orders]
        # What flask-smorest answered with the schema: its dump, through the app's jsonify.
        schema_answer = jsonify(OrderPageSchema().dump(Page(orders, None))).get_data()
        Session.remove()
    assert expected[0]["cancelled_at"] is not None
    assert expected[2]["currency_rate"] == "0.0000625"
    for caller in (staff, customer):
        listed = get(client, caller, "/orders")
        assert listed.get_json() == {"items": expected, "next_cursor": None}
        assert listed.get_data() == schema_answer  # byte for byte
    detail = created(get(client, customer, f"/orders/{placed[1]['order']['id']}"), 200)
    assert {k: v for k, v in detail["order"].items() if k != "lines"} == expected[2]
    first, second = get(client, staff, "/orders", limit="2"), None
    assert first.get_json()["items"] == expected[:2]
    second = get(client, staff, "/orders", limit="2", cursor=first.get_json()["next_cursor"])
    assert second.get_json()["items"] == expected[2:]


@pytest.fixture
def replica_in_jakarta(config: dict[str, Any]) -> None:
    """The replica's sessions in Asia/Jakarta: the driver hands times back at +07:00."""
    config["replica_urls"] = tuple(
        make_url(url)
        .update_query_dict({"options": "-c TimeZone=Asia/Jakarta"})
        .render_as_string(hide_password=False)
        for url in config["replica_urls"]
    )


@pytest.mark.usefixtures("replica_in_jakarta")
def test_listed_times_are_utc_whatever_the_replica_sessions_time_zone(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    customer: Caller,
    product: MadeProduct,
    services: Services,
) -> None:
    # The listing reads rows as the driver gives them: times in the session's zone.
    first_id = place(client, customer, order_body((product.id, "1")))["order"]["id"]
    order_id = place(client, customer, order_body((product.id, "2")))["order"]["id"]
    created(post(client, customer, f"/orders/{order_id}/cancel"), 200)
    with app.test_request_context():
        orders = Session().scalars(
            select(SaleOrder).order_by(SaleOrder.date_order.desc(), SaleOrder.id.desc())
        )
        expected = [OrderSummarySchema().dump(order) for order in orders]
        Session.remove()
    wait_for_replica(services)
    reader = app.test_client()
    with recovery_of_order_queries(app) as recovery:
        page = get(reader, staff, "/orders", limit="1").get_json()
        cursor = page["next_cursor"]
        rest = get(reader, staff, "/orders", limit="1", cursor=cursor).get_json()
    assert recovery, "no order query was seen"
    assert all(recovery), recovery
    assert [o["id"] for o in expected] == [order_id, first_id]
    assert page["items"] == expected[:1]
    assert rest["items"] == expected[1:]
    assert expected[0]["date_order"].endswith("+00:00")
    assert expected[0]["cancelled_at"].endswith("+00:00")
    # The cursor holds the sort key in UTC too: a position reads the same from any server.
    (endpoint,) = {r.endpoint for r in app.url_map.iter_rules() if r.rule == f"{API}/orders"}
    moment, _ = URLSafeSerializer(app.secret_key, salt=f"lapak.cursor:{endpoint}").loads(cursor)
    assert moment == {"t": expected[0]["date_order"]}
