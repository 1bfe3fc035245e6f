"""The embedded default (SQLite, no Redis, jobs in threads of the server process): a link is
made, paid through the demo gateway, used up, closed, and guesses are throttled in-process."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from decimal import Decimal

from flask import Flask
from sqlalchemy import select

from tests.modules.conftest import Caller, login
from tests.modules.payment.conftest import notification, notify, provider_secret

from .conftest import API, made, ok, pay, unpaid_invoice

PASSWORD = "correct horse battery staple"


def test_a_link_is_made_paid_and_used_up_on_the_embedded_default(
    make_embedded_app: Callable[..., Flask],
) -> None:
    from app.db import Session, transaction
    from modules.marketplace.models import Product
    from modules.paylink.models import PaymentLink
    from modules.payment.models import PaymentTransaction
    from modules.user.services import create_user

    app = make_embedded_app()
    assert app.extensions["lapak.jobs"].redis is None
    client = app.test_client()
    with app.app_context():
        seller = create_user("s@example.test", role="seller", password=PASSWORD)
        create_user("c@example.test", role="customer", password=PASSWORD)
        create_user("staff@example.test", role="staff", password=PASSWORD)
        with transaction() as session:
            product = Product(name="BANDENG", province="BALI", city="BULELENG",
                              size=Decimal(40), list_price=Decimal("10000"), active=True,
                              seller_id=seller.id)  # fmt: skip
            session.add(product)
            session.flush()
            product_id = str(product.uuid)

    def caller(email: str) -> Caller:  # only its headers are used
        token = login(client, email).get_json()["access_token"]
        return Caller(email, seller.uuid, seller.id, token)

    staff, customer = caller("staff@example.test"), caller("c@example.test")
    invoice = unpaid_invoice(client, customer, product_id)
    link = made(client, staff, invoice.id)  # an order's invoice: the platform's links

    payer = app.test_client()
    assert pay(payer, link["path"]).status_code == 303
    with app.app_context():
        tx = Session().scalars(select(PaymentTransaction).where(PaymentTransaction.guest)).one()
        shown = {"reference": tx.reference, "amount": str(tx.amount), "currency": tx.currency}
        assert tx.guest
    answer = notify(client, provider_secret(app), notification(shown, "success"))
    assert answer.status_code == 200, answer.get_json()

    assert "Thank you" in payer.get(link["path"]).text
    assert app.test_client().get(link["path"]).status_code == 404
    deadline = time.monotonic() + 30
    while True:  # the in-process outbox dispatch counts the payment on the link
        app.extensions["lapak.jobs"].wait_embedded()
        with app.app_context():
            Session.remove()
            state = Session().scalars(select(PaymentLink.state)).one()
        if state == "used" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert state == "used"
    assert ok(client.get(f"{API}/{link['id']}", headers=staff.headers))["uses"] == 1

    # Guesses are counted in this process (no Redis): past the limit (20, the used link's 404
    # above being the first), 429.
    statuses = [
        app.test_client().get("/pay/" + secrets.token_urlsafe(32)).status_code for _ in range(25)
    ]
    assert statuses.count(404) == 19
    assert statuses[-1] == 429
