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
from modules.live.audience import STAFF_ONLY, Audience, Viewer, audiences
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
    assert found == [Audience(customers=frozenset({customer.user_id})), STAFF_ONLY, STAFF_ONLY]
    assert [audience.visible_to(viewer) for audience in found] == [True, False, False]
    assert all(audience.visible_to(Viewer(0, "staff")) for audience in found)
