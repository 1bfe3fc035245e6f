"""Fixtures and helpers for the marketplace tests: products, orders over HTTP (placed, paid),
a shop of its own for an app of a test's own (the embedded default), requests in parallel, row
counts.

Everything runs against the harness's real PostgreSQL primary + replica and Redis. Products are
made through the service (fast, no HTTP) unless a test is about the product endpoints.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.db import transaction
from modules.marketplace.models import Product
from modules.user.services import create_user
from tests.modules.conftest import PASSWORD, Caller, login

# The web client's fixtures, for the order screens' Chromium tests: ``served`` (the app over
# HTTP), ``browser`` (Debian's Chromium) and ``page``.
from tests.modules.web.conftest import browser, page, served  # noqa: F401
from tests.servers import Services

API = "/api/v1/marketplace"
PROBLEM = "application/problem+json"
#: The tables an order writes, and what counts as "nothing written".
ORDER_TABLES = (
    "marketplace_sale_order",
    "marketplace_sale_order_line",
    "marketplace_account_move",
    "marketplace_account_move_line",
    "marketplace_payment",
    "marketplace_idempotency_key",
    "core_outbox_event",
)


def this_year() -> int:
    return datetime.now(ZoneInfo("Asia/Jakarta")).year


YEAR = this_year()


@dataclass(frozen=True)
class MadeProduct:
    id: str
    feed_uuid: str | None
    list_price: Decimal


@pytest.fixture
def make_product(app: Flask) -> Callable[..., MadeProduct]:
    """``make_product("37000")``: an active product at that IDR list price, made directly."""

    def make(
        price: str = "37000",
        *,
        name: str = "TONGKOL",
        active: bool = True,
        seller_id: int | None = None,
        feed_uuid: str | None = None,
    ) -> MadeProduct:
        with app.app_context(), transaction() as session:
            product = Product(
                name=name,
                province="BALI",
                city="BULELENG",
                size=Decimal(40),
                list_price=Decimal(price),
                active=active,
                seller_id=seller_id,
                feed_uuid=feed_uuid,
                source="feed" if feed_uuid else None,
            )
            session.add(product)
            session.flush()
            made = MadeProduct(str(product.uuid), feed_uuid, product.list_price)
        return made

    return make


def order_body(*lines: tuple[str, str] | dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An order body: lines as ``(product, quantity)`` or dicts; bank transfer by default."""
    body: dict[str, Any] = {
        "lines": [
            line if isinstance(line, dict) else {"product": line[0], "quantity": line[1]}
            for line in lines
        ],
        "payment": {"method": "bank_transfer"},
    }
    body.update(extra)
    return body


def post(
    client: FlaskClient,
    caller: Caller,
    path: str,
    body: Any = None,
    key: str | None = None,
) -> TestResponse:
    headers = dict(caller.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(f"{API}{path}", json=body, headers=headers)


def get(client: FlaskClient, caller: Caller, path: str, **params: Any) -> TestResponse:
    return client.get(f"{API}{path}", query_string=params, headers=caller.headers)


def place(client: FlaskClient, caller: Caller, body: dict[str, Any], key: str | None = None):
    """Place an order that must succeed; its 201 body."""
    response = post(client, caller, "/orders", body, key)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def confirm(client: FlaskClient, staff: Caller, payment_id: str) -> dict[str, Any]:
    """Staff confirm a payment (the money came in); its 200 body."""
    response = post(client, staff, f"/payments/{payment_id}/confirm")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def paid_order(
    client: FlaskClient, customer: Caller, staff: Caller, product: MadeProduct, quantity: str = "1"
) -> dict[str, Any]:
    """An order of ``quantity`` of ``product`` (one at 37,000.00: 41,070.00 with tax) whose bank
    transfer staff confirmed: its invoice is paid. The order's 201 body."""
    placed = place(client, customer, order_body((product.id, quantity)))
    confirm(client, staff, placed["payment"]["id"])
    return placed


@dataclass(frozen=True)
class Shop:
    """A shop in an app of a test's own: staff and a customer logged in through ``client``, and
    a product at 37,000.00."""

    client: FlaskClient
    staff: Caller
    buyer: Caller
    product: MadeProduct


def shop_in(app: Flask, *, sold_by_a_seller: bool = False) -> Shop:
    """Staff, a customer and a product made in ``app`` (the embedded default, say), the
    product the platform's own or a seller's."""
    with app.app_context(), transaction() as session:
        users = [
            create_user(f"{role}@example.test", role=role, password=PASSWORD)
            for role in ("staff", "customer", *(("seller",) if sold_by_a_seller else ()))
        ]
        people = [(user.email, user.uuid, user.id) for user in users]
        item = Product(
            name="BANDENG",
            list_price=Decimal("37000"),
            seller_id=users[2].id if sold_by_a_seller else None,
        )
        session.add(item)
        session.flush()
        product = MadeProduct(str(item.uuid), None, item.list_price)
    client = app.test_client()
    staff, buyer = (
        Caller(email, user_uuid, user_id, login(client, email).get_json()["access_token"])
        for email, user_uuid, user_id in people[:2]
    )
    return Shop(client, staff, buyer, product)


def in_parallel(
    app: Flask, count: int, call: Callable[[FlaskClient, int], TestResponse]
) -> list[TestResponse]:
    """Run ``call(client, i)`` on ``count`` threads at once, each with its own client (so its
    own app context, session and pooled connection); a barrier starts them together."""
    barrier = threading.Barrier(count, timeout=30)

    def run(index: int) -> TestResponse:
        own = app.test_client()
        barrier.wait()
        return call(own, index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def created(response: TestResponse, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    return response.get_json()


def assert_problem(response: TestResponse, status: int, code: str | None = None) -> dict[str, Any]:
    body = response.get_json()
    assert response.status_code == status, body
    assert response.content_type == PROBLEM, response.content_type
    assert body["status"] == status
    if code is not None:
        assert body["type"] == f"urn:lapak:problem:{code}", body
    return body


def primary_dsn(services: Services) -> str:
    return services.database_url.replace("+psycopg", "")


#: Outbox rows of the marketplace (logins and user creation emit their own events).
MARKETPLACE_EVENTS = "name LIKE 'order.%' OR name LIKE 'invoice.%' OR name LIKE 'payment.%'"


def counts(services: Services, tables: tuple[str, ...] = ORDER_TABLES) -> dict[str, int]:
    """Rows per table, read straight from the primary (outbox: marketplace events only)."""
    with psycopg.connect(primary_dsn(services), autocommit=True) as connection:
        return {
            table: connection.execute(
                f"SELECT count(*) FROM {table}"  # noqa: S608
                + (f" WHERE {MARKETPLACE_EVENTS}" if table == "core_outbox_event" else "")
            ).fetchone()[0]
            for table in tables
        }


def nothing_written(services: Services) -> None:
    written = {table: n for table, n in counts(services).items() if n}
    assert written == {}, written


def sql(services: Services, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(primary_dsn(services), autocommit=True) as connection:
        return connection.execute(statement, params or None).fetchall()


def money(value: str | Decimal) -> str:
    return format(Decimal(value).quantize(Decimal("0.01")), "f")


def new_key() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def product(make_product: Callable[..., MadeProduct]) -> MadeProduct:
    return make_product("37000")
