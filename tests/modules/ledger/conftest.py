"""Helpers for the ledger's tests: postings over HTTP, raw SQL on the primary, as the app's role
and as the superuser (who can get past the triggers)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
from flask.testing import FlaskClient
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url
from werkzeug.test import TestResponse

from tests.modules.conftest import Caller
from tests.modules.web.conftest import either_app, embedded_app  # noqa: F401 - fixtures
from tests.servers import Services

API = "/api/v1/ledger"
PROBLEM = "application/problem+json"
D = Decimal


def post_tx(client: FlaskClient, caller: Caller, body: dict[str, Any]) -> TestResponse:
    return client.post(f"{API}/transactions", json=body, headers=caller.headers)


def get(client: FlaskClient, caller: Caller, path: str, **params: Any) -> TestResponse:
    return client.get(f"{API}{path}", query_string=params, headers=caller.headers)


def simple(operation: str, holder: Any, amount: str, nonce: str, **extra: Any) -> dict[str, Any]:
    """A holder + amount body (CREDIT_ADD, CREDIT_SPEND, ...)."""
    return {
        "operation": operation,
        "nonce": nonce,
        "currency": "IDR",
        "holder": str(holder),
        "amount": amount,
        **extra,
    }


def ok(response: TestResponse, status: int = 201) -> dict[str, Any]:
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


def superuser_dsn(services: Services) -> str:
    """The superuser on the test database (``admin_dsn`` names the server's own database)."""
    return make_conninfo(services.admin_dsn, dbname=make_url(services.database_url).database)


@contextmanager
def behind_the_triggers(services: Services) -> Iterator[psycopg.Connection]:
    """A superuser connection whose writes fire no user trigger (as a replica applies rows)."""
    with psycopg.connect(superuser_dsn(services)) as connection:
        connection.execute("SET session_replication_role = replica")
        yield connection


def sql(services: Services, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(primary_dsn(services), autocommit=True) as connection:
        cursor = connection.execute(statement, params or None)
        return cursor.fetchall() if cursor.description else []


def count(services: Services, table: str) -> int:
    return sql(services, f"SELECT count(*) FROM {table}")[0][0]  # noqa: S608
