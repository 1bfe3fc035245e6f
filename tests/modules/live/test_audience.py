"""Who sees an event, worked out for a whole batch in a few queries, however many events."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from sqlalchemy import event

from app.db import Session
from modules.live.audience import ADMINS_ONLY, STAFF_ONLY, Audience, Viewer, audiences
from modules.live.outbox import Committed, read_after
from tests.modules.marketplace.conftest import order_body

from .conftest import make_product, person, settle


@contextmanager
def counted(app: Flask) -> Iterator[list[str]]:
    """The statements the primary runs inside the block."""
    statements: list[str] = []
    engine = app.extensions["lapak.db"].primary

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", note)


def place_orders(app: Flask, count: int) -> None:
    client = app.test_client()
    seller = person(app, "seller")
    customer = person(app, "customer")
    product = make_product(app, seller)
    for _ in range(count):
        body = order_body((product, "1"))
        placed = client.post("/api/v1/marketplace/orders", json=body, headers=customer.headers)
        assert placed.status_code == 201, placed.get_json()
    settle(app)


def audience_queries(app: Flask) -> tuple[int, int]:
    """(events, queries) to work out the audience of every event so far, for all viewers."""
    with app.app_context():
        events = read_after(Session(), 0, limit=10_000)
        with counted(app) as statements:
            audiences(Session(), events)
    return len(events), len(statements)


def test_a_batch_costs_the_same_few_queries_whatever_its_size(app: Flask) -> None:
    place_orders(app, 1)
    few_events, few_queries = audience_queries(app)
    place_orders(app, 6)
    many_events, many_queries = audience_queries(app)

    assert many_events > 3 * few_events
    assert many_queries == few_queries
    assert many_queries <= 9


def committed(name: str, payload: dict[str, Any]) -> Committed:
    return Committed(1, uuid.uuid4(), name, datetime(2026, 1, 1, tzinfo=UTC), payload)


def test_a_customer_sees_their_own_provider_transaction_but_not_their_wallet_events(
    app: Flask,
) -> None:
    customer = person(app, "customer")
    top_up = committed("payment.succeeded", {"invoice": None, "customer": str(customer.uuid)})
    frozen = committed(
        "wallet.frozen", {"wallet": str(uuid.uuid4()), "customer": str(customer.uuid)}
    )
    unknown = committed("something.new", {"customer": str(customer.uuid)})

    with app.app_context():
        found = audiences(Session(), [top_up, frozen, unknown])

    viewer = Viewer(customer.user_id, "customer")
    assert found == [Audience(customers=frozenset({customer.user_id})), STAFF_ONLY, ADMINS_ONLY]
    assert [audience.visible_to(viewer) for audience in found] == [True, False, False]
    # A type nobody mapped is the admins' alone (staff see what REST shows them).
    assert [audience.visible_to(Viewer(0, "staff")) for audience in found] == [True, True, False]
    assert all(audience.visible_to(Viewer(0, "admin")) for audience in found)


def test_staff_do_not_see_the_admins_events_that_rest_shows_admins_only(app: Flask) -> None:
    owner = person(app, "seller")
    events = [
        committed("user.created", {"uuid": str(uuid.uuid4()), "role": "customer"}),
        committed("user.imported", {"created": 3}),
        committed("webhook_endpoint.disabled", {"owner": str(owner.uuid)}),
        committed("seller.verified", {"seller": str(uuid.uuid4())}),
        committed("wallet.frozen", {"wallet": str(uuid.uuid4())}),
        committed("settlement.outcome_conflict", {"seller": str(uuid.uuid4())}),
    ]

    with app.app_context():
        found = audiences(Session(), events)

    staff, admin = Viewer(0, "staff"), Viewer(0, "admin")
    assert [audience.visible_to(staff) for audience in found] == [
        False,  # /api/v1/users: @requires("admin")
        False,  # /api/v1/users/imports: @requires("admin")
        False,  # a webhook endpoint: its owner's and the admins'
        True,  # sellers' KYC: staff verify it
        True,  # wallets: staff freeze them
        True,  # settlements: staff read and fail them
    ]
    assert all(audience.visible_to(admin) for audience in found)
    assert found[2].visible_to(Viewer(owner.user_id, "seller"))


def test_a_seller_demoted_to_customer_no_longer_sees_the_orders_of_their_products(
    app: Flask,
) -> None:
    client = app.test_client()
    seller, customer = person(app, "seller"), person(app, "customer")
    product = make_product(app, seller)
    placed = client.post("/api/v1/marketplace/orders", json=order_body((product, "1")),
                         headers=customer.headers)  # fmt: skip
    assert placed.status_code == 201, placed.get_json()
    settle(app)
    order = committed("order.confirmed", {"order": placed.get_json()["order"]["id"]})

    with app.app_context():
        [audience] = audiences(Session(), [order])

    assert audience.visible_to(Viewer(seller.user_id, "seller"))
    assert audience.visible_to(Viewer(customer.user_id, "customer"))
    # The same user once their role is customer: REST shows a customer their own orders only.
    assert not audience.visible_to(Viewer(seller.user_id, "customer"))
    # And a customer's id as a seller's: not their sale.
    assert not audience.visible_to(Viewer(customer.user_id, "seller"))
