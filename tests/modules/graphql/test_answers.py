"""GraphQL answers what REST answers: the same orders for the same filters, page by page with
the same cursors, the same amounts as the same strings, the same invoices, payments and
provider transactions; on PostgreSQL (primary + replica) and on the embedded SQLite default."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.modules.conftest import Caller

from .conftest import (
    INVOICE_FIELDS,
    INVOICE_LINE_FIELDS,
    MARKETPLACE,
    ORDER_DETAIL,
    ORDERS,
    PAYMENT_FIELDS,
    TRANSACTION_FIELDS,
    Shop,
)

PAYMENTS = "/api/v1/payments"
TRANSACTIONS = f"""
query Transactions($filter: TransactionFilter, $first: Int!, $after: String) {{
  transactions(filter: $filter, first: $first, after: $after) {{
    items {{ {TRANSACTION_FIELDS} }}
    next_cursor
  }}
}}"""


def walk_both(
    shop: Shop, caller: Caller, filters: dict[str, str], page_size: int
) -> list[dict[str, Any]]:
    """Every order of the listing under ``filters``, page by page through REST and GraphQL
    side by side: each page must be the same, cursor included."""
    seen: list[dict[str, Any]] = []
    rest_cursor: dict[str, str] = {}
    after = None
    while True:
        rest = shop.rest(caller, f"{MARKETPLACE}/orders", limit=page_size, **filters,
                         **rest_cursor)  # fmt: skip
        response = shop.ask(caller, ORDERS, filter=filters, first=page_size, after=after)
        assert response.get_json() == {"data": {"orders": rest}}, filters
        assert "Link" not in response.headers  # the page has no URL of its own
        seen.extend(rest["items"])
        if rest["next_cursor"] is None:
            return seen
        rest_cursor, after = {"cursor": rest["next_cursor"]}, rest["next_cursor"]


def test_the_order_listing_answers_as_rest_for_the_same_filters(shop: Shop) -> None:
    dewi, agus, staff = shop.user(), shop.user(), shop.user("staff")
    bandeng, lele = shop.product("37000"), shop.product("20.30")
    shop.order(dewi, (bandeng, "2.5"), (lele, "5"), amount="50000.00")
    paid = shop.order(dewi, (lele, "1"))
    cancelled = shop.order(dewi, (bandeng, "1"))
    shop.order(agus, (lele, "3.333"), amount="10")
    shop.order(agus, (bandeng, "4"))
    response = shop.client.post(
        f"{MARKETPLACE}/orders/{cancelled['order']['id']}/cancel", headers=dewi.headers
    )
    assert response.status_code == 200, response.get_json()
    response = shop.client.post(
        f"{MARKETPLACE}/payments/{paid['payment']['id']}/confirm", headers=staff.headers
    )
    assert response.status_code == 200, response.get_json()
    today = datetime.now(UTC).date().isoformat()

    everything = walk_both(shop, staff, {}, page_size=2)
    assert len(everything) == 5
    assert {o["payment_state"] for o in everything} == {"partial", "paid", "reversed",
                                                        "in_payment"}  # fmt: skip
    for filters, expected in [
        ({"state": "cancel"}, 1),
        ({"payment_state": "partial"}, 2),
        ({"customer": str(agus.uuid)}, 2),
        ({"total_min": "100000", "total_max": "200000.00"}, 2),
        ({"number": "00002"}, 1),
        ({"from": today, "to": today}, 5),
        ({"from": "2001-01-01", "to": "2001-12-31"}, 0),
    ]:
        assert len(walk_both(shop, staff, filters, page_size=1)) == expected, filters
    # A customer's listing is theirs in both, as the same service narrows both.
    assert len(walk_both(shop, agus, {}, page_size=5)) == 2


def test_an_order_with_its_lines_invoices_and_payments_answers_as_rest(shop: Shop) -> None:
    dewi, staff = shop.user(), shop.user("staff")
    bandeng, lele = shop.product("37000"), shop.product("20.30")
    placed = shop.order(dewi, (bandeng, "2"), (lele, "1.5"), amount="1000.00")
    invoice_id, order_id = placed["invoice"]["id"], placed["order"]["id"]
    response = shop.client.post(
        f"{MARKETPLACE}/invoices/{invoice_id}/payments",
        json={"method": "cash", "amount": "20.50"},
        headers=dewi.headers,
    )
    assert response.status_code == 201, response.get_json()
    response = shop.client.post(f"{MARKETPLACE}/orders/{order_id}/cancel", headers=dewi.headers)
    assert response.status_code == 200, response.get_json()

    rest = shop.rest(staff, f"{MARKETPLACE}/orders/{order_id}")
    graph = shop.graphql(staff, ORDER_DETAIL, id=order_id)["order"]

    assert [move["move_type"] for move in rest["invoices"]] == ["out_invoice", "out_refund"]
    assert len(rest["payments"]) == 2
    assert graph.pop("lines") == rest["order"].pop("lines")
    assert graph.pop("invoices") == rest["invoices"]
    assert graph.pop("payments") == rest["payments"]
    assert graph == rest["order"]
    # 74000.00 + 8140.00 tax, 30.45 + 3.35 (3.3495 half-up): as strings, in both.
    assert graph["amount_total"] == "82173.80"

    for move in rest["invoices"]:
        one = (
            f'{{ invoice(id: "{move["id"]}") {{ {INVOICE_FIELDS} '
            f"lines {{ {INVOICE_LINE_FIELDS} }} }} }}"
        )
        assert shop.graphql(dewi, one)["invoice"] == shop.rest(
            dewi, f"{MARKETPLACE}/invoices/{move['id']}"
        )
    for payment in rest["payments"]:
        one = f'{{ payment(id: "{payment["id"]}") {{ {PAYMENT_FIELDS} }} }}'
        assert shop.graphql(dewi, one)["payment"] == shop.rest(
            dewi, f"{MARKETPLACE}/payments/{payment['id']}"
        )


def test_a_standalone_invoice_to_a_payer_without_an_account_answers_as_rest(shop: Shop) -> None:
    staff = shop.user("staff")
    body = {
        "payer_name": "Ibu Sari",
        "payer_email": "sari@example.com",
        "lines": [{"description": "Cold storage", "quantity": "2", "price_unit": "250000.00"}],
        "memo": "Thank you.",
    }
    made = shop.client.post(f"{MARKETPLACE}/invoices", json=body, headers=staff.headers)
    assert made.status_code == 201, made.get_json()
    invoice_id = made.get_json()["id"]
    posted = shop.client.post(f"{MARKETPLACE}/invoices/{invoice_id}/post", headers=staff.headers)
    assert posted.status_code == 200, posted.get_json()
    paid = shop.client.post(f"{MARKETPLACE}/invoices/{invoice_id}/payments",
                            json={"method": "bank_transfer"}, headers=staff.headers)  # fmt: skip
    assert paid.status_code == 201, paid.get_json()

    one = (
        f'{{ invoice(id: "{invoice_id}") {{ {INVOICE_FIELDS} '
        f"lines {{ {INVOICE_LINE_FIELDS} }} payments {{ {PAYMENT_FIELDS} }} }} }}"
    )
    graph = shop.graphql(staff, one)["invoice"]
    rest = shop.rest(staff, f"{MARKETPLACE}/invoices/{invoice_id}")
    assert graph.pop("payments") == [
        shop.rest(staff, f"{MARKETPLACE}/payments/{paid.get_json()['id']}")
    ]
    assert graph == rest
    assert (graph["order"], graph["customer"], graph["lines"][0]["product"]) == (None, None, None)


def test_provider_transactions_answer_as_rest_in_the_listing_and_under_their_payment(
    shop: Shop,
) -> None:
    dewi, staff = shop.user(), shop.user("staff")
    bandeng = shop.product("37000")
    by_demo = [shop.order(dewi, (bandeng, str(n)), provider="demo") for n in (1, 2, 3)]
    by_transfer = shop.order(dewi, (bandeng, "1"), provider="bank_transfer")
    response = shop.client.post(
        f"{PAYMENTS}/{by_transfer['transaction']['id']}/confirm", headers=staff.headers
    )
    assert response.status_code == 200, response.get_json()

    for caller, filters in [
        (staff, {}),
        (staff, {"provider": "demo", "amount_min": "50000"}),
        (dewi, {"state": "pending"}),
        (staff, {"customer": str(dewi.uuid), "state": "success"}),
    ]:
        rest = shop.rest(caller, PAYMENTS, limit=50, **filters)
        graph = shop.graphql(caller, TRANSACTIONS, filter=filters, first=50)
        assert graph["transactions"] == rest, filters
    assert len(shop.rest(staff, PAYMENTS)["items"]) == 4
    assert len(shop.rest(staff, PAYMENTS, state="success")["items"]) == 1

    order_id = by_demo[1]["order"]["id"]
    nested = shop.graphql(
        dewi,
        f'{{ order(id: "{order_id}") {{ payments {{ transactions {{ {TRANSACTION_FIELDS} }} }} '
        f"invoices {{ payments {{ transactions {{ id }} }} }} }} }}",
    )["order"]
    transaction = shop.rest(dewi, f"{PAYMENTS}/{by_demo[1]['transaction']['id']}")
    assert nested["payments"] == [{"transactions": [transaction]}]
    assert nested["invoices"] == [{"payments": [{"transactions": [{"id": transaction["id"]}]}]}]
    one = f'{{ transaction(id: "{transaction["id"]}") {{ {TRANSACTION_FIELDS} }} }}'
    assert shop.graphql(dewi, one)["transaction"] == transaction
