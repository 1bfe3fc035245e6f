"""Who may ask what through GraphQL: credentials checked as on every endpoint (401/403
problem+json), API keys with ``graphql:read`` only, each object shown to whom REST shows it,
no mutations, POST only."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from graphql import GraphQLError

from modules.graphql import services
from tests.modules.auth.test_api_keys import create_key, signed
from tests.modules.conftest import Caller

from .conftest import (
    GRAPHQL,
    MARKETPLACE,
    ORDER_DETAIL,
    ORDERS,
    Shop,
    ask_signed,
    problem_of,
    scope_missing,
)

IDS = "{ orders(first: 50) { items { id } next_cursor } }"


def listed(shop: Shop, caller: Caller) -> set[str]:
    return {order["id"] for order in shop.graphql(caller, IDS)["orders"]["items"]}


def not_found(shop: Shop, caller: Caller, field: str, public_id: str) -> None:
    """``field(id:)`` answers null with a not-found error, as REST answers 404."""
    response = shop.ask(caller, f'{{ {field}(id: "{public_id}") {{ id }} }}')
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["data"] == {field: None}
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "not-found"}
    assert error["path"] == [field]


def test_without_credentials_the_answer_is_the_apis_401_problem(pg_shop: Shop) -> None:
    response = pg_shop.ask(None, IDS)

    body = problem_of(response, 401, "unauthenticated")
    assert "Bearer" in body["detail"]
    expired = pg_shop.client.post(
        GRAPHQL, json={"query": IDS}, headers={"Authorization": "Bearer not-a-token"}
    )
    problem_of(expired, 401)
    assert expired.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_customer_reads_only_their_own_orders_in_lists_and_by_id(pg_shop: Shop) -> None:
    shop = pg_shop
    dewi, agus = shop.user(), shop.user()
    product = shop.product()
    own = shop.order(dewi, (product, "1"), provider="demo")
    other = shop.order(agus, (product, "2"), provider="demo")

    assert listed(shop, dewi) == {own["order"]["id"]}
    assert listed(shop, agus) == {other["order"]["id"]}
    # Filtering by another customer finds nothing, as in REST.
    filtered = shop.graphql(dewi, ORDERS, filter={"customer": str(agus.uuid)}, first=10)
    assert filtered["orders"]["items"] == []
    for field, key in [
        ("order", "order"),
        ("invoice", "invoice"),
        ("payment", "payment"),
        ("transaction", "transaction"),
    ]:
        not_found(shop, dewi, field, other[key]["id"])
        assert shop.graphql(agus, f'{{ {field}(id: "{other[key]["id"]}") {{ id }} }}') == {
            field: {"id": other[key]["id"]}
        }
    transactions = shop.graphql(dewi, "{ transactions { items { id } } }")["transactions"]
    assert transactions["items"] == [{"id": own["transaction"]["id"]}]


def test_a_seller_sees_only_the_orders_with_their_products(pg_shop: Shop) -> None:
    shop = pg_shop
    budi, sari, dewi = shop.user("seller"), shop.user("seller"), shop.user()
    budis, saris = shop.product("37000", seller=budi), shop.product("20000", seller=sari)
    only_budi = shop.order(dewi, (budis, "1"), provider="demo")
    both = shop.order(dewi, (budis, "1"), (saris, "1"), provider="demo")
    only_sari = shop.order(dewi, (saris, "3"), provider="demo")

    assert listed(shop, budi) == {only_budi["order"]["id"], both["order"]["id"]}
    assert listed(shop, sari) == {both["order"]["id"], only_sari["order"]["id"]}
    not_found(shop, budi, "order", only_sari["order"]["id"])
    not_found(shop, budi, "invoice", only_sari["invoice"]["id"])
    seen = shop.graphql(budi, ORDER_DETAIL, id=both["order"]["id"])["order"]
    # The whole order, as REST shows it to them: the other seller's line included.
    assert len(seen["lines"]) == 2
    assert seen == shop.graphql(dewi, ORDER_DETAIL, id=both["order"]["id"])["order"]
    # A transaction under a visible payment: without the payer's next action (REST's rule).
    nested = shop.graphql(
        budi,
        f'{{ order(id: "{both["order"]["id"]}") {{ payments {{ transactions {{ id action }} '
        "} } }",
    )["order"]
    assert nested["payments"] == [
        {"transactions": [{"id": both["transaction"]["id"], "action": None}]}
    ]


def test_an_api_key_needs_the_graphql_scope_and_that_of_what_it_reads(
    app: Flask, client: FlaskClient, log_in_as: Any, pg_shop: Shop
) -> None:
    seller = log_in_as("seller")
    product = pg_shop.product(seller=seller)
    placed = pg_shop.order(pg_shop.user(), (product, "1"), provider="demo")
    order_id = placed["order"]["id"]
    body = json.dumps({"query": IDS}).encode()

    without = create_key(client, seller, ["orders:read", "payments:read"])
    refused = signed(client, without, "POST", GRAPHQL, body)
    problem = problem_of(refused, 403, "scope-missing")
    assert "graphql:read" in problem["detail"]

    # graphql:read opens the endpoint, not what REST keeps behind other scopes.
    graphql_only = create_key(client, seller, ["graphql:read"])
    answer = ask_signed(client, graphql_only, IDS)
    assert answer["data"] == {"orders": None}
    scope_missing(answer, "orders:read", ["orders"])
    answer = ask_signed(client, graphql_only, "{ settlement_summary { pending } }")
    scope_missing(answer, "settlements:read", ["settlement_summary"])

    with_orders = create_key(client, seller, ["graphql:read", "orders:read"])
    assert ask_signed(client, with_orders, IDS)["data"]["orders"]["items"] == [{"id": order_id}]
    nested = f'{{ order(id: "{order_id}") {{ id invoices {{ id }} payments {{ id }} }} }}'
    assert ask_signed(client, with_orders, nested)["data"]["order"]["payments"] == [
        {"id": placed["payment"]["id"]}
    ]  # as GET /orders/{id} shows them with orders:read
    for field, key, scope in [
        ("payment", "payment", "payments:read"),
        ("transaction", "transaction", "payments:read"),
        ("invoice", "invoice", None),
    ]:
        answer = ask_signed(
            client, with_orders, f'{{ {field}(id: "{placed[key]["id"]}") {{ id }} }}'
        )
        if scope is None:
            assert answer == {"data": {field: {"id": placed[key]["id"]}}}
        else:
            scope_missing(answer, scope, [field])
    scope_missing(
        ask_signed(client, with_orders, "{ transactions { items { id } } }"),
        "payments:read",
        ["transactions"],
    )
    # Provider transactions need payments:read under a payment too, as over REST.
    under_payments = f'order(id: "{order_id}") {{ payments {{ transactions {{ id }} }} }}'
    answer = ask_signed(client, with_orders, f"{{ {under_payments} }}")
    assert answer["data"] == {"order": None}
    scope_missing(answer, "payments:read", ["order", "payments", 0, "transactions"])

    every_scope = ["graphql:read", "orders:read", "payments:read", "settlements:read"]
    everything = create_key(client, seller, every_scope)
    answer = ask_signed(
        client, everything, f"{{ {under_payments} settlement_summary {{ currency }} }}"
    )
    assert answer == {
        "data": {
            "order": {"payments": [{"transactions": [{"id": placed["transaction"]["id"]}]}]},
            "settlement_summary": {"currency": "IDR"},
        }
    }


def test_a_mutation_or_a_subscription_is_refused_as_a_graphql_error(pg_shop: Shop) -> None:
    staff = pg_shop.user("staff")
    for document in (
        'mutation { cancel_order(id: "x") { id } }',
        "subscription { orders { id } }",
    ):
        (error,) = pg_shop.errors(staff, document)
        assert error["extensions"] == {"code": "read-only"}
        assert "read-only" in error["message"]
        assert "REST API" in error["message"]


def test_only_post_reaches_it_and_its_body_is_checked(pg_shop: Shop) -> None:
    staff = pg_shop.user("staff")
    response = pg_shop.client.get(GRAPHQL, query_string={"query": IDS}, headers=staff.headers)
    problem_of(response, 405)
    assert set(response.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    for body, field in [
        ({}, "query"),
        ({"query": ""}, "query"),
        ({"query": IDS, "x": 1}, "x"),
        ({"query": IDS, "operationName": "not a name"}, "operationName"),
        ({"query": IDS, "variables": []}, "variables"),
        ({"query": IDS, "variables": {"first": 1.5}}, "variables.first"),
        ({"query": IDS, "variables": {"first": 2**31}}, "variables.first"),
        ({"query": IDS, "variables": {"f": {"state": {"deeper": 1}}}}, "variables.f.state"),
        ({"query": IDS, "variables": {"f": {"bad name": "x"}}}, "variables.f.bad name"),
        ({"query": IDS, "variables": {"f": [{"a": 1}]}}, "variables.f"),
        ({"query": IDS, "variables": {"f": "\u0001"}}, "variables.f"),
    ]:
        refused = pg_shop.client.post(GRAPHQL, json=body, headers=staff.headers)
        assert list(problem_of(refused, 422)["errors"]) == [field], body
    # What the schema's inputs take passes: text, whole numbers, booleans, null, one level of
    # input object, lists of those.
    fits = {"first": 2.0, "f": {"state": "sale", "n": None, "b": True}, "ids": ["a", 1]}
    response = pg_shop.client.post(
        GRAPHQL,
        json={"query": "query ($first: Int!) { orders(first: $first) { next_cursor } }",
              "variables": fits},
        headers=staff.headers,
    )  # fmt: skip
    assert response.get_json() == {"data": {"orders": {"next_cursor": None}}}


def test_the_querys_own_errors_are_graphql_errors_in_a_200(pg_shop: Shop) -> None:
    staff = pg_shop.user("staff")
    (error,) = pg_shop.errors(staff, "{ orders(")
    assert error["message"].startswith("Syntax Error")
    (error,) = pg_shop.errors(staff, "{ orders { total } }")
    assert error["message"] == "Cannot query field 'total' on type 'OrderPage'."
    two = "query A { orders { next_cursor } } query B { transactions { next_cursor } }"
    # Without operationName the first runs (strawberry's choice), with it the one named.
    assert pg_shop.graphql(staff, two) == {"orders": {"next_cursor": None}}
    response = pg_shop.client.post(
        GRAPHQL, json={"query": two, "operationName": "B"}, headers=staff.headers
    )
    assert response.get_json() == {"data": {"transactions": {"next_cursor": None}}}
    response = pg_shop.client.post(
        GRAPHQL, json={"query": two, "operationName": "C"}, headers=staff.headers
    )
    assert response.get_json()["errors"] == [{"message": "the document has no operation named 'C'"}]


def test_a_string_of_the_query_the_database_cannot_store_is_a_graphql_error(
    pg_shop: Shop,
) -> None:
    staff = pg_shop.user("staff")
    for literal in ("SO\\u0000", "\\u0007"):
        query = f'{{ orders(filter: {{number: "{literal}"}}) {{ next_cursor }} }}'
        (error,) = pg_shop.errors(staff, query)
        assert error["extensions"] == {"code": "value-not-storable"}
        assert "control character" in error["message"]
        assert error["locations"] == [{"line": 1, "column": 27}]
    defaulted = 'query ($n: String = "\\u0000") { orders(filter: {number: $n}) { next_cursor } }'
    (error,) = pg_shop.errors(staff, defaulted)
    assert error["extensions"] == {"code": "value-not-storable"}
    # Tab and line breaks are text.
    spaced = '{ orders(filter: {number: "SO\\t\\n"}) { next_cursor } }'
    assert pg_shop.graphql(staff, spaced) == {"orders": {"next_cursor": None}}


def test_a_failure_before_any_resolver_is_a_graphql_error_and_one_in_a_resolver_is_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # What strawberry makes of an exception of a validation rule (strawberry's depth rule
    # raised KeyError for a spread of an unknown fragment): nothing was read, so the query's.
    tripped = GraphQLError("'Missing'", original_error=KeyError("Missing"))
    with caplog.at_level(logging.WARNING, logger="modules.graphql.services"):
        assert services._formatted(tripped) == {"message": "'Missing'"}
    assert "outside the resolvers" in caplog.text
    # The same in a resolver (reading the data failed): the app's 500 (or 503), not the query's.
    failed = GraphQLError("'Missing'", path=["orders"], original_error=KeyError("Missing"))
    with pytest.raises(KeyError):
        services._formatted(failed)


def test_the_settlement_summary_is_the_sellers_own_balance_and_staff_read_any(
    pg_shop: Shop,
) -> None:
    shop = pg_shop
    budi, sari, staff, dewi = (shop.user(r) for r in ("seller", "seller", "staff", "customer"))
    placed = shop.order(dewi, (shop.product("50000", seller=budi), "2"))
    response = shop.client.post(
        f"{MARKETPLACE}/payments/{placed['payment']['id']}/confirm", headers=staff.headers
    )
    assert response.status_code == 200, response.get_json()
    fields = "seller currency available pending owed next_release_at next_release_amount " + (
        "next_payout_on"
    )

    own = shop.graphql(budi, f"{{ settlement_summary {{ {fields} }} }}")["settlement_summary"]
    assert own.pop("seller") == str(budi.uuid)
    assert own == shop.rest(budi, "/api/v1/sellers/me/balance")
    assert own["pending"] != "0.00"
    named = f'{{ settlement_summary(seller: "{budi.uuid}") {{ {fields} }} }}'
    by_staff = shop.graphql(staff, named)["settlement_summary"]
    assert by_staff.pop("seller") == str(budi.uuid)
    assert by_staff == shop.rest(staff, f"/api/v1/sellers/{budi.uuid}/balance")

    (error,) = shop.errors(sari, named)
    assert error["extensions"] == {"code": "forbidden"}
    (error,) = shop.errors(dewi, "{ settlement_summary { pending } }")
    assert error["extensions"] == {"code": "forbidden"}
    (error,) = shop.errors(staff, "{ settlement_summary { pending } }")
    assert error["extensions"]["code"] == "validation-failed"
    (error,) = shop.errors(budi, '{ settlement_summary(currency: "EUR") { pending } }')
    assert error["extensions"]["code"] == "validation-failed"
