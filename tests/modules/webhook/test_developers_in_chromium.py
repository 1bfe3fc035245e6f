"""The Developers screens in a real Chromium (Debian's, driven by Playwright) against Lapak
served over HTTP: a seller's API key with its secret shown once and signing a request, and a
webhook endpoint to a real receiver on 127.0.0.1 pinged, logged and redelivered."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import requests
from playwright.sync_api import Page, expect

from modules.auth.models import SIGNATURE_V1
from modules.auth.signing import request_target, sign, signed_message
from tests.chromium import watch
from tests.conftest import run_jobs
from tests.modules.web.conftest import Served, add_user, log_in_through_form
from tests.modules.web.test_in_chromium import focused

from .conftest import Receiver, caught_up, verify_now

ORDERS = "/api/v1/marketplace/orders"


def signed_get(base_url: str, path: str, key_id: str, secret: str) -> int:
    """The status of a GET signed with ``modules/auth/signing.py``, as a program sends it."""
    timestamp = str(int(time.time()))
    message = signed_message(SIGNATURE_V1, timestamp, "GET", request_target(path, b""), b"")
    headers = {"X-API-Key": key_id, "X-Timestamp": timestamp, "X-Signature": sign(secret, message)}
    return requests.get(base_url + path, headers=headers, timeout=10).status_code


def test_a_seller_makes_an_api_key_and_a_webhook_endpoint_and_follows_a_ping(
    served: Served, page: Page, make_receiver: Callable[..., Receiver]
) -> None:
    app = served.app
    email = add_user(app, "seller")
    receiver = make_receiver()
    errors, hosts = watch(page)
    log_in_through_form(page, served.url, email)
    menu = page.get_by_role("navigation", name="Main menu")

    # An API key, its secret shown once.
    menu.get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("API keys")
    page.get_by_label("Name").fill("Shop sync")
    page.get_by_role("checkbox", name=re.compile(r"^orders:read")).check()
    with page.expect_navigation():
        page.get_by_role("button", name="Create the key").click()
    expect(page.locator(".notices")).to_contain_text("API key “Shop sync” created.")
    secret = page.get_by_label(re.compile(r"^Secret of lpk_")).input_value()
    key_id = page.locator("dl.facts code").first.inner_text()
    assert secret.startswith("lsk_")
    assert key_id.startswith("lpk_")
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    # The address is the key's page now, and a reload shows it without the secret.
    assert page.url == f"{served.url}/web/auth/api-keys/{key_id}"
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Shop sync")
    assert page.locator("[data-secret-once]").count() == 0
    assert secret not in page.content()
    assert signed_get(served.url, ORDERS, key_id, secret) == 200
    assert signed_get(served.url, ORDERS, key_id, "lsk_" + "x" * 43) == 401

    # A webhook endpoint to the receiver, a test ping, the log, a redelivery.
    menu.get_by_role("link", name="Webhooks").click()
    page.get_by_role("link", name="Add an endpoint").click()
    page.get_by_label("URL").fill(receiver.url)
    page.get_by_label("Description (optional)").fill("Shop sync")
    with page.expect_navigation():
        page.get_by_role("button", name="Add the endpoint").click()
    whsec = page.get_by_label("Signing secret").input_value()
    assert whsec.startswith("whsec_")
    page.get_by_role("button", name="Send a test ping").click()
    expect(page.locator(".notices")).to_contain_text("A test ping is on its way")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr").first).to_contain_text("pending")

    run_jobs(app)
    caught_up()
    page.reload()
    log = page.locator("tbody tr").first
    expect(log).to_contain_text("sent")
    expect(log.locator("td").nth(2)).to_have_text("200")  # the last status code
    [received] = receiver.received
    assert verify_now(whsec, received)["type"] == "ping"

    log.get_by_role("link", name="ping").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delivery of ping")
    page.get_by_role("button", name="Redeliver").click()
    expect(page.locator(".notices")).to_contain_text("Redelivery queued")
    run_jobs(app)
    caught_up()
    page.reload()
    attempts = page.locator("tbody tr")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(1)).to_contain_text("2 · 1")
    expect(attempts.nth(1)).to_contain_text("sent")
    assert [r.headers["webhook-id"] for r in receiver.received] == [
        received.headers["webhook-id"]
    ] * 2

    # Revoking the key (after the confirmation) ends it.
    page.goto(f"{served.url}/web/auth/api-keys/{key_id}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke the key").click()
    expect(page.locator(".notices")).to_contain_text("is revoked")
    assert signed_get(served.url, ORDERS, key_id, secret) == 401

    assert errors == [], "a CSP violation or a script error"
    assert set(hosts) == {"127.0.0.1"}


def test_the_developers_forms_work_by_keyboard_and_fit_a_narrow_screen(
    served: Served, page: Page, make_receiver: Callable[..., Receiver]
) -> None:
    email = add_user(served.app, "seller")
    receiver = make_receiver()
    errors, _ = watch(page)
    log_in_through_form(page, served.url, email)
    page.goto(f"{served.url}/web/auth/api-keys")

    page.get_by_label("Name").focus()
    page.keyboard.type("By keyboard")
    page.keyboard.press("Tab")
    assert focused(page) == "scope-1"  # the first scope, after the name
    page.keyboard.press("Space")
    page.keyboard.press("Shift+Tab")
    assert focused(page) == "name"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator(".notices")).to_contain_text("API key “By keyboard” created.")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{served.url}/web/webhook/endpoints/new")
    page.get_by_label("URL").fill(receiver.url)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.get_by_role("button", name="Send a test ping").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    pages = [page.url, f"{served.url}/web/webhook/", f"{served.url}/web/auth/api-keys"]
    for address in pages:
        page.goto(address)
        # Nothing sticks out sideways: wide tables scroll inside their own box.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, address
    assert errors == []


def test_a_double_click_rolls_once_and_shows_the_new_secret(served: Served, page: Page) -> None:
    email = add_user(served.app, "seller")
    errors, _ = watch(page)
    log_in_through_form(page, served.url, email)
    page.goto(f"{served.url}/web/auth/api-keys")
    page.get_by_label("Name").fill("Shop sync")
    page.get_by_role("checkbox", name=re.compile(r"^orders:read")).check()
    with page.expect_navigation():
        page.get_by_role("button", name="Create the key").dblclick()
    expect(page.locator(".notices")).to_contain_text("API key “Shop sync” created.")
    old = page.get_by_label(re.compile(r"^Secret of lpk_")).input_value()
    key_id = page.locator("dl.facts code").first.inner_text()
    page.reload()

    # A confirmation dismissed leaves its form usable.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Revoke the key").click()
    expect(page.get_by_role("button", name="Revoke the key")).to_be_enabled()

    # A form sent is not sent again: its button is disabled (this sending is held in the page).
    page.evaluate("window.addEventListener('submit', (event) => event.preventDefault())")
    page.get_by_role("button", name="Roll the secret").click()
    expect(page.get_by_role("button", name="Roll the secret")).to_be_disabled()
    page.reload()

    with page.expect_navigation():
        page.get_by_role("button", name="Roll the secret").dblclick()
    expect(page.locator(".notices")).to_contain_text("rolled: use the new secret below")
    new = page.get_by_label(re.compile(r"^Secret of lpk_")).input_value()
    assert new != old
    assert signed_get(served.url, ORDERS, key_id, new) == 200
    assert signed_get(served.url, ORDERS, key_id, old) == 200  # in its grace
    page.goto(f"{served.url}/web/auth/api-keys")
    expect(page.locator("tbody tr")).to_have_count(1)  # one key, created once
    assert errors == [], "a CSP violation or a script error"
