"""The money screens in a real Chromium (Debian's, driven by Playwright) against Lapak served over
HTTP with real PostgreSQL and Redis: a verified seller with an available balance withdraws it
(the button clicked twice pays out once) and sees the settlement and the new balance; an admin
opens the trial balance, whose totals are the API's. No script error, no CSP violation, nothing
fetched from another host."""

from __future__ import annotations

from playwright.sync_api import Browser, Page, expect

from tests.chromium import watch
from tests.modules.ledger.screens_support import api_caller, api_get
from tests.modules.web.conftest import Served, add_user, log_in_through_form

from .test_screens import seller_in, settlements_of


def focused_shows(page: Page) -> str:
    """The focused element's text, after checking that its focus is drawn."""
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid", "no visible focus"
    return page.evaluate("document.activeElement.textContent.trim()")


def test_a_seller_withdraws_and_an_admin_reads_the_trial_balance(
    served: Served, browser: Browser, page: Page
) -> None:
    app = served.app
    api = app.test_client()
    seller = seller_in(app, api, "verified", funds="12500.00")
    errors, hosts = watch(page)

    log_in_through_form(page, served.url, seller.email)
    page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Balance").click()
    expect(page.locator("#available")).to_contain_text("12500.00")
    expect(page.get_by_text("No settlement in IDR yet.")).to_be_visible()
    amount = page.get_by_label("Amount (IDR)")
    expect(amount).to_have_value("")  # empty: all that is available
    amount.focus()
    page.keyboard.press("Tab")
    assert focused_shows(page) == "Withdraw"
    with page.expect_navigation():
        page.get_by_role("button", name="Withdraw").dblclick()

    expect(page.locator(".notices")).to_contain_text("is on its way to your bank account •••• 3977")
    expect(page.locator("#available")).to_contain_text("0.00")
    (made,) = settlements_of(app, api, seller)  # one settlement, however many submits
    assert (made["amount"], made["state"]) == ("12500.00", "pending")
    row = page.get_by_role("row").filter(has_text=made["name"])
    expect(row).to_contain_text("12500.00")
    expect(row).to_contain_text("pending")

    admin_page = browser.new_context().new_page()
    admin_errors, admin_hosts = watch(admin_page)
    log_in_through_form(admin_page, served.url, add_user(app, "admin"))
    admin_page.get_by_role("navigation", name="Main menu").get_by_role(
        "link", name="Ledger"
    ).click()
    admin_page.get_by_role("navigation", name="Ledger").get_by_role(
        "link", name="Trial balance"
    ).click()

    totals = admin_page.get_by_role("table", name="Totals: per currency, debits equal credits")
    idr = totals.get_by_role("row").filter(has_text="IDR")
    admin = api_caller(app, api, "admin")
    (expected,) = api_get(api, admin, "/api/v1/ledger/trial-balance")["totals"]
    assert expected == {"currency": "IDR", "debit": "12500.00", "credit": "12500.00"}
    expect(idr.get_by_role("cell")).to_have_text(["12500.00 IDR", "12500.00 IDR", "balanced"])

    assert errors == admin_errors == [], "a CSP violation or a script error"
    assert set(hosts) | set(admin_hosts) == {"127.0.0.1"}
