"""The dashboard's figures through GraphQL: the REST endpoint's answer for the same period, for
staff (the platform's) and for a seller (their share), with the same refusals and scope."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient

from tests.modules.auth.test_api_keys import create_key
from tests.modules.dashboard.conftest import build_market, deliver, move_money, today

from .conftest import Shop, ask_signed, scope_missing

REST_STATS = "/api/v1/dashboard/stats"
FIGURES = "transactions succeeded failed canceled manual volume fees refunds refunded"
STATS = f"""query Stats($from: String, $to: String, $currency: String) {{
  dashboard_stats(from: $from, to: $to, currency: $currency) {{
    from to currency scope
    totals {{ {FIGURES} }}
    success_rate average
    daily {{ day {FIGURES} }}
    providers {{ provider {FIGURES} }}
    statuses {{ state count }}
    settlement {{
      pending available owed next_release_at next_payout_on
      payouts {{ count amount }} in_flight {{ count amount }}
    }}
  }}
}}"""


def test_the_stats_are_the_rest_answer_for_staff_and_a_seller(shop: Shop) -> None:
    market = build_market(shop.app, shop.client)
    move_money(shop.app, shop.client, market)
    deliver(shop.app)
    period = {"from": str(today() - timedelta(days=6)), "to": str(today())}

    answers: dict[str, dict[str, Any]] = {}
    for name in ("staff", "admin", "seller_a", "seller_b", "seller_c"):
        caller = getattr(market, name)
        rest = shop.rest(caller, REST_STATS, **period)
        assert shop.graphql(caller, STATS, **period)["dashboard_stats"] == rest, name
        answers[name] = rest
        # Without arguments: REST's defaults (the last 30 days, IDR).
        assert shop.graphql(caller, STATS)["dashboard_stats"] == shop.rest(caller, REST_STATS)
    # Figures worth comparing: the platform's money moved, and the sellers' shares differ.
    assert answers["staff"]["scope"] == "platform"
    assert answers["staff"]["totals"]["succeeded"] > 0
    assert answers["seller_a"]["scope"] == "seller"
    assert answers["seller_a"]["totals"] != answers["seller_b"]["totals"]
    assert answers["seller_c"]["totals"]["transactions"] == 0
    usd = {**period, "currency": "USD"}
    assert shop.graphql(market.staff, STATS, **usd)["dashboard_stats"] == shop.rest(
        market.staff, REST_STATS, **usd
    )

    # Refused as REST refuses: customers, and a period or currency it does not take.
    (error,) = shop.errors(market.buyer, STATS)
    assert error["extensions"] == {"code": "forbidden"}
    for arguments, field in [
        ({"from": "2026-03-10", "to": "2026-03-01"}, "from"),
        ({"from": "2024-01-01", "to": "2025-01-01"}, "to"),
        ({"to": "yesterday"}, "to"),
        ({"currency": "idr"}, "currency"),
    ]:
        (error,) = shop.errors(market.staff, STATS, **arguments)
        assert error["extensions"]["code"] == "validation-failed", arguments
        assert list(error["extensions"]["errors"]) == [field], arguments
        assert error["path"] == ["dashboard_stats"]


def test_an_api_key_reads_the_stats_with_the_dashboards_scope(pg_shop: Shop) -> None:
    client: FlaskClient = pg_shop.client
    seller = pg_shop.user("seller")
    query = "{ dashboard_stats { scope totals { transactions } } }"

    answer = ask_signed(client, create_key(client, seller, ["graphql:read"]), query)
    assert answer["data"] == {"dashboard_stats": None}
    scope_missing(answer, "dashboard:read", ["dashboard_stats"])
    with_scope = create_key(client, seller, ["graphql:read", "dashboard:read"])
    assert ask_signed(client, with_scope, query) == {
        "data": {"dashboard_stats": {"scope": "seller", "totals": {"transactions": 0}}}
    }
