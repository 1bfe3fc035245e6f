"""The embedded default (SQLite, jobs in threads of the server process) delivers webhooks too."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Flask

from modules.webhook.health import figures
from tests.modules.conftest import Caller, login
from tests.modules.marketplace.conftest import order_body, place

from .conftest import Receiver, call, create_endpoint, ok, verify_now


def settle(app: Flask, client: Any, caller: Caller, count: int) -> list[dict[str, Any]]:
    """Wait for the in-process jobs until ``count`` deliveries are no longer pending."""
    deadline = time.monotonic() + 30
    while True:
        app.extensions["lapak.jobs"].wait_embedded()
        items = ok(call(client, caller, "GET", "/deliveries"))["items"]
        done = [d for d in items if d["status"] != "pending"]
        if len(done) >= count or time.monotonic() > deadline:
            return items
        time.sleep(0.05)


def test_the_embedded_default_fans_out_and_delivers(
    make_embedded_app: Callable[..., Flask],
    config: dict[str, Any],
    make_receiver: Callable[..., Receiver],
) -> None:
    from decimal import Decimal

    from app.db import transaction
    from modules.marketplace.models import Product
    from modules.user.services import create_user

    app = make_embedded_app(module_env=config["module_env"])
    client = app.test_client()
    with app.app_context():
        seller = create_user(
            "s@example.test", role="seller", password="correct horse battery staple"
        )
        create_user("c@example.test", role="customer", password="correct horse battery staple")
        with transaction() as session:
            product = Product(
                name="BANDENG",
                province="BALI",
                city="BULELENG",
                size=Decimal(40),
                list_price=Decimal("10000"),
                active=True,
                seller_id=seller.id,
            )
            session.add(product)
            session.flush()
            product_id = str(product.uuid)
    app.extensions["lapak.jobs"].wait_embedded()  # the users' events go first

    def caller(email: str) -> Caller:
        token = login(client, email).get_json()["access_token"]
        return Caller(email, seller.uuid, seller.id, token)

    seller_caller, customer = caller("s@example.test"), caller("c@example.test")
    receiver = make_receiver()
    endpoint = create_endpoint(client, seller_caller, receiver.url, event_types=["order.confirmed"])
    place(client, customer, order_body((product_id, "1")))

    [shown] = settle(app, client, seller_caller, 1)
    assert (shown["status"], shown["event_type"]) == ("sent", "order.confirmed")
    [received] = receiver.received
    assert verify_now(endpoint["secret"], received)["type"] == "order.confirmed"
    with app.app_context():
        from app.db import Session, utcnow

        assert figures(Session(), utcnow())["last_hour"] == {"sent": 1, "failed": 0}
