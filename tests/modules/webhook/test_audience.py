"""Who receives which event: admins everything, a seller only the events about their own
sales, refunds and settlements; and every event the modules emit is classified."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from modules.webhook.audience import EVENT_AUDIENCE, event_types_for
from tests.conftest import run_jobs
from tests.modules.conftest import Caller
from tests.modules.marketplace.conftest import MadeProduct, order_body, place
from tests.modules.marketplace.test_ledger import confirm, refund

from .conftest import Receiver, create_endpoint, signed_by

SALE_EVENTS = {
    "order.confirmed",
    "payment.registered",
    "invoice.posted",
    "payment.confirmed",
    "invoice.paid",
    "refund.created",
    "refund.succeeded",
    "invoice.reversed",
}


def types_received(receiver: Receiver) -> list[str]:
    return [json.loads(r.body)["type"] for r in receiver.received]


def test_a_seller_receives_the_events_of_their_own_sales_only(
    app: Flask,
    client: FlaskClient,
    log_in_as: Callable[..., Caller],
    customer: Caller,
    staff: Caller,
    admin: Caller,
    make_product: Callable[..., MadeProduct],
    make_receiver: Callable[..., Receiver],
) -> None:
    seller_a, seller_b = log_in_as("seller"), log_in_as("seller")
    product_a = make_product("10000", name="BANDENG", seller_id=seller_a.user_id)
    product_b = make_product("20000", name="LELE", seller_id=seller_b.user_id)
    run_jobs(app)  # the sign-ups' events go before any endpoint exists
    receivers = {name: make_receiver() for name in ("a", "b", "admin")}
    secrets = {
        "a": create_endpoint(client, seller_a, receivers["a"].url)["secret"],
        "b": create_endpoint(client, seller_b, receivers["b"].url)["secret"],
        "admin": create_endpoint(client, admin, receivers["admin"].url)["secret"],
    }

    placed = place(client, customer, order_body((product_a.id, "1")))
    confirm(client, staff, placed["payment"]["id"])
    answer = refund(client, staff, placed["payment"]["id"])
    assert answer.status_code == 201, answer.get_json()
    run_jobs(app)

    # Everything admins got about this order (their endpoint also gets users' events).
    about_the_sale = [t for t in types_received(receivers["admin"]) if t in SALE_EVENTS]
    assert types_received(receivers["a"]) == about_the_sale
    assert {"order.confirmed", "payment.confirmed", "refund.created"} <= set(about_the_sale)
    assert receivers["b"].received == []
    for name, receiver in receivers.items():
        assert all(signed_by(secrets[name], r) for r in receiver.received)
    # One delivery per event and endpoint, with the event's id as webhook-id.
    ids_a = [r.headers["webhook-id"] for r in receivers["a"].received]
    assert len(ids_a) == len(set(ids_a))
    assert set(ids_a) <= {r.headers["webhook-id"] for r in receivers["admin"].received}

    # Integer keys of rows stay inside: the order's customer is not a number in a webhook.
    for received in receivers["a"].received + receivers["admin"].received:
        data = json.loads(received.body)["data"]
        assert not {"customer_id", "user_id"} & set(data), data
    # An order with both sellers' products concerns both.
    place(client, customer, order_body((product_a.id, "1"), (product_b.id, "1")))
    run_jobs(app)
    assert types_received(receivers["b"]) == [
        "order.confirmed",
        "payment.registered",
        "invoice.posted",
    ]


def test_filters_choose_event_types_and_a_redispatch_adds_no_delivery(
    app: Flask,
    client: FlaskClient,
    log_in_as: Callable[..., Caller],
    customer: Caller,
    staff: Caller,
    make_product: Callable[..., MadeProduct],
    make_receiver: Callable[..., Receiver],
) -> None:
    from sqlalchemy import update

    from app.db import transaction
    from app.events import PENDING, OutboxEvent, dispatch_outbox

    seller = log_in_as("seller")
    product = make_product("10000", seller_id=seller.user_id)
    run_jobs(app)
    receiver = make_receiver()
    create_endpoint(client, seller, receiver.url, event_types=["payment.confirmed"])
    placed = place(client, customer, order_body((product.id, "2")))
    confirm(client, staff, placed["payment"]["id"])
    run_jobs(app)
    assert types_received(receiver) == ["payment.confirmed"]

    with app.app_context():
        with transaction() as session:  # as if the dispatch had died before its commit
            session.execute(update(OutboxEvent).values(status=PENDING, delivered_to=[]))
        dispatch_outbox()
    run_jobs(app)
    assert types_received(receiver) == ["payment.confirmed"]


def test_every_event_the_modules_emit_is_classified() -> None:
    emitted = set()
    for path in Path("modules").rglob("*.py"):
        source = path.read_text()
        emitted.update(re.findall(r"emit\(\s*\"([a-z_]+\.[a-z_]+)\"", source))
        emitted.update(re.findall(r"\(\"([a-z_]+\.[a-z_]+)\", _[a-z_]+event\(", source))
        emitted.update(
            f"settlement.{t}" for t in ("completed", "failed") if "settlement.{target}" in source
        )
    from modules.payment.transitions import EVENTS

    emitted.update(EVENTS.values())
    assert emitted, "the pattern found no emit() call"
    assert emitted <= set(EVENT_AUDIENCE), sorted(emitted - set(EVENT_AUDIENCE))


def test_sellers_may_choose_only_the_events_about_them() -> None:
    seller_types = set(event_types_for("seller"))
    assert seller_types >= SALE_EVENTS
    assert {"settlement.created", "webhook_endpoint.disabled"} <= seller_types
    assert not any(t.startswith(("user.", "wallet.", "seller.")) for t in seller_types)
    # A provider's outcome contradicting ours is for the admins to resolve.
    assert "settlement.outcome_conflict" not in seller_types
    assert set(event_types_for("admin")) == set(EVENT_AUDIENCE)


def test_the_seller_who_issued_a_standalone_invoice_receives_its_events(
    app: Flask,
    client: FlaskClient,
    log_in_as: Callable[..., Caller],
    staff: Caller,
    make_receiver: Callable[..., Receiver],
) -> None:
    from tests.modules.payment.test_standalone_invoices import INVOICE, verify_seller

    issuer, other = log_in_as("seller"), log_in_as("seller")
    verify_seller(client, issuer, staff)
    run_jobs(app)  # the sellers' own events go before any endpoint exists
    receivers = {"issuer": make_receiver(), "other": make_receiver()}
    create_endpoint(client, issuer, receivers["issuer"].url)
    create_endpoint(client, other, receivers["other"].url)

    api = "/api/v1/marketplace"
    made = client.post(f"{api}/invoices", json=INVOICE, headers=issuer.headers).get_json()
    client.post(f"{api}/invoices/{made['id']}/post", headers=issuer.headers)
    paid = client.post(f"{api}/invoices/{made['id']}/payments", json={"method": "bank_transfer"},
                       headers=staff.headers).get_json()  # fmt: skip
    confirm(client, staff, paid["id"])
    dropped = client.post(f"{api}/invoices", json=INVOICE, headers=issuer.headers).get_json()
    client.post(f"{api}/invoices/{dropped['id']}/cancel", headers=issuer.headers)
    run_jobs(app)

    assert types_received(receivers["issuer"]) == [
        "invoice.created",
        "invoice.posted",
        "payment.registered",
        "payment.confirmed",
        "invoice.paid",
        "invoice.created",
        "invoice.cancelled",
    ]
    assert receivers["other"].received == []
    posted = json.loads(receivers["issuer"].received[1].body)["data"]
    assert (posted["invoice"], posted["state"], posted["seller"]) == (
        made["id"], "posted", str(issuer.uuid),
    )  # fmt: skip
