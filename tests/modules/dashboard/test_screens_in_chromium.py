"""The Dashboard screen in a real Chromium (Debian's, driven by Playwright) against Lapak served
over HTTP with real PostgreSQL and Redis, after a week of sales through the demo gateway (some
failed), a bank transfer and a refund: staff land on it after logging in and read the API's
figures, the daily volume chart is drawn, a period chosen with the keyboard shows that period's
figures; a seller reads their own share. No script error, no CSP violation, nothing fetched from
another host; on a phone-wide screen nothing spills sideways. With the dashboard open, an order
placed through the API shows in its activity feed (the live event stream) without a reload."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, Page, expect

from tests.chromium import serve, watch
from tests.modules.web.conftest import Served, add_user, log_in_through_form

from .conftest import (
    MARKETPLACE,
    Market,
    build_market,
    deliver,
    notify,
    ok,
    order,
    product,
    shift_days,
    today,
)
from .test_screens import WEB, api

#: Per day back from today, the orders placed: (lines as (product, quantity), the gateway's answer).
WEEK = {
    6: [("a", "1", "success"), ("own", "1", "success")],
    5: [("b", "3", "success"), ("a", "2", "failed"), ("own", "2", "success")],
    4: [("a", "1", "success")],
    3: [
        ("own", "1", "success"),
        ("b", "1", "success"),
        ("a", "4", "success"),
        ("b", "2", "failed"),
    ],
    2: [("a", "2", "success"), ("own", "3", "success")],
    1: [("b", "5", "success"), ("a", "1", "success"), ("own", "1", "failed")],
    0: [("a", "3", "success"), ("b", "2", "success")],
}


@pytest.fixture
def lapak(make_app: Callable[..., Flask]) -> Iterator[Served]:
    """Lapak with its own modules only (no test sample screens), served over HTTP as it runs:
    its first screen is the dashboard."""
    app = make_app(module_packages=("modules",))
    with serve(app) as url:
        yield Served(url, app)


def a_week_of_sales(app: Flask, client: FlaskClient) -> Market:
    """A week of orders paid through the demo gateway (a few failed), one paid by bank
    transfer, and a refund, each on its day; delivered to the rollups."""
    market = build_market(app, client)
    ok(
        client.patch(
            "/api/v1/payments/providers/demo",
            json={"fee_percent": "2.90", "fee_fixed": "1000.00"},
            headers=market.admin.headers,
        )
    )
    products = {
        "a": product(app, "37000", market.seller_a),
        "b": product(app, "12345.67", market.seller_b),
        "own": product(app, "50000"),
    }
    paid = []
    for back, orders in WEEK.items():
        for item, quantity, outcome in orders:
            made = order(client, market.buyer, [(products[item], quantity)])
            notify(app, client, made["transaction"], outcome)
            shift_days(app, "payment_transaction", "last_state_change",
                       made["transaction"]["id"], back)  # fmt: skip
            if outcome == "success":
                paid.append(made)
    by_hand = order(client, market.buyer, [(products["a"], "1"), (products["b"], "1")],
                    method="bank_transfer")  # fmt: skip
    ok(
        client.post(
            f"{MARKETPLACE}/payments/{by_hand['payment']['id']}/confirm",
            headers=market.staff.headers,
        )
    )
    ok(
        client.post(
            f"{MARKETPLACE}/payments/{paid[-1]['payment']['id']}/refunds",
            json={"amount": "12345.67", "reason": "one pack was short"},
            headers=market.staff.headers,
        ),
        201,
    )
    deliver(app)
    return market


def shown(page: Page, element_id: str) -> str:
    """An element's text, spaces (the non-breaking one before a currency too) made plain."""
    return " ".join(page.locator(f"#{element_id}").inner_text().split())


def assert_shows(page: Page, stats: dict[str, Any]) -> None:
    totals, currency = stats["totals"], stats["currency"]
    expect(page.locator("#volume")).to_contain_text(totals["volume"])
    assert shown(page, "volume") == f"{totals['volume']} {currency}"
    assert shown(page, "transactions") == str(totals["transactions"])
    assert page.locator("#success-rate").get_attribute("data-rate") == stats["success_rate"]
    assert shown(page, "average") == f"{stats['average']} {currency}"
    assert shown(page, "refunds") == str(totals["refunds"])
    assert shown(page, "refunded") == f"{totals['refunded']} {currency}"
    days = [day for day in stats["daily"] if day["transactions"] or day["refunds"]]
    if page.locator("details.daily").get_attribute("open") is None:
        page.get_by_text("The daily figures as a table").click()
    daily = page.get_by_role("table", name="Per day")
    for day in days:
        row = daily.get_by_role("row").filter(has_text=day["day"])
        expect(row.get_by_role("cell").first).to_have_text(f"{day['volume']}\u00a0{currency}")


def test_staff_land_on_the_dashboard_and_read_the_apis_figures_and_chart(
    lapak: Served, browser: Browser, tmp_path: Path
) -> None:
    served = lapak
    app = served.app
    client = app.test_client()
    market = a_week_of_sales(app, client)
    # A date field's order of parts follows the locale: the keys typed below are en-US's.
    page = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900}).new_page()
    errors, hosts = watch(page)

    log_in_through_form(page, served.url, add_user(app, "staff"))

    assert page.url == f"{served.url}{WEB}/"  # the first screen after login
    stats = api(client, market.staff, "/stats")
    assert stats["totals"]["transactions"] == 18
    assert_shows(page, stats)
    expect(page.locator("#volume-chart canvas")).to_have_count(1)
    expect(page.locator("#volume-chart")).to_have_attribute("data-drawn", "yes")
    # The legend names the series; hovering a bar writes that day's figure as the API did.
    expect(page.locator("#volume-chart .u-legend")).to_contain_text("Volume (IDR)")
    recent = api(client, market.staff, "/transactions", currency="IDR", limit=10)["items"]
    table = page.get_by_role("table", name="Newest first")
    expect(table.get_by_role("row")).to_have_count(len(recent) + 1)
    expect(table.get_by_role("row").nth(1)).to_contain_text(recent[0]["reference"])
    expect(page.locator("#health-status")).to_have_text("ok")
    page.screenshot(path=str(tmp_path / "dashboard-1280.png"), full_page=True)

    # Another period, chosen by keyboard: the last three days.
    since = str(today() - timedelta(days=2))
    page.get_by_label("From").focus()
    page.keyboard.type(since[5:7] + since[8:10] + since[:4])  # month, day, year
    expect(page.get_by_label("From")).to_have_value(since)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert f"from={since}" in page.url
    assert_shows(page, api(client, market.staff, "/stats", **{"from": since}))

    # On a phone the page fits its width (wide tables scroll inside their own box).
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(page.locator("#volume-chart")).to_have_attribute("data-drawn", "yes")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(tmp_path / "dashboard-390.png"), full_page=True)

    seller_page = browser.new_context().new_page()
    seller_errors, seller_hosts = watch(seller_page)
    seller_stats = api(client, market.seller_b, "/stats")
    log_in_through_form(seller_page, served.url, market.seller_b.email)
    assert seller_stats["scope"] == "seller"
    assert seller_stats["totals"]["volume"] != stats["totals"]["volume"]
    assert_shows(seller_page, seller_stats)
    expect(seller_page.get_by_text("Your share of the sales")).to_be_visible()
    expect(seller_page.locator("#system-health")).to_have_count(0)

    assert errors == seller_errors == [], "a CSP violation or a script error"
    assert set(hosts) | set(seller_hosts) == {"127.0.0.1"}


def test_an_order_placed_through_the_api_shows_in_the_open_dashboards_feed(
    lapak: Served, page: Page
) -> None:
    served = lapak
    app = served.app
    client = app.test_client()
    market = build_market(app, client)
    item = product(app, "37000", market.seller_a)
    errors, hosts = watch(page)
    staff = add_user(app, "staff")
    log_in_through_form(page, served.url, staff)
    feed = page.locator("#activity-feed")
    expect(feed.locator("#feed-state")).to_have_text("Live")  # the stream is open
    # Nothing of the feed's kinds happened yet: the feed says so.
    expect(feed.get_by_text("New activity shows here as it happens.")).to_be_visible()
    earlier = order(client, market.buyer, [(item, "1")])["order"]["number"]
    page.reload()  # a page opened after some activity shows the latest of it
    expect(feed.locator("#feed-state")).to_have_text("Live")
    expect(feed.get_by_role("listitem").filter(has_text=earlier).first).to_be_visible()
    expect(feed.get_by_text("New activity shows here as it happens.")).to_be_hidden()
    page.evaluate("window.sameDocument = true")  # gone if the page were loaded again

    placed = order(client, market.buyer, [(item, "2")])
    number = placed["order"]["number"]

    line = feed.get_by_role("listitem").filter(has_text=number)
    expect(line).to_contain_text("Order placed", timeout=15_000)
    total = placed["order"]["amount_total"]  # with its tax: as the event says it
    expect(line).to_contain_text(f"{number} · {total} IDR · sale")
    invoice = feed.get_by_role("listitem").filter(has_text=placed["invoice"]["number"])
    expect(invoice.first).to_contain_text("Invoice posted")
    assert page.evaluate("window.sameDocument") is True  # no reload
    # Newest first: the last event of the order's transaction is the top line.
    types = feed.get_by_role("listitem").evaluate_all("lines => lines.map(l => l.dataset.type)")
    assert {"order.confirmed", "invoice.posted", "payment.registered"} <= set(types)
    ids = feed.get_by_role("listitem").evaluate_all("lines => lines.map(l => +l.dataset.id)")
    assert ids == sorted(ids, reverse=True)

    assert errors == [], "a CSP violation or a script error"
    assert set(hosts) == {"127.0.0.1"}
