"""The Dashboard screen through a browser's session (the test client, real PostgreSQL with its
replica and Redis, and the embedded SQLite where marked): who may open it, the figures on the page
equal the API's for the same period (staff: the platform's, a seller: their share), a bad period
says what is wrong and shows nothing else (422), the transactions screen with its filters and
pages, the health panel for staff only, and the activity feed's hook."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from app.db import Session
from app.events import OutboxEvent
from modules.dashboard.screens import FEED_RECENT_EVENTS
from tests.modules.conftest import Caller, login
from tests.modules.ledger.screens_support import browser_of, figure, notices, text_of, web_user

from .conftest import DASHBOARD, Market, build_market, deliver, move_money, ok, shift_days, today

WEB = "/web/dashboard"
_ROW = re.compile(r"<tr>\s*<th scope=\"row\"[^>]*>(.*?)</th>(.*?)</tr>", re.S)
_CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.S)
_TAG = re.compile(r"<[^>]+>")


def api(client: FlaskClient, caller: Caller, path: str, **query: Any) -> Any:
    return ok(client.get(f"{DASHBOARD}{path}", query_string=query, headers=caller.headers))


def attribute(page: TestResponse, element_id: str, name: str) -> str:
    """The value of attribute ``name`` (single- or double-quoted) of the element ``element_id``."""
    found = re.search(rf"id=\"{element_id}\"[^>]*?\s{name}=(['\"])(.*?)\1", page.text, re.S)
    assert found, f"no {name} on #{element_id}"
    return html.unescape(found.group(2))


def section(page: TestResponse, heading_id: str) -> str:
    """The HTML of the section labelled by the heading ``heading_id``."""
    start = page.text.index(f'aria-labelledby="{heading_id}"')
    return page.text[start : page.text.index("</section>", start)]


def rows(fragment: str) -> list[list[str]]:
    """A table's body rows as texts: the row header, then each cell."""
    found = []
    for header, cells in _ROW.findall(fragment):
        found.append([_text(header), *(_text(cell) for cell in _CELL.findall(cells))])
    return found


def _text(fragment: str) -> str:
    return " ".join(html.unescape(_TAG.sub(" ", fragment)).split())


def market_with_money(app: Flask, client: FlaskClient) -> Market:
    """The dashboard tests' market with its money moved over three days and delivered."""
    market = build_market(app, client)
    made = move_money(app, client, market)
    if app.extensions["lapak.settings"].redis_url:
        shift_days(app, "payment_transaction", "last_state_change",
                   made["failed"]["transaction"]["id"], 2)  # fmt: skip
        shift_days(app, "marketplace_payment", "confirmed_at", made["by_hand"]["payment"]["id"], 1)
    deliver(app)
    return market


def assert_page_shows(page: TestResponse, stats: dict[str, Any], recent: list[dict]) -> None:
    """Every figure of ``stats`` (the API's answer) is on ``page`` as the API wrote it."""
    assert page.status_code == 200, page.text
    totals, currency = stats["totals"], stats["currency"]
    assert figure(page, "volume") == totals["volume"]
    assert text_of_id(page, "transactions") == str(totals["transactions"])
    assert attribute(page, "success-rate", "data-rate") == (stats["success_rate"] or "")
    assert (figure(page, "average") if stats["average"] else None) == stats["average"]
    assert text_of_id(page, "refunds") == str(totals["refunds"])
    assert figure(page, "refunded") == totals["refunded"]
    assert attribute(page, "from", "value") == stats["from"]
    assert attribute(page, "to", "value") == stats["to"]
    assert attribute(page, "currency", "value") == currency

    series = json.loads(attribute(page, "volume-chart", "data-series"))
    assert series == {
        "days": [day["day"] for day in stats["daily"]],
        "volume": [day["volume"] for day in stats["daily"]],
        "currency": currency,
    }
    daily = rows(section(page, "daily-volume"))
    assert daily == [
        [day["day"], f"{day['volume']} {currency}", str(day["transactions"]),
         str(day["succeeded"]), str(day["failed"]), str(day["refunds"])]
        for day in stats["daily"]
    ]  # fmt: skip
    statuses = rows(section(page, "status-split"))
    assert [row[:2] for row in statuses] == [
        [status["state"], str(status["count"])]
        for status in stats["statuses"]
        if totals["transactions"]  # none: the panel says so instead
    ]
    providers = rows(section(page, "provider-split"))
    assert [row[:3] for row in providers] == [
        [p["provider"], str(p["transactions"]), f"{p['volume']} {currency}"]
        for p in stats["providers"]
    ]
    listed = rows(section(page, "recent-transactions"))
    assert [(row[0], row[1]) for row in listed] == [
        (tx["reference"], f"{tx['amount']} {tx['currency']}") for tx in recent
    ]
    settlement = stats["settlement"]
    assert figure(page, "settlement-available") == settlement["available"]
    assert figure(page, "settlement-pending") == settlement["pending"]
    assert figure(page, "settlement-owed") == settlement["owed"]
    assert text_of_id(page, "settlement-payouts") == (
        f"{settlement['payouts']['count']} for {settlement['payouts']['amount']} {currency}"
    )
    assert text_of_id(page, "settlement-in-flight") == (
        f"{settlement['in_flight']['count']} for {settlement['in_flight']['amount']} {currency}"
    )


def text_of_id(page: TestResponse, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</(dd|span|p)>', page.text, re.S)
    assert found, f"no #{element_id}"
    return _text(found.group(1))


# -- who opens it ---------------------------------------------------------------------------------


def test_staff_admins_and_sellers_open_it_customers_are_refused(either_app: Flask) -> None:
    for role in ("staff", "admin", "seller"):
        page = web_user(either_app, role).get(f"{WEB}/")
        assert page.status_code == 200, role
        menu = page.text.split('aria-label="Main menu"', 1)[1].split("</nav>", 1)[0]
        assert f'<a href="{WEB}/" aria-current="page">Dashboard</a>' in menu, role

    customer = web_user(either_app, "customer")
    refused = customer.get(f"{WEB}/")
    assert refused.status_code == 403
    assert "Dashboard" not in refused.text.split('aria-label="Main menu"', 1)[1].split("</nav>")[0]
    assert customer.get(f"{WEB}/transactions").status_code == 403
    assert 'id="volume"' not in refused.text

    stranger = either_app.test_client().get(f"{WEB}/?from=2026-01-01")
    assert stranger.status_code == 303
    target = urlsplit(stranger.headers["Location"])
    assert target.path == "/web/login"
    assert parse_qs(target.query)["next"] == [f"{WEB}/?from=2026-01-01"]


def test_it_is_the_first_screen_after_logging_in(make_app: Callable[..., Flask]) -> None:
    lapak = make_app(module_packages=("modules",))  # Lapak's own screens, no test samples
    for role in ("staff", "admin", "seller"):
        browser = web_user(lapak, role)
        home = browser.get("/web/")
        assert home.status_code == 303
        assert home.headers["Location"] == f"{WEB}/", role
        menu = browser.get(f"{WEB}/").text.split('aria-label="Main menu"', 1)[1]
        first = re.search(r"<a href=\"([^\"]+)\"[^>]*>([^<]+)</a>", menu)
        assert first is not None
        assert first.groups() == (f"{WEB}/", "Dashboard"), role


# -- the figures ----------------------------------------------------------------------------------


def test_the_figures_on_the_page_equal_the_apis_for_staff_and_a_sellers_share(
    either_app: Flask,
) -> None:
    app = either_app
    client = app.test_client()
    market = market_with_money(app, client)
    period = {"from": str(today() - timedelta(days=6)), "to": str(today()), "currency": "IDR"}

    staff_stats = api(client, market.staff, "/stats", **period)
    assert staff_stats["totals"]["transactions"] == 5  # the scenario is on the page below
    staff_recent = api(client, market.staff, "/transactions", currency="IDR", limit=10)["items"]
    staff_page = web_user(app, "staff").get(f"{WEB}/", query_string=period)
    assert_page_shows(staff_page, staff_stats, staff_recent)
    assert "The platform's figures" in staff_page.text
    rate = Decimal(staff_stats["success_rate"])  # 0.5000: one success, one failure
    assert text_of_id(staff_page, "success-rate") == f"{rate * 100:.2f} %"

    # The defaults (the last 30 days in IDR) are the API's too.
    default_stats = api(client, market.staff, "/stats")
    default_page = web_user(app, "admin").get(f"{WEB}/")
    assert_page_shows(default_page, default_stats, staff_recent)

    seller_stats = api(client, market.seller_a, "/stats", **period)
    seller_recent = api(client, market.seller_a, "/transactions", currency="IDR")["items"][:10]
    assert seller_stats["scope"] == "seller"
    assert seller_stats["totals"]["volume"] != staff_stats["totals"]["volume"]
    seller_page = browser_of(app, market.seller_a.email).get(f"{WEB}/", query_string=period)
    assert_page_shows(seller_page, seller_stats, seller_recent)
    assert "Your share of the sales" in seller_page.text
    assert "/web/seller/me" in section(seller_page, "settlement")

    # A seller with no sale sees zeros and dashes, not an error.
    empty = browser_of(app, market.seller_c.email).get(f"{WEB}/", query_string=period)
    assert empty.status_code == 200
    assert figure(empty, "volume") == "0.00"
    assert text_of_id(empty, "success-rate") == "—"
    assert text_of_id(empty, "average") == "—"
    assert "No transaction in this period." in empty.text


@pytest.mark.parametrize(
    ("query", "message", "field"),
    [
        ({"from": "2026-03-10", "to": "2026-03-01"}, "the period starts (2026-03-10) after it ends",
         "from"),
        ({"from": "2025-01-01", "to": "2026-03-01"}, "the period is 425 days long; at most 366",
         "to"),
        ({"from": "2026-02-30"}, "From: Not a valid date.", "from"),
        ({"currency": "idr"}, "Currency: an ISO 4217 code in capitals, like IDR", "currency"),
    ],
)  # fmt: skip
def test_a_bad_period_says_what_is_wrong_with_422_and_shows_nothing_else(
    app: Flask, client: FlaskClient, query: dict[str, str], message: str, field: str
) -> None:
    staff = build_market(app, client).staff
    refused_by_api = client.get(f"{DASHBOARD}/stats", query_string=query, headers=staff.headers)
    assert refused_by_api.status_code == 422

    page = web_user(app, "staff").get(f"{WEB}/", query_string=query)

    assert page.status_code == 422
    ((category, text),) = notices(page)
    assert category == "error"
    assert message in text, text
    assert re.search(rf'id="{field}" aria-invalid="true"', page.text)
    for value in query.values():
        assert f'value="{value}"' in page.text  # what was typed stays, to be corrected
    for widget in ("volume", "volume-chart", "status-split", "recent-transactions", "settlement",
                   "activity", "system-health"):  # fmt: skip
        assert f'id="{widget}"' not in page.text, widget
    assert "chart.js" not in page.text
    assert "feed.js" not in page.text


def test_an_unknown_currency_shows_zeros_as_the_api_does(app: Flask, client: FlaskClient) -> None:
    staff = build_market(app, client).staff
    stats = api(client, staff, "/stats", currency="EUR")
    page = web_user(app, "staff").get(f"{WEB}/", query_string={"currency": "EUR"})
    assert_page_shows(page, stats, [])
    assert "No payment in EUR yet." in page.text


# -- the transactions screen ----------------------------------------------------------------------


def test_the_transactions_screen_lists_filters_and_pages_as_the_api(
    either_app: Flask,
) -> None:
    app = either_app
    client = app.test_client()
    market = market_with_money(app, client)
    browser = web_user(app, "staff")

    for query in ({}, {"state": "failed"}, {"provider": "demo"}, {"currency": "IDR"},
                  {"state": "success", "provider": "cash"}, {"currency": "USD"}):  # fmt: skip
        listed = api(client, market.staff, "/transactions", **query)["items"]
        page = browser.get(f"{WEB}/transactions", query_string=query)
        assert page.status_code == 200, query
        shown = rows(page.text)
        assert [(row[0], row[1], row[2], row[3], row[4]) for row in shown] == [
            (
                tx["reference"],
                f"{tx['amount']} {tx['currency']}",
                tx["state"],
                tx["provider"],
                tx["invoice_number"],
            )
            for tx in listed
        ], query
    assert (
        "No payment matches these filters."
        in browser.get(f"{WEB}/transactions", query_string={"currency": "USD"}).text
    )

    every = api(client, market.staff, "/transactions")["items"]
    first = browser.get(f"{WEB}/transactions", query_string={"limit": "4"})
    later = re.search(r'<a href="([^"]+)" rel="next"', first.text)
    assert later is not None
    second = browser.get(html.unescape(later.group(1)))
    assert [row[0] for row in rows(first.text) + rows(second.text)] == [
        tx["reference"] for tx in every
    ]

    # A seller's list is theirs (the API's), and only theirs.
    own = api(client, market.seller_b, "/transactions")["items"]
    seller_page = browser_of(app, market.seller_b.email).get(f"{WEB}/transactions")
    assert [row[0] for row in rows(seller_page.text)] == [tx["reference"] for tx in own]
    assert len(own) < len(every)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"state": "lost"}, "State: Must be one of"),
        ({"currency": "rupiah"}, "Currency: an ISO 4217 code in capitals"),
        ({"cursor": "forged"}, "the cursor was altered, expired or belongs to another listing"),
    ],
)
def test_a_bad_transactions_filter_says_what_is_wrong_and_lists_nothing(
    app: Flask, query: dict[str, str], message: str
) -> None:
    page = web_user(app, "staff").get(f"{WEB}/transactions", query_string=query)
    assert page.status_code == 422
    ((category, text),) = notices(page)
    assert category == "error"
    assert message in text, text
    assert "<table" not in page.text


# -- health and the feed --------------------------------------------------------------------------


def test_staff_see_the_system_health_sellers_do_not(either_app: Flask) -> None:
    staff_page = web_user(either_app, "staff").get(f"{WEB}/")
    health = section(staff_page, "system-health")
    assert text_of_id(staff_page, "health-status") == "ok"
    checks = _text(health.split("<h3>Job queues</h3>", 1)[0])
    assert "up primary" in checks
    if either_app.extensions["lapak.settings"].redis_url:
        assert "up redis" in checks
        assert "lag seconds" in checks  # the replica, with its lag
        assert "mode redis" not in checks
    else:  # no Redis at all: not shown as up
        assert "not used redis jobs run in this process (embedded mode)" in checks
    # The modules' own sections (hooks.health_section): webhook deliveries, the audit writer.
    assert "<h3>Webhooks</h3>" in health
    assert "last hour · sent" in _text(health)
    assert "<h3>Audit log</h3>" in health

    seller_page = web_user(either_app, "seller").get(f"{WEB}/")
    assert seller_page.status_code == 200
    assert 'id="system-health"' not in seller_page.text


def test_the_activity_feed_listens_to_the_event_stream_when_it_is_served(
    app: Flask, make_app: Callable[..., Flask]
) -> None:
    page = web_user(app, "staff").get(f"{WEB}/")
    assert attribute(page, "activity-feed", "data-stream") == "/api/v1/events/stream"
    events = json.loads(attribute(page, "activity-feed", "data-events"))
    assert events["order.confirmed"] == "Order placed"
    assert "/web/dashboard/static/feed.js" in page.text
    # It resumes a few events before the newest when the page was drawn, to show the recent
    # activity (and nothing committed between is lost).
    with app.app_context():
        newest = Session().scalar(select(func.max(OutboxEvent.id)))
    assert newest
    resumes = max(newest - FEED_RECENT_EVENTS, 0)
    assert attribute(page, "activity-feed", "data-last-event-id") == str(resumes)

    loaded = [m.name for m in app.extensions["lapak.registry"].manifests]
    without_live = make_app(modules=tuple(name for name in loaded if name != "live"))
    bare = web_user(without_live, "staff").get(f"{WEB}/")
    assert bare.status_code == 200
    assert "Live updates are not served here" in text_of(bare)
    assert 'id="activity-feed"' not in bare.text
    assert "feed.js" not in bare.text


def test_an_api_login_elsewhere_sends_the_dashboard_to_the_login_page(app: Flask) -> None:
    client = app.test_client()
    seller = build_market(app, client).seller_a
    browser = browser_of(app, seller.email)
    assert browser.get(f"{WEB}/").status_code == 200
    login(app.test_client(), seller.email)
    again = browser.get(f"{WEB}/")
    assert again.status_code == 303
    assert urlsplit(again.headers["Location"]).path == "/web/login"
