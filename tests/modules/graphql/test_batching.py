"""Nested lists are read in batches: a page of orders with their lines, invoices (with
theirs), payments and provider transactions costs the same few statements whatever its size,
all on the replica."""

from __future__ import annotations

from .conftest import MARKETPLACE, Shop, counted_statements

NESTED = """query ($first: Int!) {
  orders(first: $first) {
    items {
      id amount_total
      lines { name price_total }
      invoices { id move_type lines { name } payments { id transactions { id state } } }
      payments { id amount transactions { id amount } }
    }
  }
}"""


def reads(sent: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The statements of the query (not those checking the caller's session, which the
    session cache mostly answers)."""
    return [(engine, statement) for engine, statement in sent if "auth_session" not in statement]


def test_a_page_of_orders_with_nested_lists_costs_the_same_statements_at_any_size(
    pg_shop: Shop,
) -> None:
    shop = pg_shop
    staff, dewi = shop.user("staff"), shop.user()
    bandeng, lele = shop.product("37000"), shop.product("20.30")
    for n in range(20):
        if n % 3 == 0:  # through a provider: a transaction under its payment
            shop.order(dewi, (bandeng, "1"), (lele, str(n + 1)), provider="demo")
        elif n % 3 == 1:  # paid in part, then cancelled: a credit note beside the invoice
            placed = shop.order(dewi, (lele, "2"), amount="10")
            response = shop.client.post(
                f"{MARKETPLACE}/orders/{placed['order']['id']}/cancel", headers=dewi.headers
            )
            assert response.status_code == 200, response.get_json()
        else:
            shop.order(dewi, (bandeng, str(n)))

    with counted_statements(shop.app) as sent:
        five = shop.graphql(staff, NESTED, first=5)["orders"]["items"]
    small = reads(sent)
    with counted_statements(shop.app) as sent:
        twenty = shop.graphql(staff, NESTED, first=20)["orders"]["items"]
    large = reads(sent)

    assert len(five) == 5
    assert len(twenty) == 20
    assert all(order["lines"] and order["invoices"] and order["payments"] for order in twenty)
    assert sum(len(o["invoices"]) for o in twenty) == 20 + 7  # and 7 credit notes
    assert sum(len(p["transactions"]) for o in twenty for p in o["payments"]) == 7
    # The replica's state, the page, then one statement per nested list: order lines, invoices,
    # order payments, invoice lines, invoice payments, transactions.
    assert len(large) == len(small) <= 8, [statement[:80] for _, statement in large]
    assert {engine for engine, _ in large} == {"replica"}
