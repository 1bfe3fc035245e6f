"""Helpers for the payment link tests: an unpaid order invoice of a seller's product, links made
over the API, the pay page read like a browser (its cookie and form token), rows and events read
straight from the primary."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.modules.conftest import Caller
from tests.modules.marketplace.conftest import (  # noqa: F401 - fixtures
    MadeProduct,
    make_product,
    order_body,
    place,
)
from tests.servers import Services

API = "/api/v1/paylinks"
PROBLEM = "application/problem+json"
_FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
_REQUEST_ID = re.compile(r"Reference: [A-Za-z0-9._:-]+")


@dataclass(frozen=True)
class Invoice:
    id: str
    number: str
    total: Decimal


@pytest.fixture
def seller(log_in_as: Callable[..., Caller]) -> Caller:
    return log_in_as("seller")


@pytest.fixture
def product(seller: Caller, make_product: Callable[..., MadeProduct]) -> MadeProduct:  # noqa: F811
    return make_product("10000", name="BANDENG", seller_id=seller.user_id)


def unpaid_invoice(
    client: FlaskClient, customer: Caller, product_id: str, qty: str = "1"
) -> Invoice:
    """An order's posted invoice with everything due: ordered paying by bank transfer, then the
    customer gave that transfer up."""
    body = order_body((product_id, qty))
    body["payment"] = {"provider": "bank_transfer"}
    placed = place(client, customer, body)
    cancelled = client.post(
        f"/api/v1/payments/{placed['transaction']['id']}/cancel", headers=customer.headers
    )
    assert cancelled.status_code == 200, cancelled.get_json()
    invoice = placed["invoice"]
    return Invoice(invoice["id"], invoice["number"], Decimal(invoice["amount_total"]))


@pytest.fixture
def invoice(client: FlaskClient, customer: Caller, product: MadeProduct) -> Invoice:
    return unpaid_invoice(client, customer, product.id)


BANK = {"bank_code": "014", "holder_name": "Budi Santoso", "account_number": "8800-4412-3977"}
#: A standalone invoice to a payer without an account: 10,000 + 11% PPN = 11,100.00.
GUEST_INVOICE = {
    "payer_name": "Ibu Sari",
    "payer_email": "sari@example.com",
    "lines": [{"description": "Bandeng, 1 crate", "quantity": "1", "price_unit": "10000.00"}],
}


def verify(client: FlaskClient, seller: Caller, staff: Caller) -> None:
    """Through the seller API: a payout account, the KYC review submitted and approved."""
    for response in (
        client.patch("/api/v1/sellers/me", json={"bank_account": BANK}, headers=seller.headers),
        client.post("/api/v1/sellers/me/kyc", headers=seller.headers),
        client.post(f"/api/v1/sellers/{seller.uuid}/kyc/approve", headers=staff.headers),
    ):
        assert response.status_code == 200, response.get_json()


def standalone_invoice(client: FlaskClient, issuer: Caller, **body: Any) -> Invoice:
    """A posted standalone invoice of ``issuer`` (staff, or a verified seller): to a payer
    without an account unless ``body`` says otherwise."""
    made = client.post("/api/v1/marketplace/invoices", json={**GUEST_INVOICE, **body},
                       headers=issuer.headers)  # fmt: skip
    assert made.status_code == 201, made.get_json()
    done = client.post(f"/api/v1/marketplace/invoices/{made.get_json()['id']}/post",
                       headers=issuer.headers)  # fmt: skip
    assert done.status_code == 200, done.get_json()
    answer = done.get_json()
    return Invoice(answer["id"], answer["number"], Decimal(answer["amount_total"]))


@pytest.fixture
def issuer(client: FlaskClient, staff: Caller, seller: Caller) -> Caller:
    """The seller, verified: they issue invoices of their own (and make their links)."""
    verify(client, seller, staff)
    return seller


@pytest.fixture
def own_invoice(client: FlaskClient, issuer: Caller) -> Invoice:
    """A posted invoice the verified seller issued, to a payer without an account (11,100.00)."""
    return standalone_invoice(client, issuer)


def create(
    client: FlaskClient, caller: Caller, invoice_id: str, key: str | None = None, **body: Any
) -> TestResponse:
    headers = dict(caller.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(API, json={"invoice": invoice_id, **body}, headers=headers)


def made(client: FlaskClient, caller: Caller, invoice_id: str, **body: Any) -> dict[str, Any]:
    """A link that must be created: its answer (with ``path``, the URL's path, added)."""
    response = create(client, caller, invoice_id, **body)
    assert response.status_code == 201, response.get_json()
    answer = response.get_json()
    answer["path"] = urlsplit(answer["url"]).path
    return answer


def ok(response: TestResponse, status: int = 200) -> Any:
    assert response.status_code == status, response.get_json() or response.data[:500]
    return response.get_json()


def problem(response: TestResponse, status: int, code: str | None = None) -> dict[str, Any]:
    body = response.get_json()
    assert response.status_code == status, body
    assert response.content_type == PROBLEM
    if code is not None:
        assert body["type"] == f"urn:lapak:problem:{code}", body
    return body


def form_token(html: str) -> str:
    found = _FORM_TOKEN.search(html)
    assert found, "the page has no pay form"
    return found.group(1)


def pay(client: FlaskClient, path: str, provider: str = "demo") -> TestResponse:
    """Open the page like a browser (its cookie kept by the client) and submit its form."""
    page = client.get(path)
    assert page.status_code == 200, page.data[:500]
    return client.post(path, data={"provider": provider, "form_token": form_token(page.text)})


def without_request_id(response: TestResponse) -> bytes:
    return _REQUEST_ID.sub("Reference: -", response.text).encode()


def sql(services: Services, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(services.database_url.replace("+psycopg", ""), autocommit=True) as c:
        return c.execute(statement, params or None).fetchall()


def events(services: Services, prefix: str = "payment_link.") -> list[tuple[str, dict[str, Any]]]:
    rows = sql(services, "SELECT name, payload FROM core_outbox_event WHERE name LIKE %s "
               "ORDER BY id", prefix + "%")  # fmt: skip
    return [(name, payload) for name, payload in rows]


def guest_payment(services: Services) -> str:
    """The accounting payment (its uuid) of the one guest transaction."""
    ((payment,),) = sql(
        services,
        "SELECT p.uuid FROM marketplace_payment p "
        "JOIN payment_transaction t ON t.account_payment_id = p.id WHERE t.guest",
    )
    return str(payment)
