"""The order screens in a real Chromium (Debian's, driven by Playwright) against Lapak served
over HTTP with real PostgreSQL and Redis: staff open an order placed through the API, refund
part of its confirmed payment with a double click, and see one refund and its credit note."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from playwright.sync_api import Page, expect

from tests.chromium import watch
from tests.modules.conftest import Caller
from tests.modules.web.conftest import Served, add_user, log_in_through_form
from tests.modules.web.test_in_chromium import focused
from tests.servers import Services

from .conftest import YEAR, MadeProduct, order_body, place, sql
from .test_refunds import paid_order

#: The form posted twice at the same time from the page, as two requests (redirects not
#: followed): what the server answered each.
TWICE_AT_ONCE = """async (form) => {
  const send = () => fetch(form.action, {method: "POST", body: new FormData(form),
                                          redirect: "manual"});
  const answers = await Promise.all([send(), send()]);
  return answers.map((answer) => answer.type);
}"""


def test_staff_refund_part_of_a_payment_from_the_order_screen_once_despite_a_double_click(
    served: Served,
    page: Page,
    customer: Caller,
    staff: Caller,
    make_product: Callable[..., MadeProduct],
    services: Services,
) -> None:
    api = served.app.test_client()
    older = place(api, customer, order_body((make_product("20000", name="NILA").id, "1")))
    placed = paid_order(api, customer, staff, make_product("37000", name="BANDENG"))
    number, payment = placed["order"]["number"], placed["payment"]["number"]
    email = add_user(served.app, "staff")
    errors, hosts = watch(page)

    log_in_through_form(page, served.url, email)
    page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Orders").click()
    expect(page.get_by_role("heading", name="Orders", exact=True)).to_be_visible()
    rows = page.locator("#orders tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_contain_text(older["order"]["number"])
    page.get_by_role("link", name=number).click()

    expect(page.get_by_role("heading", name=f"Order {number}")).to_be_visible()
    form = page.get_by_role("form", name=f"Refund payment {payment}")
    amount = form.get_by_label("Amount (IDR)")
    expect(amount).to_have_value("41070.00")  # what remains refundable
    # By keyboard: each field in turn, its focus visible, then the button.
    amount.focus()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type("15000.00")
    reached = []
    for text in ("Two fish were spoiled", None, payment):
        page.keyboard.press("Tab")
        reached.append(focused(page))
        if text is not None:
            page.keyboard.type(text)
    page.keyboard.press("Tab")
    reached.append(focused(page))
    assert reached == ["refund-1-reason", "refund-1-destination", "refund-1-confirm", "Refund"]
    with page.expect_navigation(url=f"**/orders/{placed['order']['id']}#refunds"):
        form.get_by_role("button", name="Refund").dblclick()

    credit_note = f"RINV/{YEAR}/00001"
    expect(page.locator(".notice-success")).to_have_text(
        f"Refunded 15000.00 IDR of payment {payment}: credit note {credit_note}."
    )
    refunds = page.locator("#refunds-table tbody tr")
    expect(refunds).to_have_count(1)
    expect(refunds.first).to_contain_text(credit_note)
    expect(refunds.first).to_contain_text("15000.00 IDR")
    expect(refunds.first).to_contain_text("Two fish were spoiled")
    expect(page.locator("#documents tbody tr").nth(1)).to_contain_text(
        f"{credit_note} for {placed['invoice']['number']}"
    )
    expect(page.locator("#postings caption").last).to_contain_text("REFUND")
    expect(amount).to_have_value("26070.00")
    assert sql(services, "SELECT amount, reason FROM marketplace_refund") == [
        (Decimal("15000.00"), "Two fish were spoiled")
    ]

    # Chromium sends a double-clicked form once; a form that does reach the server twice at
    # once (a click, then another before the answer) is one refund too: its nonce.
    form.get_by_label("Amount (IDR)").fill("1000.00")
    form.get_by_label("Reason").fill("Late delivery")
    form.get_by_label(f"Type {payment} to confirm").fill(payment)
    statuses = form.evaluate(TWICE_AT_ONCE)
    assert statuses == ["opaqueredirect", "opaqueredirect"]
    page.reload()
    expect(refunds).to_have_count(2)
    expect(refunds.nth(1)).to_contain_text("1000.00 IDR")
    assert len(sql(services, "SELECT id FROM marketplace_refund")) == 2
    assert errors == [], "a CSP violation or a script error"
    assert set(hosts) == {"127.0.0.1"}
