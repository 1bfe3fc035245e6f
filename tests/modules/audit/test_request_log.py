"""One stored row per API request, written off the request path, never holding a credential, a
body or a query string; admins list them all, sellers their API keys' calls."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app import clock
from tests.conftest import wait_for_replica
from tests.modules.audit.conftest import (
    AUDIT,
    clear_logs,
    flushed,
    insert_requests,
    request_row,
    request_rows,
)
from tests.modules.conftest import Caller, bearer
from tests.servers import Services

QUERY_SECRET = "qs-4f1d9c2e-query-secret"
BODY_SECRET = "bs-77aa31e0-body-secret"
PATH_SECRET = "ps-0c5be8d1-path-secret"
FORGED_TOKEN = "ft-93d0aa41-forged-bearer-token"
SIGNATURE = "sig-5e2b7f90-signature-value"
COLUMNS = {
    "id",
    "at",
    "route",
    "method",
    "status",
    "latency_ms",
    "user_id",
    "api_key_id",
    "ip",
    "request_id",
}


def send(client: FlaskClient, number: int, admin: Caller, victim: str) -> tuple[str, int]:
    """The ``number``-th request of a mix of routes, methods, answers and credentials."""
    headers = {"X-Request-ID": f"r{number}"}
    kind = number % 8
    if kind == 0:
        headers.update({"X-Signature": SIGNATURE, "X-API-Key": "lpk_unknown"})
        response = client.get(f"/api/v1/modules?api_token={QUERY_SECRET}&page=2", headers=headers)
    elif kind == 1:
        response = client.get(f"{AUDIT}/events?limit=1", headers={**headers, **admin.headers})
    elif kind == 2:
        headers.update(bearer(FORGED_TOKEN))
        response = client.get("/api/v1/marketplace/orders", headers=headers)
    elif kind == 3:
        response = client.post("/api/v1/modules", json={"password": BODY_SECRET}, headers=headers)
    elif kind == 4:
        response = client.get(f"/api/v1/no/such/{PATH_SECRET}", headers=headers)
    elif kind == 5:
        url = f"{AUDIT}/requests?limit=1&api_key={QUERY_SECRET}"
        response = client.get(url, headers={**headers, **admin.headers})
    elif kind == 6:
        body = {"email": victim, "password": BODY_SECRET}
        response = client.post("/api/v1/auth/login", json=body, headers=headers)
    else:
        response = client.delete(f"{AUDIT}/events", headers={**headers, **admin.headers})
    return response.request.method, response.status_code


def test_ten_thousand_requests_leave_ten_thousand_rows_without_secrets(
    app: Flask, client: FlaskClient, admin: Caller, make_user: Callable[..., Any]
) -> None:
    _, _, victim = make_user(role="customer")
    clear_logs(app)

    answered = Counter(send(client, number, admin, victim) for number in range(10_000))

    writer = flushed(app)
    rows = request_rows(app)
    assert len(rows) == 10_000
    assert writer.dropped == 0
    assert {row["request_id"] for row in rows} == {f"r{n}" for n in range(10_000)}
    assert Counter((row["method"], row["status"]) for row in rows) == answered
    assert set(rows[0]) == COLUMNS  # no column for a body, a query string or a header
    stored = repr(rows)
    for secret in (QUERY_SECRET, BODY_SECRET, PATH_SECRET, FORGED_TOKEN, SIGNATURE, admin.token):
        assert secret not in stored
    assert "Bearer" not in stored
    routes = {row["route"] for row in rows}
    assert routes == {
        "/api/v1/modules",
        f"{AUDIT}/events",
        f"{AUDIT}/requests",
        "/api/v1/marketplace/orders",
        "/api/v1/auth/login",
        "(no route)",
    }
    by_route = {row["route"]: row for row in rows if row["status"] == 200}
    assert by_route[f"{AUDIT}/events"]["user_id"] == admin.user_id
    assert by_route["/api/v1/modules"]["user_id"] is None


def test_only_api_requests_are_logged(app: Flask, client: FlaskClient) -> None:
    clear_logs(app)

    client.get("/health/live")
    client.get("/api/v1/docs/assets/swagger-ui.css")
    client.get("/api/v1/modules")

    flushed(app)
    assert [row["route"] for row in request_rows(app)] == ["/api/v1/modules"]


def test_the_request_log_can_be_switched_off(
    make_app: Callable[..., Flask], config: dict[str, Any]
) -> None:
    app = make_app(module_env={**config["module_env"], "audit_request_log": "off"})
    clear_logs(app)

    app.test_client().get("/api/v1/modules")

    flushed(app)
    assert request_rows(app) == []


def test_admins_list_and_filter_requests_in_keyset_pages(
    app: Flask,
    client: FlaskClient,
    admin: Caller,
    log_in_as: Callable[..., Caller],
    services: Services,
) -> None:
    seller = log_in_as("seller")
    clear_logs(app)
    now = clock.now()
    insert_requests(
        app,
        [
            request_row(now - timedelta(minutes=5), status=201, method="POST", route="/a"),
            request_row(now - timedelta(minutes=4), status=404, user_id=seller.user_id),
            request_row(now - timedelta(minutes=3), user_id=seller.user_id, api_key_id="lpk_s1"),
            request_row(now - timedelta(minutes=2), status=500, route="/b"),
            request_row(now - timedelta(minutes=1), user_id=admin.user_id),
        ],
    )
    wait_for_replica(services)

    def listed(query: str = "") -> list[dict[str, Any]]:
        response = client.get(f"{AUDIT}/requests?{query}", headers=admin.headers)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["items"]

    everything = listed()
    assert [item["status"] for item in everything] == [200, 500, 200, 404, 201]  # newest first
    assert everything[2]["api_key_id"] == "lpk_s1"
    assert everything[2]["user"] == str(seller.uuid)
    assert [i["status"] for i in listed("status=500")] == [500]
    assert [i["route"] for i in listed("route=/a")] == ["/a"]
    assert [i["method"] for i in listed("method=POST")] == ["POST"]
    assert [i["status"] for i in listed(f"user={seller.uuid}")] == [200, 404]
    assert [i["api_key_id"] for i in listed("api_key=lpk_s1")] == ["lpk_s1"]
    since = (now - timedelta(minutes=3, seconds=30)).isoformat()
    before = (now - timedelta(minutes=1, seconds=30)).isoformat()
    query = f"since={since}&before={before}".replace("+", "%2B")
    assert [i["status"] for i in listed(query)] == [500, 200]

    pages, cursor = [], None
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(f"{AUDIT}/requests?{query}", headers=admin.headers).get_json()
        pages.append([item["status"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [[200, 500], [200, 404], [201]]


def test_sellers_see_only_their_own_api_keys_calls(
    app: Flask, client: FlaskClient, log_in_as: Callable[..., Caller], services: Services
) -> None:
    seller, other = log_in_as("seller"), log_in_as("seller")
    customer = log_in_as("customer")
    clear_logs(app)
    now = clock.now()
    insert_requests(
        app,
        [
            request_row(now - timedelta(minutes=4), user_id=seller.user_id, api_key_id="lpk_a"),
            request_row(now - timedelta(minutes=3), user_id=seller.user_id),  # logged in, no key
            request_row(now - timedelta(minutes=2), user_id=other.user_id, api_key_id="lpk_b"),
            request_row(now - timedelta(minutes=1), user_id=seller.user_id, api_key_id="lpk_c"),
            request_row(now, api_key_id="lpk_a"),  # no user: never a seller's
        ],
    )
    wait_for_replica(services)

    def listed(caller: Caller, query: str = "") -> list[str | None]:
        response = client.get(f"{AUDIT}/requests?{query}", headers=caller.headers)
        assert response.status_code == 200, response.get_json()
        return [item["api_key_id"] for item in response.get_json()["items"]]

    assert listed(seller) == ["lpk_c", "lpk_a"]
    assert listed(seller, f"user={other.uuid}") == ["lpk_c", "lpk_a"]  # not theirs to ask
    assert listed(seller, "api_key=lpk_b") == []
    assert listed(other) == ["lpk_b"]
    assert client.get(f"{AUDIT}/requests", headers=customer.headers).status_code == 403
    assert client.get(f"{AUDIT}/requests").status_code == 401


def test_a_refused_api_key_call_keeps_the_key_id_it_claimed_only_in_a_key_ids_shape(
    app: Flask, client: FlaskClient, admin: Caller, services: Services
) -> None:
    clear_logs(app)
    claimed = "lpk_" + secrets.token_urlsafe(16)
    pasted_secret = "lsk_" + secrets.token_urlsafe(32)
    signed = {"X-Timestamp": str(int(clock.now().timestamp())), "X-Signature": SIGNATURE}
    for number, key in enumerate([claimed, pasted_secret, claimed + "x", "lpk_short"]):
        headers = {**signed, "X-API-Key": key, "X-Request-ID": f"k{number}"}
        assert client.get(f"{AUDIT}/requests", headers=headers).status_code == 401

    flushed(app)
    stored = {row["request_id"]: row for row in request_rows(app)}
    assert stored["k0"]["api_key_id"] == claimed
    assert stored["k0"]["user_id"] is None  # claimed, not authenticated
    assert [stored[f"k{n}"]["api_key_id"] for n in (1, 2, 3)] == [None, None, None]
    assert pasted_secret not in repr(stored)
    wait_for_replica(services)
    listed = client.get(f"{AUDIT}/requests?api_key={claimed}", headers=admin.headers)
    assert [item["status"] for item in listed.get_json()["items"]] == [401]


def test_the_embedded_default_logs_and_lists(make_embedded_app: Callable[..., Flask]) -> None:
    app = make_embedded_app()
    client = app.test_client()
    with app.app_context():
        from modules.user.services import create_user

        create_user("root@example.test", role="admin", password="correct horse battery staple")
    token = client.post(
        "/api/v1/auth/login",
        json={"email": "root@example.test", "password": "correct horse battery staple"},
    ).get_json()["access_token"]
    clear_logs(app)

    for number in range(30):
        client.get(f"/api/v1/modules?token={QUERY_SECRET}", headers={"X-Request-ID": f"e{number}"})
    client.get(f"/api/v1/no/{PATH_SECRET}")

    flushed(app)
    rows = request_rows(app)
    assert len(rows) == 31
    assert QUERY_SECRET not in repr(rows)
    assert PATH_SECRET not in repr(rows)
    body = client.get(f"{AUDIT}/requests?limit=100", headers=bearer(token)).get_json()
    assert len(body["items"]) == 31
    assert body["items"][0]["route"] == "(no route)"
