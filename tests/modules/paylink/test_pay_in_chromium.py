"""A seller's invoice paid through its payment link in a real Chromium, end to end: a verified
seller issues an invoice to a payer without an account and makes its link, the payer (no
account, no login) opens it, pays with the demo gateway on its
hosted page, comes back to the link's page and sees it paid. The invoice is paid, the ledger
balances, the seller's pending balance grew by their share, and the seller's webhook endpoint
received the link's events, signed. The page's screenshot is the README's."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser

from tests.chromium import serve, watch
from tests.conftest import run_jobs, wait_for_replica
from tests.modules.conftest import Caller
from tests.modules.payment.conftest import assert_ledger_consistent
from tests.modules.web.conftest import browser  # noqa: F401 - fixture
from tests.modules.webhook.conftest import (  # noqa: F401 - fixture
    Receiver,
    create_endpoint,
    make_receiver,
    signed_by,
)
from tests.servers import Services

from .conftest import Invoice, made, ok, sql

SCREENSHOT = Path(__file__).parents[3] / "docs" / "screenshots" / "pay.png"
#: The seller's share of a 10,000 IDR line at the default 5 % commission.
SHARE = Decimal("9500.00")


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    """Webhooks may reach the test's receiver on 127.0.0.1 (the fetch module's own switch)."""
    config["module_env"] = {**config["module_env"], "fetch_allow_loopback": "true"}
    return config


def pending(client: FlaskClient, services: Services, seller: Caller) -> Decimal:
    wait_for_replica(services)
    return Decimal(ok(client.get("/api/v1/sellers/me/balance", headers=seller.headers))["pending"])


def test_a_payer_without_an_account_pays_an_invoice_through_its_link(
    app: Flask,
    client: FlaskClient,
    issuer: Caller,
    make_receiver: Callable[..., Receiver],  # noqa: F811 - the fixture imported above
    browser: Browser,  # noqa: F811 - the fixture imported above
    services: Services,
    request: pytest.FixtureRequest,
) -> None:
    seller = issuer
    ok(client.patch("/api/v1/sellers/me", json={"display_name": "Toko Bandeng Segar"},
                    headers=seller.headers))  # fmt: skip
    run_jobs(app)  # earlier events go before the seller's endpoint exists
    receiver = make_receiver()
    endpoint = create_endpoint(
        client, seller, receiver.url, event_types=["payment_link.created", "payment_link.paid"]
    )
    invoice: Invoice = request.getfixturevalue("own_invoice")  # 10,000 + 11% PPN
    before = pending(client, services, seller)
    link = made(client, seller, invoice.id)

    with serve(app) as base:
        payer = browser.new_context(viewport={"width": 760, "height": 560})
        page = payer.new_page()
        errors, hosts = watch(page)
        page.goto(base + link["path"])
        assert page.locator("h1").inner_text() == f"Invoice {invoice.number}"
        assert page.locator("#status").inner_text() == "Awaiting payment"
        # The page's own style applies under its CSP (a refused style would be a console error).
        assert "system-ui" in page.evaluate("getComputedStyle(document.body).fontFamily")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        # No method is chosen for the payer: the browser asks for one before anything is sent.
        page.get_by_role("button", name="Pay 11,100.00 IDR").click()
        assert page.url == base + link["path"]
        assert not page.get_by_label("Manual bank transfer").is_checked()
        page.get_by_label("Demo gateway").check()
        with page.expect_navigation():
            page.get_by_role("button", name="Pay 11,100.00 IDR").click()
        assert "/pay/demo/" in page.url
        assert page.locator("h1").inner_text() == "Demo gateway"
        assert page.get_by_label("Save this card").count() == 0  # a guest saves no card
        page.get_by_label("Success", exact=True).check()
        with page.expect_navigation():
            page.get_by_role("button", name="Pay").click()
        assert "/pay/return/" in page.url
        assert page.locator("#status").inner_text() == "Payment processing"

        run_jobs(app)  # the gateway notifies Lapak over HTTP; the page reloads by itself
        page.locator("#status", has_text="Paid").wait_for(timeout=20_000)
        page.goto(base + link["path"])  # the link's own page, for this browser: paid
        assert page.locator("#status").inner_text() == "Paid"
        assert page.locator("form").count() == 0
        assert errors == []
        assert set(hosts) == {"127.0.0.1"}

        stranger = browser.new_context().new_page()
        assert stranger.goto(base + link["path"]).status == 404  # used: gone for anyone else

        for _ in range(3):  # the outbox, then the webhook sends it queued
            run_jobs(app)

    ((payment_state, residual),) = sql(
        services,
        "SELECT payment_state, amount_residual FROM marketplace_account_move WHERE uuid = %s",
        invoice.id,
    )
    assert (payment_state, residual) == ("paid", 0)
    assert_ledger_consistent(app)
    assert pending(client, services, seller) - before == SHARE

    bodies = [json.loads(received.body) for received in receiver.received]
    assert [body["type"] for body in bodies] == ["payment_link.created", "payment_link.paid"]
    assert all(signed_by(endpoint["secret"], received) for received in receiver.received)
    assert bodies[1]["data"]["payment_link"] == link["id"]
    assert bodies[1]["data"]["invoice"] == invoice.id
    assert link["path"].removeprefix("/pay/") not in str(bodies)
