"""The dashboard's endpoints: who may read them (people and API keys), the period's rules, the
recent transactions, and the settlement summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.db import transaction
from app.security import scope_catalogue
from modules.seller.models import Settlement
from tests.modules.auth.test_api_keys import create_key, problem, signed
from tests.modules.conftest import Caller
from tests.servers import Services
from tests.statements import recorded_in

from .conftest import (
    DASHBOARD,
    Market,
    assert_problem,
    build_market,
    deliver,
    move_money,
    ok,
    plan_of,
    today,
)

STATS = f"{DASHBOARD}/stats"
TRANSACTIONS = f"{DASHBOARD}/transactions"


@pytest.fixture
def market(app: Flask, client: FlaskClient) -> Market:
    return build_market(app, client)


def get(client: FlaskClient, caller: Caller, path: str, **query: Any) -> Any:
    return client.get(path, query_string=query, headers=caller.headers)


# -- who reads ------------------------------------------------------------------------------------


def test_customers_are_refused_and_strangers_asked_to_log_in(
    client: FlaskClient, market: Market
) -> None:
    for path in (STATS, TRANSACTIONS):
        assert_problem(get(client, market.buyer, path), 403)
        assert_problem(client.get(path), 401)


def test_an_api_key_reads_the_dashboard_only_with_its_scope(
    client: FlaskClient, market: Market
) -> None:
    seller_key = create_key(client, market.seller_a, ["dashboard:read"])
    shown = signed(client, seller_key, "GET", f"{STATS}?currency=IDR")
    assert shown.status_code == 200, shown.get_json()
    assert shown.get_json()["scope"] == "seller"
    assert signed(client, seller_key, "GET", f"{TRANSACTIONS}?limit=5").status_code == 200
    admin_key = create_key(client, market.admin, ["dashboard:read"])
    assert signed(client, admin_key, "GET", STATS).get_json()["scope"] == "platform"

    other = create_key(client, market.seller_a, ["orders:read"])
    for path in (STATS, TRANSACTIONS):
        refused = signed(client, other, "GET", path)
        assert refused.status_code == 403
        assert problem(refused) == "scope-missing"
        assert "dashboard:read" in refused.get_json()["detail"]


def test_the_scope_is_for_sellers_and_admins_and_named_in_the_document(
    app: Flask, client: FlaskClient
) -> None:
    with app.app_context():
        assert scope_catalogue()["dashboard:read"].roles == {"seller", "admin"}
    spec = client.get("/api/v1/openapi.json").get_json()
    for path in ("/api/v1/dashboard/stats", "/api/v1/dashboard/transactions"):
        assert spec["paths"][path]["get"]["x-lapak-scope"] == "dashboard:read"


# -- the period ------------------------------------------------------------------------------------


def test_the_default_period_is_the_last_30_days_in_rupiah(
    client: FlaskClient, market: Market
) -> None:
    shown = ok(get(client, market.staff, STATS))
    assert shown["to"] == str(today())
    assert shown["from"] == str(today() - timedelta(days=29))
    assert shown["currency"] == "IDR"
    assert len(shown["daily"]) == 30
    assert shown["daily"][0]["day"] == shown["from"]
    assert shown["daily"][-1] == {
        "day": shown["to"],
        "transactions": 0,
        "succeeded": 0,
        "failed": 0,
        "canceled": 0,
        "manual": 0,
        "volume": "0.00",
        "fees": "0.00",
        "refunds": 0,
        "refunded": "0.00",
    }
    assert shown["success_rate"] is None
    assert shown["average"] is None
    # Only from: up to today.
    since = today() - timedelta(days=3)
    assert len(ok(get(client, market.staff, STATS, **{"from": str(since)}))["daily"]) == 4


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2026-03-10", "to": "2026-03-01"}, "from"),
        ({"from": "2024-01-01", "to": "2025-01-01"}, "to"),  # 367 days
        ({"from": "2026-02-30"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "0001-01-01", "to": "0001-01-02"}, "from"),
        ({"to": "9999-12-31"}, "to"),
        ({"currency": "idr"}, "currency"),
        ({"currency": "RUPIAH"}, "currency"),
    ],
)
def test_a_bad_period_or_currency_is_a_422_naming_the_field(
    client: FlaskClient, market: Market, query: dict[str, str], field: str
) -> None:
    body = assert_problem(get(client, market.staff, STATS, **query), 422)
    assert field in body["errors"], body


def test_a_leap_year_is_the_longest_period(client: FlaskClient, market: Market) -> None:
    shown = ok(get(client, market.staff, STATS, **{"from": "2024-01-01", "to": "2024-12-31"}))
    assert len(shown["daily"]) == 366
    assert shown["daily"][59]["day"] == "2024-02-29"


# -- recent transactions ---------------------------------------------------------------------------


def listed(client: FlaskClient, caller: Caller, **query: Any) -> list[dict[str, Any]]:
    """Every page of the listing, following next_cursor."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = ok(
            get(client, caller, TRANSACTIONS, **query, **({"cursor": cursor} if cursor else {}))
        )
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_recent_transactions_newest_first_filtered_and_each_seller_sees_their_sales(
    app: Flask, client: FlaskClient, market: Market
) -> None:
    made = move_money(app, client, market)
    deliver(app)
    everything = listed(client, market.staff, limit=2)
    payments = {
        "mixed": made["mixed"]["payment"]["id"],
        "failed": made["failed"]["payment"]["id"],
        "given_up": made["given_up"]["payment"]["id"],
        "by_hand": made["by_hand"]["payment"]["id"],
        "rest": made["rest"]["id"],
        "waiting": made["waiting"]["payment"]["id"],
    }
    order = ["waiting", "rest", "by_hand", "given_up", "failed", "mixed"]  # newest first
    assert [item["payment"] for item in everything] == [payments[name] for name in order]
    by_payment = {item["payment"]: item for item in everything}
    mixed = by_payment[payments["mixed"]]
    assert mixed["transaction"] == made["mixed"]["transaction"]["id"]
    assert mixed["reference"] == made["mixed"]["transaction"]["reference"]
    assert mixed["provider"] == "demo"
    assert mixed["state"] == "success"
    assert mixed["amount"] == made["mixed"]["transaction"]["amount"]
    assert Decimal(mixed["fee"]) > 0
    assert mixed["invoice_number"] == made["mixed"]["invoice"]["number"]
    assert mixed["customer"] == str(market.buyer.uuid)
    states = {name: by_payment[payments[name]]["state"] for name in payments}
    assert states == {
        "mixed": "success",
        "failed": "failed",
        "given_up": "canceled",
        "by_hand": "success",
        "rest": "success",
        "waiting": "pending",
    }
    by_hand = by_payment[payments["by_hand"]]
    assert by_hand["transaction"] is None
    assert (by_hand["provider"], by_hand["fee"]) == ("bank_transfer", "0.00")
    assert by_hand["reference"] == by_hand["payment_number"]
    assert by_payment[payments["rest"]]["provider"] == "cash"

    def names(items: list[dict[str, Any]]) -> list[str]:
        ids = {value: name for name, value in payments.items()}
        return [ids[item["payment"]] for item in items]

    assert names(listed(client, market.staff, state="success")) == ["rest", "by_hand", "mixed"]
    assert names(listed(client, market.staff, provider="demo")) == ["given_up", "failed", "mixed"]
    assert names(listed(client, market.staff, provider="bank_transfer", state="pending")) == [
        "waiting"
    ]
    assert listed(client, market.staff, currency="USD") == []
    # Sellers: the payments of invoices with their lines (A had the failed order, B the one
    # given up); the third seller sold nothing.
    assert names(listed(client, market.seller_a)) == [
        "waiting",
        "rest",
        "by_hand",
        "failed",
        "mixed",
    ]
    assert names(listed(client, market.seller_b)) == ["rest", "by_hand", "given_up", "mixed"]
    assert listed(client, market.seller_c) == []
    # A page links the next one; a cursor from another listing is refused.
    first = get(client, market.staff, TRANSACTIONS, limit=1)
    assert 'rel="next"' in first.headers["Link"]
    assert_problem(get(client, market.staff, TRANSACTIONS, cursor="not-a-cursor"), 400)
    assert_problem(get(client, market.staff, TRANSACTIONS, state="lost"), 422)


def test_a_sellers_listing_walks_their_payments_by_time(
    app: Flask, client: FlaskClient, market: Market, services: Services
) -> None:
    """Not from every payment, testing each for the seller's lines, nor from every invoice of
    the seller: through the seller's payments by time (``dashboard_seller_payment``'s index),
    in the listing's order, so a page stops at a page."""
    move_money(app, client, market)
    with recorded_in(app) as sent:
        assert listed(client, market.seller_a, limit=2)
    (statement, parameters), *_ = (
        (statement, parameters)
        for statement, parameters in sent
        if "FROM dashboard_seller_payment" in statement
    )
    plan = plan_of(services, statement, parameters)
    assert "ix_dashboard_seller_payment_seller_id_created_at_payment_id" in plan, plan
    assert "Sort" not in plan, plan


# -- the settlement summary ------------------------------------------------------------------------


def settle(app: Flask, seller: Caller, amount: str, state: str, completed_days_ago: int) -> None:
    """A settlement as the seller module leaves it (its own tests cover how it gets there)."""
    now = datetime.now(UTC)
    completed = now - timedelta(days=completed_days_ago) if state == "completed" else None
    with app.app_context(), transaction() as session:
        session.add(
            Settlement(
                name=f"STL/TEST/{seller.user_id}{amount}{state}{completed_days_ago}",
                seller_id=seller.user_id,
                currency="IDR",
                amount=Decimal(amount),
                state=state,
                bank_code="014",
                bank_holder_name="Budi",
                bank_account_last4="7890",
                payout_adapter="manual",
                completed_at=completed,
            )
        )


def test_the_settlement_summary_is_the_sellers_balances_and_payouts(
    app: Flask, client: FlaskClient, market: Market
) -> None:
    move_money(app, client, market)
    deliver(app)
    settle(app, market.seller_a, "1000.00", "completed", 1)
    settle(app, market.seller_a, "2000.00", "completed", 40)  # before the period
    settle(app, market.seller_b, "300.00", "completed", 0)
    settle(app, market.seller_b, "450.50", "processing", 0)

    balances = {
        seller: ok(get(client, seller, "/api/v1/sellers/me/balance"))
        for seller in (market.seller_a, market.seller_b)
    }
    seller_a = ok(get(client, market.seller_a, STATS))["settlement"]
    mine = balances[market.seller_a]
    assert (seller_a["pending"], seller_a["available"], seller_a["owed"]) == (
        mine["pending"], mine["available"], mine["owed"],
    )  # fmt: skip
    assert Decimal(seller_a["pending"]) > 0
    assert seller_a["next_release_at"] == mine["next_release_at"]
    assert seller_a["payouts"] == {"count": 1, "amount": "1000.00"}
    assert seller_a["in_flight"] == {"count": 0, "amount": "0.00"}

    everyone = ok(get(client, market.staff, STATS))["settlement"]
    assert everyone["pending"] == str(sum(Decimal(b["pending"]) for b in balances.values()))
    assert everyone["next_release_at"] is None
    assert everyone["payouts"] == {"count": 2, "amount": "1300.00"}
    assert everyone["in_flight"] == {"count": 1, "amount": "450.50"}
    # A period that holds the old payout only.
    old = today() - timedelta(days=40)
    earlier = ok(get(client, market.staff, STATS, **{"from": str(old), "to": str(old)}))
    assert earlier["settlement"]["payouts"] == {"count": 1, "amount": "2000.00"}


def test_the_staff_settlement_summary_reads_the_period_not_every_settlement(
    app: Flask, client: FlaskClient, market: Market, services: Services
) -> None:
    """Settlements completed in the period and those in flight, found through the seller
    module's index on (currency, state, completed_at), not by reading every completed one."""
    settle(app, market.seller_a, "1000.00", "completed", 1)
    settle(app, market.seller_b, "450.50", "processing", 0)
    with recorded_in(app) as sent:
        ok(get(client, market.staff, STATS))
    (statement, parameters), *_ = (
        (statement, parameters)
        for statement, parameters in sent
        if "seller_settlement" in statement
    )
    plan = plan_of(services, statement, parameters)
    assert "ix_seller_settlement_currency_state_completed_at" in plan, plan
