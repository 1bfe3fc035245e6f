"""The dashboard's activity feed in a real Chromium against ``lapak serve`` as production runs
it, where the stream process serves the feed: the browser's cookie session and the page's rules
are checked by a worker, the stream written by the stream process, and a login elsewhere still
sends the page to the login page with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.app.test_serve import serve, stop
from tests.chromium import watch
from tests.modules.conftest import PASSWORD
from tests.modules.web.conftest import submit_login

from .test_serving import SETTINGS, demo_admin, log_in, stream_process

#: The reason the login page gives (modules/web/pages.py LOGIN_AGAIN).
LOGGED_IN_ELSEWHERE = "You logged in elsewhere, so this session was ended."


@pytest.mark.slow
def test_the_dashboard_feed_is_live_through_the_stream_process_of_lapak_serve(
    tmp_path: Path, page: Page
) -> None:
    process, base = serve(tmp_path, **SETTINGS, live_session_check_seconds="1")
    try:
        stream_process(process)  # served by it, not by a worker's threads
        email, password = demo_admin(tmp_path)
        admin = log_in(base, email, password)
        buyer = {"email": "feed.buyer@example.test", "role": "customer", "password": PASSWORD}
        made = requests.post(f"{base}/api/v1/users", json=buyer, headers=admin.headers, timeout=30)
        assert made.status_code == 201, made.text
        customer = log_in(base, buyer["email"], PASSWORD)
        products = requests.get(
            f"{base}/api/v1/marketplace/products", headers=customer.headers, timeout=30
        )
        assert products.status_code == 200, products.text
        item = next(p["id"] for p in products.json()["items"] if p["active"])
        errors, hosts = watch(page)

        page.goto(f"{base}/web/login")
        submit_login(page, email, password)
        assert page.url == f"{base}/web/dashboard/"
        feed = page.locator("#activity-feed")
        expect(feed.locator("#feed-state")).to_have_text("Live", timeout=20_000)
        page.evaluate("window.sameDocument = true")  # gone if the page is loaded again

        body = {"lines": [{"product": item, "quantity": "1"}], "payment": {"provider": "demo"}}
        placed = requests.post(
            f"{base}/api/v1/marketplace/orders", json=body, headers=customer.headers, timeout=30
        )
        assert placed.status_code == 201, placed.text
        number = placed.json()["order"]["number"]
        line = feed.get_by_role("listitem").filter(has_text=number)
        expect(line).to_contain_text("Order placed", timeout=15_000)
        assert page.evaluate("window.sameDocument") is True  # no reload

        log_in(base, email, password)  # the admin, elsewhere
        page.wait_for_url(f"{base}/web/login**", timeout=20_000)
        expect(page.get_by_text(LOGGED_IN_ELSEWHERE)).to_be_visible()
    finally:
        output = stop(process)

    assert errors == []
    assert set(hosts) == {"127.0.0.1"}
    assert "Traceback" not in output, output
