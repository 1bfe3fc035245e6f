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
from tests.modules.conftest import Caller, login
from tests.modules.web.conftest import Served, log_in_through_form

from .conftest import YEAR, MadeProduct, get, order_body, post
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
    # The payer's email is printed for staff only (the seller typed the name: it is theirs).
    assert "Sari@example.com" not in html
    by_staff = printed(client, staff, done)
    assert "Sari@example.com" in by_staff
    assert by_staff.replace("<p>Sari@example.com</p>", "") == html


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


def row(label: str, amount: str) -> str:
    """A row of the totals, as printed."""
    return f'<th scope="row">{label}</th><td>{amount}</td></tr>'


def test_paid_is_what_was_confirmed_less_what_was_sent_back(
    client: FlaskClient, staff: Caller
) -> None:
    """A registered payment (a transfer announced, a gateway page opened) is no money yet: it
    is printed "in process", never "Paid" (review inv, finding 3). Due is the API's residual."""
    made = ok(post(client, staff, "/invoices", guest_invoice()), 201)
    done = ok(post(client, staff, f"/invoices/{made['id']}/post"))
    payment = ok(post(client, staff, f"/invoices/{done['id']}/payments",
                      {"method": "bank_transfer", "amount": "30000.00"}), 201)  # fmt: skip
    assert ok(get(client, staff, f"/invoices/{done['id']}"))["amount_residual"] == "600000.00"
    html = printed(client, staff, done)
    assert '<th scope="row">Paid</th>' not in html
    assert row("In process (not yet received)", "IDR 30,000.00") in html
    assert row("Amount due", "IDR 600,000.00") in html
    assert "Payment in process" in html
    assert "Partially paid" not in html

    ok(post(client, staff, f"/payments/{payment['id']}/confirm"))
    html = printed(client, staff, done)
    assert row("Paid", "IDR 30,000.00") in html
    assert "Partially paid" in html
    assert "In process" not in html
    assert row("Amount due", "IDR 600,000.00") in html

    refund = ok(post(client, staff, f"/payments/{payment['id']}/refunds",
                     {"reason": "damaged", "amount": "10000.00"}), 201)  # fmt: skip
    assert row("Paid", "IDR 30,000.00") in printed(client, staff, done)  # not sent back yet
    ok(post(client, staff, f"/refunds/{refund['id']}/done"))
    assert row("Paid", "IDR 20,000.00") in printed(client, staff, done)


def customer_named(client: FlaskClient, make_user: Callable[..., Any], name: str) -> Caller:
    user_id, user_uuid, email = make_user(role="customer", name=name)
    return Caller(email, user_uuid, user_id, login(client, email).get_json()["access_token"])


def test_a_seller_never_prints_a_customers_name_or_email(
    client: FlaskClient,
    seller: Caller,
    staff: Caller,
    make_user: Callable[..., Any],
    make_product: Callable[..., MadeProduct],
) -> None:
    """Only staff and the customer themself read a customer's name and email on the page; a
    seller reads the customer's reference, as the API shows it (review inv, finding 2)."""
    buyer = customer_named(client, make_user, "Rina Wulandari")
    product = make_product("37000", seller_id=seller.user_id)
    order_invoice = ok(post(client, buyer, "/orders", order_body((product.id, "1"))), 201)[
        "invoice"
    ]
    # (a) The order's invoice, printed by the seller with a line in it.
    html = printed(client, seller, order_invoice)
    assert buyer.email not in html
    assert "Rina Wulandari" not in html
    assert f"Customer {buyer.uuid}" in html
    assert "Toko Ikan Segar" in html  # the line's seller is still named
    # (b) A draft of the seller's own, to a customer they saw in their orders, printed and
    # given up: nobody's name or email either.
    (listed,) = ok(get(client, seller, "/orders"))["items"]
    to_them = guest_invoice(customer=listed["customer"], payer_name=None, payer_email=None)
    own_draft = ok(post(client, seller, "/invoices", to_them), 201)
    html = printed(client, seller, own_draft)
    assert buyer.email not in html
    assert "Rina Wulandari" not in html
    # Staff and the customer themself read both.
    for caller, invoice in ((staff, order_invoice), (buyer, order_invoice), (staff, own_draft)):
        html = printed(client, caller, invoice)
        assert "Rina Wulandari" in html
        assert buyer.email in html


def test_a_seller_without_a_profile_is_printed_by_their_emails_local_part(
    client: FlaskClient,
    customer: Caller,
    make_user: Callable[..., Any],
    make_product: Callable[..., MadeProduct],
) -> None:
    """As the seller views and the pay page name them: never by their whole login email
    (review inv, finding 6)."""
    seller_id, _, email = make_user("no.profile@example.test", role="seller", name="")
    product = make_product("37000", seller_id=seller_id)
    placed = ok(post(client, customer, "/orders", order_body((product.id, "1"))), 201)
    html = printed(client, customer, placed["invoice"])
    assert email not in html
    assert "Sold by no.profile<" in html


def test_what_people_typed_is_printed_escaped(client: FlaskClient, staff: Caller) -> None:
    """The payer's name, the memo and the lines' descriptions are printed as text, never as
    markup (review inv, finding 9)."""
    typed = guest_invoice(
        payer_name="<b>x</b>",
        memo="<script>alert(1)</script>",
        lines=[{"description": '"><img src=x>', "quantity": "1", "price_unit": "1000.00"}],
    )
    made = ok(post(client, staff, "/invoices", typed), 201)
    html = printed(client, staff, made)
    for raw, escaped in (
        ("<b>x</b>", "&lt;b&gt;x&lt;/b&gt;"),
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ('"><img src=x>', "&#34;&gt;&lt;img src=x&gt;"),
    ):
        assert raw not in html
        assert escaped in html
    assert "<img" not in html
