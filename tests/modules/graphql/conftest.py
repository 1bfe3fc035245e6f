"""Fixtures and helpers for the GraphQL tests: a shop (users, products, orders placed over
REST) on the harness's PostgreSQL primary + replica, or on the embedded SQLite default, and
the same questions asked through GraphQL and through REST.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.db import transaction
from modules.marketplace.models import Product
from modules.user.services import create_user
from tests.modules.auth.test_api_keys import Key, signed
from tests.modules.conftest import PASSWORD, Caller, login
from tests.statements import recorded

GRAPHQL = "/api/v1/graphql"
MARKETPLACE = "/api/v1/marketplace"
PROBLEM = "application/problem+json"
#: Every field of a listed order, in the REST answer's order.
ORDER_FIELDS = (
    "id number state customer currency currency_rate tax_percent date_order amount_untaxed "
    "amount_tax amount_total cancelled_at payment_state"
)
LINE_FIELDS = "product name quantity price_unit price_subtotal price_tax price_total"
INVOICE_LINE_FIELDS = f"{LINE_FIELDS} tax_percent"
INVOICE_FIELDS = (
    "id number move_type state payment_state order customer payer_name payer_email seller memo "
    "currency invoice_date invoice_date_due amount_untaxed amount_tax amount_total "
    "amount_residual reversed_entry created_at"
)
PAYMENT_FIELDS = (
    "id number state invoice customer method amount currency reference created_at "
    "confirmed_at cancelled_at"
)
TRANSACTION_FIELDS = (
    "id reference provider state state_message kind invoice invoice_number customer payment "
    "token amount fee net currency provider_reference late_success action expires_at "
    "last_state_change created_at"
)
ORDERS = f"""
query Orders($filter: OrderFilter, $first: Int!, $after: String) {{
  orders(filter: $filter, first: $first, after: $after) {{
    items {{ {ORDER_FIELDS} }}
    next_cursor
  }}
}}"""
ORDER_DETAIL = f"""
query Order($id: ID!) {{
  order(id: $id) {{
    {ORDER_FIELDS}
    lines {{ {LINE_FIELDS} }}
    invoices {{ {INVOICE_FIELDS} lines {{ {INVOICE_LINE_FIELDS} }} }}
    payments {{ {PAYMENT_FIELDS} }}
  }}
}}"""
_emails = itertools.count()


@dataclass
class Shop:
    """One app, its test client, and a way to fill it through its own services and API."""

    app: Flask
    client: FlaskClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = self.app.test_client()

    def user(self, role: str = "customer") -> Caller:
        email = f"graphql.{role}.{next(_emails)}@example.test"
        with self.app.app_context(), transaction():
            made = create_user(email, role=role, password=PASSWORD)
            user_id, user_uuid = made.id, made.uuid
        response = login(self.client, email)
        assert response.status_code == 200, response.get_json()
        return Caller(email, user_uuid, user_id, response.get_json()["access_token"])

    def product(self, price: str = "37000", seller: Caller | None = None) -> str:
        with self.app.app_context(), transaction() as session:
            product = Product(
                name=f"IKAN {next(_emails)}",
                list_price=Decimal(price),
                seller_id=seller.user_id if seller else None,
            )
            session.add(product)
            session.flush()
            return str(product.uuid)

    def order(
        self,
        caller: Caller,
        *lines: tuple[str, str],
        amount: str | None = None,
        provider: str | None = None,
    ) -> dict[str, Any]:
        """Place an order over REST, paid by bank transfer (``amount``, or all) or through a
        payment ``provider``; its 201 body."""
        payment: dict[str, Any] = {"method": "bank_transfer"}
        if provider is not None:
            payment = {"provider": provider}
        if amount is not None:
            payment["amount"] = amount
        body = {"lines": [{"product": p, "quantity": q} for p, q in lines], "payment": payment}
        response = self.client.post(f"{MARKETPLACE}/orders", json=body, headers=caller.headers)
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def ask(self, caller: Caller | None, query: str, **variables: Any) -> TestResponse:
        headers = caller.headers if caller is not None else {}
        return self.client.post(
            GRAPHQL, json={"query": query, "variables": variables}, headers=headers
        )

    def graphql(self, caller: Caller, query: str, **variables: Any) -> dict[str, Any]:
        """The answer's ``data``; the query must have no error."""
        response = self.ask(caller, query, **variables)
        body = response.get_json()
        assert response.status_code == 200, body
        assert "errors" not in body, body["errors"]
        return body["data"]

    def errors(self, caller: Caller, query: str, **variables: Any) -> list[dict[str, Any]]:
        """The answer's ``errors`` (HTTP 200)."""
        response = self.ask(caller, query, **variables)
        body = response.get_json()
        assert response.status_code == 200, body
        assert body.get("errors"), body
        return body["errors"]

    def rest(self, caller: Caller, path: str, **params: Any) -> dict[str, Any]:
        response = self.client.get(path, query_string=params, headers=caller.headers)
        assert response.status_code == 200, response.get_json()
        return response.get_json()


@pytest.fixture(params=["postgresql", "embedded"])
def shop(request: pytest.FixtureRequest) -> Shop:
    """A shop on the harness's PostgreSQL (primary + replica), then on embedded SQLite."""
    if request.param == "postgresql":
        return Shop(request.getfixturevalue("app"))
    return Shop(request.getfixturevalue("make_embedded_app")())


@pytest.fixture
def pg_shop(app: Flask) -> Shop:
    return Shop(app)


@contextmanager
def counted_statements(app: Flask) -> Iterator[list[tuple[str, str]]]:
    """``(engine, statement)`` for every SQL statement an engine of ``app`` sends in the
    block from this thread (``tests.statements.recorded``), the primary's then the replicas';
    ``engine`` is ``primary`` or ``replica``. The list is filled when the block ends."""
    database = app.extensions["lapak.db"]
    sent: list[tuple[str, str]] = []
    replicas = [replica.engine for replica in database.replicas]
    with (
        recorded([database.primary], this_thread=True) as primary,
        recorded(replicas, this_thread=True) as replica,
    ):
        yield sent
    sent.extend(("primary", statement) for statement, _ in primary)
    sent.extend(("replica", statement) for statement, _ in replica)


def problem_of(response: TestResponse, status: int, code: str | None = None) -> dict[str, Any]:
    body = response.get_json()
    assert response.status_code == status, body
    assert response.content_type == PROBLEM, response.content_type
    if code is not None:
        assert body["type"] == f"urn:lapak:problem:{code}", body
    return body


def ask_signed(client: FlaskClient, key: Key, query: str) -> dict[str, Any]:
    """The GraphQL answer (HTTP 200) to ``query`` signed with an API key."""
    response = signed(client, key, "POST", GRAPHQL, json.dumps({"query": query}).encode())
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def scope_missing(answer: dict[str, Any], scope: str, path: list[Any]) -> None:
    """``answer``'s one error: the field at ``path`` needs ``scope``, which the key lacks."""
    (error,) = answer["errors"]
    assert error["extensions"] == {"code": "scope-missing"}, error
    assert error["message"] == f"this API key lacks the scope {scope}"
    assert error["path"] == path
