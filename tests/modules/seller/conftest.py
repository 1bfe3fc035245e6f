"""Helpers for the seller tests: calls over HTTP, problems, rows read straight from the primary,
and sellers brought to each KYC state through the API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.modules.conftest import Caller
from tests.modules.marketplace.conftest import make_product  # noqa: F401 - fixture
from tests.modules.web.conftest import (  # noqa: F401 - fixtures
    browser,
    either_app,
    embedded_app,
    page,
    served,
)
from tests.servers import Services

API = "/api/v1/sellers"
PROBLEM = "application/problem+json"
ACCOUNT_NUMBER = "8800-4412-3977"
BANK = {"bank_code": "014", "holder_name": "Budi Santoso", "account_number": ACCOUNT_NUMBER}


def call(client: FlaskClient, caller: Caller | None, method: str, path: str = "", **kw: Any):
    headers = caller.headers if caller is not None else {}
    return client.open(f"{API}{path}", method=method, headers=headers, **kw)


def ok(response: TestResponse, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    return response.get_json()


def problem(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    body = response.get_json()
    assert response.status_code == status, body
    assert response.content_type == PROBLEM
    assert body["type"] == f"urn:lapak:problem:{code}", body
    return body


def sql(services: Services, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(services.database_url.replace("+psycopg", ""), autocommit=True) as c:
        return c.execute(statement, params or None).fetchall()


def events(services: Services) -> list[tuple[str, dict[str, Any]]]:
    """The seller events in the outbox, oldest first."""
    rows = sql(services, "SELECT name, payload FROM core_outbox_event "
                         "WHERE name LIKE 'seller.%%' ORDER BY id")  # fmt: skip
    return [(name, payload) for name, payload in rows]


def profile_rows(services: Services) -> list[tuple[Any, ...]]:
    return sql(services, "SELECT * FROM seller_profile ORDER BY id")


@pytest.fixture
def seller(log_in_as: Callable[..., Caller]) -> Caller:
    return log_in_as("seller")


@pytest.fixture
def to_state(client: FlaskClient, staff: Caller) -> Callable[[Caller, str], dict[str, Any]]:
    """Bring ``seller`` to a KYC state through the API (with a payout account, even when
    unverified); their profile as staff see it."""

    def bring(seller: Caller, state: str) -> dict[str, Any]:
        ok(call(client, seller, "PATCH", "/me", json={"bank_account": BANK}))
        if state != "unverified":
            ok(call(client, seller, "POST", "/me/kyc"))
        if state == "verified":
            ok(call(client, staff, "POST", f"/{seller.uuid}/kyc/approve"))
        if state == "rejected":
            ok(call(client, staff, "POST", f"/{seller.uuid}/kyc/reject", json={"reason": "blurry"}))
        shown = ok(call(client, staff, "GET", f"/{seller.uuid}"))
        assert shown["kyc"]["state"] == state
        return shown

    return bring
