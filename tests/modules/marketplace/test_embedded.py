"""The embedded default (SQLite, no Redis, no replica) runs the whole order flow too.

SQLite takes a different path for numbering (counter rows for every code, no sequences), so
the numbers written to the database are checked here, not only the answer.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from sqlalchemy import select

from app.db import Session
from modules.marketplace.models import AccountMove, Payment, SaleOrder

from .conftest import YEAR, confirm, get, order_body, place, post, shop_in


def test_on_embedded_sqlite_an_order_is_placed_paid_and_cancelled_with_its_numbers_written(
    make_embedded_app: Callable[..., Flask],
) -> None:
    app = make_embedded_app()
    shop = shop_in(app)
    client, staff, buyer = shop.client, shop.staff, shop.buyer

    def order(key: str) -> dict:
        paid_in_part = {"method": "cash", "amount": "20000"}
        return place(client, buyer, order_body((shop.product.id, "1"), payment=paid_in_part), key)

    first, second = order("one"), order("two")
    assert order("one") == first  # replayed, not placed again
    assert [first["invoice"]["number"], second["invoice"]["number"]] == [
        f"INV/{YEAR}/00001",
        f"INV/{YEAR}/00002",
    ]
    assert first["invoice"]["payment_state"] == "partial"

    confirm(client, staff, first["payment"]["id"])
    cancelled = post(client, buyer, f"/orders/{second['order']['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.get_json()

    with app.app_context():
        names = set(Session().scalars(select(AccountMove.name)))
        assert names == {f"INV/{YEAR}/00001", f"INV/{YEAR}/00002", f"RINV/{YEAR}/00001"}
        assert set(Session().scalars(select(SaleOrder.name))) == {
            first["order"]["number"],
            second["order"]["number"],
        }
        assert set(Session().scalars(select(Payment.state))) == {"paid", "canceled"}
    listed = get(client, staff, "/orders").get_json()["items"]
    assert [item["number"] for item in listed] == [
        second["order"]["number"],
        first["order"]["number"],
    ]
    # Each listed order as the order schema shows it, page by page, and with a filter.
    for caller in (staff, buyer):
        page = get(client, caller, "/orders", limit=1)
        assert page.status_code == 200, page.get_json()
        following = get(client, caller, "/orders", limit=1, cursor=page.get_json()["next_cursor"])
        assert following.get_json()["next_cursor"] is None
        assert [page.get_json()["items"][0], following.get_json()["items"][0]] == listed
    shown = get(client, buyer, f"/orders/{second['order']['id']}").get_json()
    assert {k: v for k, v in shown["order"].items() if k != "lines"} == listed[0]
    assert listed[0]["cancelled_at"] is not None
    assert listed[1]["payment_state"] == "partial"
    reversed_ = get(client, staff, "/orders", payment_state="reversed").get_json()
    assert reversed_["items"] == [listed[0]]
