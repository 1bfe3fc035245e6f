"""Fixtures and helpers for the payment tests: orders paying through providers, signed
notifications, the ledger's own checks, and Lapak served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.test import TestResponse

from app.db import Session, transaction
from modules.ledger.models import Transaction
from modules.ledger.verify import verify
from modules.payment import services as payment_services
from modules.payment.providers import get_provider, provider_secrets
from tests.modules.conftest import Caller
from tests.modules.marketplace.conftest import (  # noqa: F401 - fixtures
    MadeProduct,
    make_product,
    order_body,
    place,
    primary_dsn,
    product,
    sql,
)
from tests.servers import Services

API = "/api/v1/payments"
MARKETPLACE = "/api/v1/marketplace"
PROBLEM = "application/problem+json"


def place_with_provider(
    client: FlaskClient, caller: Caller, product_id: str, provider: str = "demo", **extra: Any
) -> dict[str, Any]:
    """Place an order paying through ``provider``; its 201 body (with ``transaction``)."""
    return place(
        client, caller, order_body((product_id, "1"), payment={"provider": provider, **extra})
    )


def execute(services: Services, statement: str, *params: Any) -> None:
    """Change rows behind the services' back (to set up a state, or to prove the DB refuses)."""
    with psycopg.connect(primary_dsn(services), autocommit=True) as connection:
        connection.execute(statement, params or None)


def provider_secret(app: Flask, code: str = "demo") -> str:
    with app.app_context(), transaction():
        return provider_secrets(get_provider(code))["webhook_secret"]


def signed_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        "X-Lapak-Timestamp": stamp,
        "X-Lapak-Signature": payment_services.signature(secret, stamp, body),
    }


def notification(tx: dict[str, Any], state: str, **extra: Any) -> dict[str, Any]:
    """A demo gateway notification for the transaction as the API showed it."""
    return {
        "reference": tx["reference"],
        "provider_reference": extra.pop("provider_reference", f"demo_{tx['reference'][-5:]}"),
        "state": state,
        "amount": tx["amount"],
        "currency": tx["currency"],
        **extra,
    }


def notify(
    client: FlaskClient, secret: str, payload: dict[str, Any], code: str = "demo", **headers: str
) -> TestResponse:
    body = json.dumps(payload).encode()
    return client.post(
        f"{API}/providers/{code}/notify", data=body, headers={**signed_headers(secret, body),
                                                              **headers}
    )  # fmt: skip


def assert_problem(response: TestResponse, status: int, code: str | None = None) -> dict[str, Any]:
    body = response.get_json()
    assert response.status_code == status, body
    assert response.content_type == PROBLEM, response.content_type
    if code is not None:
        assert body["type"] == f"urn:lapak:problem:{code}", body
    return body


def ledger_operations(app: Flask) -> list[str]:
    with app.app_context():
        return list(Session().scalars(select(Transaction.operation).order_by(Transaction.id)))


def assert_ledger_consistent(app: Flask) -> None:
    with app.app_context():
        report = verify()
        assert report.ok, report.problems


def events(services: Services, name: str) -> list[dict[str, Any]]:
    return [
        row[0] for row in sql(services, "SELECT payload FROM core_outbox_event WHERE name = %s "
                              "ORDER BY id", name)
    ]  # fmt: skip


def tx_row(services: Services, reference: str) -> dict[str, Any]:
    rows = sql(
        services,
        "SELECT t.state, t.provider_reference, p.state, m.payment_state, m.amount_residual, "
        "t.state_message FROM payment_transaction t JOIN marketplace_payment p "
        "ON p.id = t.account_payment_id JOIN marketplace_account_move m ON m.id = t.invoice_id "
        "WHERE t.reference = %s",
        reference,
    )
    state, provider_reference, payment, invoice, residual, message = rows[0]
    return {
        "state": state,
        "provider_reference": provider_reference,
        "payment": payment,
        "invoice": invoice,
        "residual": Decimal(residual),
        "message": message,
    }


@pytest.fixture
def secret(app: Flask) -> str:
    return provider_secret(app)


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], str]]:
    """``serve(app)``: the app over real HTTP on a free 127.0.0.1 port; its base URL."""
    running: list[tuple[Any, threading.Thread]] = []

    def start(application: Flask) -> str:
        server = make_server("127.0.0.1", 0, application, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    try:
        yield start
    finally:
        for server, thread in running:
            server.shutdown()
            thread.join(10)
