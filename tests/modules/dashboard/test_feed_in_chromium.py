"""The dashboard's activity feed in a real Chromium (Debian's, driven by Playwright) against Lapak
served over HTTP with real PostgreSQL and Redis, when its stream does not simply run: it
reconnects by itself after a refusal (a full server's 503) and loses nothing meanwhile; a
session that ends (a login elsewhere, a logout while the feed was reconnecting) sends the page
to the login page with the reason; a feed too far behind for a replay loads the page again."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from app.db import transaction
from app.events import emit
from tests.chromium import serve, watch
from tests.modules.conftest import login
from tests.modules.live.conftest import Sse, open_stream
from tests.modules.live.conftest import person as logged_in
from tests.modules.web.conftest import add_user, log_in_through_form

from .conftest import build_market, order, product

WEB = "/web/dashboard"
#: The reason the login page gives (modules/web/pages.py LOGIN_AGAIN).
LOGGED_IN_ELSEWHERE = "You logged in elsewhere, so this session was ended."
SESSION_ENDED = "Your session was ended. Log in again to continue."


@contextmanager
def lapak(
    make_app: Callable[..., Flask], config: dict[str, Any], **live: str
) -> Iterator[tuple[Flask, str]]:
    """Lapak's own modules served over HTTP with one stream slot and quick live settings."""
    module_env = {
        **config["module_env"],
        "live_heartbeat_seconds": "1",
        "live_session_check_seconds": "1",
        "live_poll_ms": "100",
        **{f"live_{name}": value for name, value in live.items()},
    }
    app = make_app(module_packages=("modules",), web_streams=1, module_env=module_env)
    with serve(app) as url:
        yield app, url


def hold_the_only_slot(app: Flask, url: str) -> Sse:
    """A stream of someone else's holding the server's one stream slot."""
    held = open_stream(url, logged_in(app, "admin"))
    assert held.status == 200
    held.next()
    return held


def open_dashboard(page: Page, url: str, email: str) -> None:
    log_in_through_form(page, url, email)
    assert page.url == f"{url}{WEB}/"
    page.evaluate("window.sameDocument = true")  # gone if the page is loaded again


def reloaded(page: Page, seconds: float = 45) -> None:
    """Wait until the page was loaded again (``window.sameDocument`` gone)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if page.evaluate("window.sameDocument") is None:
                return
        except PlaywrightError:  # navigating: no document to ask
            pass
        assert time.monotonic() < deadline, "the page was not loaded again"
        page.wait_for_timeout(200)


def test_the_feed_reconnects_after_a_full_server_and_loses_nothing(
    make_app: Callable[..., Flask], config: dict[str, Any], page: Page, tmp_path: Path
) -> None:
    with lapak(make_app, config) as (app, url):
        client = app.test_client()
        market = build_market(app, client)
        item = product(app, "37000", market.seller_a)
        errors, hosts = watch(page)
        held = hold_the_only_slot(app, url)
        feed = page.locator("#activity-feed")

        open_dashboard(page, url, add_user(app, "staff"))
        # Refused (503): EventSource gives up; the feed does not.
        expect(feed.locator("#feed-state")).to_have_text("Reconnecting…")
        feed.screenshot(path=str(tmp_path / "feed-reconnecting.png"))
        placed = order(client, market.buyer, [(item, "2")])  # while the feed is away
        held.close()  # the slot is free again once the server writes to it

        expect(feed.locator("#feed-state")).to_have_text("Live", timeout=45_000)
        line = feed.get_by_role("listitem").filter(has_text=placed["order"]["number"])
        expect(line).to_contain_text("Order placed", timeout=15_000)
        assert page.evaluate("window.sameDocument") is True  # no reload
        later = order(client, market.buyer, [(item, "1")])  # and it goes on live
        expect(
            feed.get_by_role("listitem").filter(has_text=later["order"]["number"])
        ).to_contain_text("Order placed", timeout=15_000)

    # The browser logs the refused EventSource request itself; nothing else may fail.
    assert [e for e in errors if "503" not in e and "event-stream" not in e] == []
    assert set(hosts) == {"127.0.0.1"}


def test_a_login_elsewhere_sends_the_open_dashboard_to_the_login_page_with_the_reason(
    make_app: Callable[..., Flask], config: dict[str, Any], page: Page, tmp_path: Path
) -> None:
    with lapak(make_app, config) as (app, url):
        email = add_user(app, "staff")
        open_dashboard(page, url, email)
        expect(page.locator("#feed-state")).to_have_text("Live")

        assert login(app.test_client(), email).status_code == 200  # through the API

        expect(page).to_have_url(re.compile(r"/web/login\?next=/web/dashboard/"), timeout=15_000)
        expect(page.get_by_text(LOGGED_IN_ELSEWHERE)).to_be_visible()
        page.screenshot(path=str(tmp_path / "login-again.png"))


def test_a_session_ended_while_the_feed_reconnects_sends_it_to_the_login_page(
    make_app: Callable[..., Flask], config: dict[str, Any], page: Page
) -> None:
    with lapak(make_app, config) as (app, url):
        email = add_user(app, "staff")
        held = hold_the_only_slot(app, url)
        open_dashboard(page, url, email)
        expect(page.locator("#feed-state")).to_have_text("Reconnecting…")

        page_session = next(
            c for c in page.context.cookies() if c["name"].endswith("lapak_session")
        )
        token = {"Authorization": f"Bearer {page_session['value']}"}
        logout = app.test_client().post("/api/v1/auth/logout", headers=token)
        assert logout.status_code == 204
        held.close()

        # Its next try is a 401: the page goes to the login page, which says why.
        expect(page).to_have_url(re.compile(r"/web/login\?next=/web/dashboard/"), timeout=45_000)
        expect(page.get_by_text(SESSION_ENDED)).to_be_visible()


def test_a_feed_too_far_behind_for_a_replay_loads_the_page_again(
    make_app: Callable[..., Flask], config: dict[str, Any], page: Page
) -> None:
    with lapak(make_app, config, replay_max_events="5") as (app, url):
        held = hold_the_only_slot(app, url)
        open_dashboard(page, url, add_user(app, "staff"))
        expect(page.locator("#feed-state")).to_have_text("Reconnecting…")
        with app.app_context(), transaction():
            for n in range(10):  # more than a replay goes back, while the feed is away
                emit("live.probe", {"n": n})
        held.close()

        reloaded(page)
        expect(page.locator("#feed-state")).to_have_text("Live", timeout=15_000)
        assert page.url.startswith(f"{url}{WEB}/")
