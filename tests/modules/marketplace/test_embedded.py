"""The embedded default (SQLite, no Redis, no replica) runs the whole order flow too.

SQLite takes a different path for numbering (counter rows for every code, no sequences), so
the numbers written to the database are checked here, not only the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from flask import Flask
from sqlalchemy import select

from app.db import Session, transaction
from modules.marketplace.models import AccountMove, Payment, Product, SaleOrder
from modules.user.services import create_user
from tests.modules.conftest import PASSWORD, bearer, login

from .conftest import API, YEAR


def test_on_embedded_sqlite_an_order_is_placed_paid_and_cancelled_with_its_numbers_written(
    make_embedded_app: Callable[..., Flask],
) -> None:
    app = make_embedded_app()
    with app.app_context(), transaction():
        create_user("staff@example.test", role="staff", password=PASSWORD)
        create_user("buyer@example.test", role="customer", password=PASSWORD)
        product = Product(name="BANDENG", list_price=Decimal("37000"))
        Session().add(product)
    client = app.test_client()
    staff = bearer(login(client, "staff@example.test").get_json()["access_token"])
    buyer = bearer(login(client, "buyer@example.test").get_json()["access_token"])
    with app.app_context():
        product_id = str(Session().scalars(select(Product.uuid)).one())

    def order(key: str) -> dict:
        body = {
            "lines": [{"product": product_id, "quantity": "1"}],
            "payment": {"method": "cash", "amount": "20000"},
        }
        response = client.post(
            f"{API}/orders", json=body, headers={**buyer, "Idempotency-Key": key}
        )
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    first, second = order("one"), order("two")
    assert order("one") == first  # replayed, not placed again
    assert [first["invoice"]["number"], second["invoice"]["number"]] == [
        f"INV/{YEAR}/00001",
        f"INV/{YEAR}/00002",
    ]
    assert first["invoice"]["payment_state"] == "partial"

    paid = client.post(f"{API}/payments/{first['payment']['id']}/confirm", headers=staff)
    assert paid.status_code == 200, paid.get_json()
    cancelled = client.post(f"{API}/orders/{second['order']['id']}/cancel", headers=buyer)
    assert cancelled.status_code == 200, cancelled.get_json()

    with app.app_context():
        names = set(Session().scalars(select(AccountMove.name)))
        assert names == {f"INV/{YEAR}/00001", f"INV/{YEAR}/00002", f"RINV/{YEAR}/00001"}
        assert set(Session().scalars(select(SaleOrder.name))) == {
            first["order"]["number"],
            second["order"]["number"],
        }
        assert set(Session().scalars(select(Payment.state))) == {"paid", "canceled"}
    listed = client.get(f"{API}/orders", headers=staff).get_json()["items"]
    assert [item["number"] for item in listed] == [
        second["order"]["number"],
        first["order"]["number"],
    ]
    # Each listed order as the order schema shows it, page by page, and with a filter.
    for caller in (staff, buyer):
        page = client.get(f"{API}/orders?limit=1", headers=caller)
        assert page.status_code == 200, page.get_json()
        following = client.get(
            f"{API}/orders?limit=1&cursor={page.get_json()['next_cursor']}", headers=caller
        )
        assert following.get_json()["next_cursor"] is None
        assert [page.get_json()["items"][0], following.get_json()["items"][0]] == listed
    shown = client.get(f"{API}/orders/{second['order']['id']}", headers=buyer).get_json()
    assert {k: v for k, v in shown["order"].items() if k != "lines"} == listed[0]
    assert listed[0]["cancelled_at"] is not None
    assert listed[1]["payment_state"] == "partial"
    reversed_ = client.get(f"{API}/orders?payment_state=reversed", headers=staff).get_json()
    assert reversed_["items"] == [listed[0]]
