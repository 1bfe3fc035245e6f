"""The demo gateway's hosted checkout page in a real Chromium: its style applies under its strict
Content-Security-Policy, the form may post to the page itself, nothing is fetched from outside,
and the payer's click ends, through the gateway's job, in a paid invoice."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from playwright.sync_api import Page

from tests.app.test_pages_in_chromium import page, watch  # noqa: F401 - the page fixture
from tests.conftest import run_jobs
from tests.modules.conftest import Caller
from tests.servers import Services

from .conftest import MadeProduct, tx_row
from .test_demo_gateway import order_through_demo


def test_the_checkout_page_works_in_a_browser_under_its_csp(
    app: Flask,
    serve: Callable[[Flask], str],
    customer: Caller,
    product: MadeProduct,
    services: Services,
    page: Page,  # noqa: F811 - the fixture imported above
) -> None:
    base = serve(app)
    tx = order_through_demo(base, customer, product.id)["transaction"]
    errors, hosts = watch(page)

    page.goto(tx["action"]["url"])
    assert page.locator("h1").inner_text() == "Demo gateway"
    assert "system-ui" in page.evaluate("getComputedStyle(document.body).fontFamily")
    page.get_by_label("Pending, then success").check()
    page.get_by_label("Save this card").check()
    page.get_by_role("button", name="Pay").click()
    page.wait_for_load_state()
    assert "pending" in page.content()  # the gateway has not notified yet

    run_jobs(app)
    page.reload()
    assert "success" in page.locator("strong").all_inner_texts()
    assert tx_row(services, tx["reference"])["invoice"] == "paid"
    assert errors == []
    assert set(hosts) == {"127.0.0.1"}
