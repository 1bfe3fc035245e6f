"""The printable invoice: what its HTML holds and promises (headers, no script), the Pay online
link a module may provide, and the page as Debian's Chromium renders and prints it to A4 (a
short invoice on one page, a long one on two), on the harness's PostgreSQL and Redis."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Page, expect

from modules.marketplace.issuing import register_pay_url_source
from tests.chromium import watch
from tests.modules.conftest import Caller
from tests.modules.web.conftest import Served, log_in_through_form

from .conftest import YEAR, get, post
from .test_invoices import BANK, SELLERS, guest_invoice, ok

PAY_URL = "https://pay.example.test/pay/abc123"
_PAGES = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


def make_verified_seller(client: FlaskClient, seller: Caller, staff: Caller, name: str) -> None:
    ok(client.patch(f"{SELLERS}/me", json={"bank_account": BANK, "display_name": name},
                    headers=seller.headers))  # fmt: skip
    ok(client.post(f"{SELLERS}/me/kyc", headers=seller.headers))
    ok(client.post(f"{SELLERS}/{seller.uuid}/kyc/approve", headers=staff.headers))


@pytest.fixture
def seller(client: FlaskClient, staff: Caller, log_in_as: Callable[..., Caller]) -> Caller:
    made = log_in_as("seller")
    make_verified_seller(client, made, staff, "Toko Ikan Segar")
    return made


def printed(client: FlaskClient, caller: Caller, invoice: dict[str, Any]) -> str:
    response = get(client, caller, f"/invoices/{invoice['id']}/print")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type == "text/html; charset=utf-8"
    csp = response.headers["Content-Security-Policy"]
    assert csp.startswith("default-src 'none'; style-src 'sha256-")
    assert "script" not in csp
    assert response.headers["Cache-Control"] == "private, no-store"
    html = response.get_data(as_text=True)
    assert "<script" not in html.lower()
    assert "http" not in html.replace(PAY_URL, "")  # nothing fetched, nothing linked but that
    return html


def test_the_printed_invoice_names_the_seller_payer_lines_ppn_totals_and_due_date(
    client: FlaskClient, seller: Caller, staff: Caller
) -> None:
    made = ok(post(client, seller, "/invoices", guest_invoice(memo="Transfer to BCA 123")), 201)
    html = printed(client, seller, made)
    assert "DRAFT" in html
    assert "INV/" not in html
    done = ok(post(client, seller, f"/invoices/{made['id']}/post"))
    html = printed(client, seller, done)
    for text in (
        "Toko Ikan Segar",
        f"INV/{YEAR}/00001",
        "Ibu Sari",
        "Sari@example.com",
        "Cold storage, May",
        "250,000.00",
        "PPN 11%",
        "0%",
        "IDR 575,000.00",
        "IDR 55,000.00",
        "IDR 630,000.00",
        done["invoice_date_due"],
        "Transfer to BCA 123",
        "Not paid",
    ):
        assert text in html, text
    assert "DRAFT" not in html
    assert "PPN 0%" not in html  # a rate that adds nothing has no row of its own
    assert "Pay online" not in html  # no module provides a link here
    assert printed(client, staff, done) == html


def test_a_pay_link_provided_by_a_module_is_printed_while_something_is_due(
    app: Flask, client: FlaskClient, seller: Caller, staff: Caller
) -> None:
    asked: list[tuple[str, str]] = []

    def source(invoice: Any, viewer: Any) -> str:
        asked.append((invoice.name, viewer.email))
        return PAY_URL

    register_pay_url_source(app, source)
    made = ok(post(client, seller, "/invoices", guest_invoice()), 201)
    done = ok(post(client, seller, f"/invoices/{made['id']}/post"))
    html = printed(client, seller, done)
    assert f'<a href="{PAY_URL}">Pay online</a>' in html
    assert asked == [(done["number"], seller.email)]

    register_pay_url_source(app, lambda invoice, viewer: "javascript:alert(1)")
    assert "Pay online" not in printed(client, seller, done)

    register_pay_url_source(app, source)
    payment = ok(post(client, staff, f"/invoices/{done['id']}/payments",
                      {"method": "bank_transfer"}), 201)  # fmt: skip
    ok(post(client, staff, f"/payments/{payment['id']}/confirm"))
    html = printed(client, seller, done)
    assert "Pay online" not in html
    assert "Paid" in html


def test_the_printable_invoice_renders_and_prints_on_a4_in_chromium(
    served: Served, page: Page, staff: Caller, log_in_as: Callable[..., Caller]
) -> None:
    api = served.app.test_client()
    seller = log_in_as("seller")
    make_verified_seller(api, seller, staff, "Toko Ikan Segar")
    short = ok(post(api, seller, "/invoices", guest_invoice(memo="Transfer to BCA 123-456")), 201)
    short = ok(post(api, seller, f"/invoices/{short['id']}/post"))
    lines = [
        {"description": f"Ikan bandeng, crate {n}", "quantity": "3", "price_unit": "37000.00"}
        for n in range(1, 41)
    ]
    long = ok(post(api, seller, "/invoices", guest_invoice(lines=lines)), 201)
    register_pay_url_source(served.app, lambda invoice, viewer: PAY_URL)
    errors, hosts = watch(page)

    log_in_through_form(page, served.url, seller.email)
    page.goto(f"{served.url}/api/v1/marketplace/invoices/{short['id']}/print")
    expect(page.get_by_role("heading", name="Invoice")).to_be_visible()
    expect(page.locator(".number")).to_have_text(short["number"])
    expect(page.locator(".issuer")).to_have_text("Toko Ikan Segar")
    expect(page.locator("table.lines tbody tr")).to_have_count(2)
    expect(page.locator("tr.due td")).to_have_text("IDR 630,000.00")
    # The stylesheet applied (its hash matches the policy): the sheet is A4-wide on screen.
    width = page.locator(".sheet").evaluate("e => getComputedStyle(e).width")
    assert abs(float(width.removesuffix("px")) - 210 / 25.4 * 96) < 1, width
    expect(page.get_by_role("link", name="Pay online")).to_have_attribute("href", PAY_URL)
    page.set_viewport_size({"width": 900, "height": 1300})
    page.screenshot(path="/tmp/lapak-invoice-print.png", full_page=True)
    page.emulate_media(media="print")  # as printed: no grey desk, no shadow
    page.screenshot(path="/tmp/lapak-invoice-print-media.png", full_page=True)
    pdf = page.pdf(format="A4", print_background=True)
    assert pdf.startswith(b"%PDF")
    assert len(_PAGES.findall(pdf)) == 1

    page.goto(f"{served.url}/api/v1/marketplace/invoices/{long['id']}/print")
    expect(page.locator("table.lines tbody tr")).to_have_count(40)
    expect(page.locator(".watermark")).to_have_text("DRAFT")
    page.screenshot(path="/tmp/lapak-invoice-print-long.png", full_page=True)
    assert len(_PAGES.findall(page.pdf(format="A4", print_background=True))) == 2

    assert errors == []  # no CSP violation, no script error
    assert set(hosts) == {"127.0.0.1"}  # the pay link is printed, never fetched
