"""``/api/v1/webhooks`` over HTTP: who may do what, validation, listings and the secret."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import run_jobs
from tests.modules.conftest import Caller

from .conftest import (
    Receiver,
    call,
    caught_up,
    create_endpoint,
    deliveries,
    ok,
    problem,
)

URL = "http://127.0.0.1:9/hook"  # loopback allowed by the tests' setting; never called here


def test_endpoints_crud_and_the_secret_shown_on_creation_only(
    client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    seller = log_in_as("seller")
    created = create_endpoint(
        client, seller, URL, description="ERP", event_types=["order.confirmed", "order.confirmed"]
    )
    assert created["event_types"] == ["order.confirmed"]
    assert created["owner"] == str(seller.uuid)
    assert created["enabled"] is True
    path = f"/endpoints/{created['id']}"
    shown = ok(call(client, seller, "GET", path))
    assert "secret" not in shown
    assert shown["description"] == "ERP"

    changed = ok(
        call(
            client,
            seller,
            "PATCH",
            path,
            json={"event_types": [], "enabled": False, "description": "off"},
        )
    )
    assert (changed["event_types"], changed["enabled"], changed["description"]) == (
        [],
        False,
        "off",
    )
    listed = ok(call(client, seller, "GET", "/endpoints"))
    assert [e["id"] for e in listed["items"]] == [created["id"]]

    assert call(client, seller, "DELETE", path).status_code == 204
    problem(call(client, seller, "GET", path), 404, "webhook-endpoint-not-found")


def test_a_seller_reaches_only_their_own_endpoints_and_admins_all(
    client: FlaskClient, log_in_as: Callable[..., Caller], admin: Caller
) -> None:
    a, b = log_in_as("seller"), log_in_as("seller")
    endpoint = create_endpoint(client, a, URL)
    path = f"/endpoints/{endpoint['id']}"
    for method, suffix in [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/rotate-secret"),
        ("POST", "/test"),
    ]:
        kwargs = {"json": {"description": "x"}} if method == "PATCH" else {}
        problem(call(client, b, method, path + suffix, **kwargs), 404, "webhook-endpoint-not-found")
    assert ok(call(client, b, "GET", "/endpoints"))["items"] == []
    assert [e["id"] for e in ok(call(client, admin, "GET", "/endpoints"))["items"]] == [
        endpoint["id"]
    ]
    assert ok(call(client, admin, "GET", path))["owner"] == str(a.uuid)


def test_customers_and_staff_have_no_webhooks(
    client: FlaskClient, customer: Caller, staff: Caller
) -> None:
    for caller in (customer, staff):
        assert call(client, caller, "GET", "/endpoints").status_code == 403
        assert call(client, caller, "POST", "/endpoints", json={"url": URL}).status_code == 403
    assert call(client, None, "GET", "/deliveries").status_code == 401


def test_unknown_or_unavailable_event_types_are_422_and_change_nothing(
    client: FlaskClient, log_in_as: Callable[..., Caller], admin: Caller
) -> None:
    seller = log_in_as("seller")
    body = problem(
        call(
            client,
            seller,
            "POST",
            "/endpoints",
            json={"url": URL, "event_types": ["order.confirmed", "order.shipped"]},
        ),
        422,
        "unknown-event-type",
    )
    assert "order.shipped" in body["detail"]
    problem(
        call(
            client, seller, "POST", "/endpoints", json={"url": URL, "event_types": ["user.created"]}
        ),
        422,
        "unknown-event-type",
    )
    assert ok(call(client, seller, "GET", "/endpoints"))["items"] == []
    # Admins may have every type.
    create_endpoint(client, admin, URL, event_types=["user.created", "wallet.frozen"])
    endpoint = create_endpoint(client, seller, URL)
    problem(
        call(
            client,
            seller,
            "PATCH",
            f"/endpoints/{endpoint['id']}",
            json={"event_types": ["nope.nope"]},
        ),
        422,
        "unknown-event-type",
    )
    problem(
        call(
            client,
            seller,
            "PATCH",
            f"/endpoints/{endpoint['id']}",
            json={"url": "http://192.168.1.1/"},
        ),
        422,
        "webhook-url-refused",
    )
    assert ok(call(client, seller, "GET", f"/endpoints/{endpoint['id']}"))["url"] == URL
    # A host without an address (yet) reaches nothing: accepted, checked at every delivery.
    create_endpoint(client, seller, "http://no-such-host.invalid/")
    problem(
        call(client, seller, "POST", "/endpoints", json={"url": URL, "enabled": "yes"}),
        422,
        "validation-failed",
    )


def test_deliveries_are_listed_newest_first_in_keyset_pages_with_filters(
    app: Flask,
    client: FlaskClient,
    log_in_as: Callable[..., Caller],
    admin: Caller,
    make_receiver: Callable[..., Receiver],
) -> None:
    seller = log_in_as("seller")
    ok_receiver, failing = make_receiver(), make_receiver(lambda _n: (404, {}, b"no"))
    good = create_endpoint(client, seller, ok_receiver.url)
    bad = create_endpoint(client, seller, failing.url)
    queued = [
        ok(call(client, seller, "POST", f"/endpoints/{e['id']}/test"), 202)
        for e in (good, bad, good)
    ]
    run_jobs(app)

    caught_up()
    first = ok(call(client, seller, "GET", "/deliveries", query_string={"limit": 2}))
    assert [d["id"] for d in first["items"]] == [queued[2]["id"], queued[1]["id"]]
    rest = ok(
        call(
            client,
            seller,
            "GET",
            "/deliveries",
            query_string={"limit": 2, "cursor": first["next_cursor"]},
        )
    )
    assert [d["id"] for d in rest["items"]] == [queued[0]["id"]]
    assert rest["next_cursor"] is None

    assert [d["id"] for d in deliveries(client, seller, status="failed")] == [queued[1]["id"]]
    assert [d["id"] for d in deliveries(client, seller, endpoint=good["id"])] == [
        queued[2]["id"],
        queued[0]["id"],
    ]
    assert deliveries(client, seller, endpoint=str(uuid.uuid4())) == []
    other = log_in_as("seller")
    assert deliveries(client, other) == []
    problem(
        call(client, other, "GET", f"/deliveries/{queued[0]['id']}"),
        404,
        "webhook-delivery-not-found",
    )
    problem(
        call(client, other, "POST", f"/deliveries/{queued[0]['id']}/redeliver"),
        404,
        "webhook-delivery-not-found",
    )
    assert len(deliveries(client, admin)) == 3
    problem(
        call(client, seller, "GET", "/deliveries", query_string={"status": "lost"}),
        422,
        "validation-failed",
    )


def test_the_views_declare_their_scopes(app: Flask) -> None:
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/webhooks"):
            continue
        view = app.view_functions[rule.endpoint].view_class
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            scope = getattr(view, method.lower())._lapak_scope
            assert scope == ("webhooks:read" if method == "GET" else "webhooks:write"), rule
