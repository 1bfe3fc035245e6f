"""The pages a newcomer opens, in a real Chromium (Debian's ``chromium``, driven by Playwright).

A test client cannot tell whether a browser applies the landing page's style under its strict
Content-Security-Policy, or whether the API docs fetch anything from outside: a browser can.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from app import create_app
from tests.app.fake_modules import embedded_config
from tests.chromium import chromium, serve, watch


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """Lapak on the embedded default, over real HTTP on a free loopback port."""
    app = create_app(embedded_config(tmp_path))
    try:
        with serve(app) as url:
            yield url
    finally:
        app.extensions["lapak.db"].dispose()


@pytest.fixture
def page() -> Iterator[Page]:
    with chromium() as browser:
        yield browser.new_page()


def test_the_landing_page_is_styled_under_its_csp_and_its_links_work(
    served: str, page: Page
) -> None:
    errors, hosts = watch(page)

    page.goto(f"{served}/")

    assert page.title() == "Lapak"
    assert page.locator("h1").inner_text() == "Lapak"
    # The inline style is allowed by its hash alone: were the hash wrong, the browser would
    # refuse it (a console error) and fall back to its default serif font.
    font = page.evaluate("getComputedStyle(document.body).fontFamily")
    assert "system-ui" in font
    modules = [
        *("user", "auth", "audit", "fetch", "ledger", "marketplace", "payment", "seller"),
        *("dashboard", "graphql", "webhook", "live", "paylink", "wallet", "web"),
    ]
    assert page.locator("td code").all_inner_texts() == modules
    assert page.get_by_role("link", name="Web client").get_attribute("href") == "/web/"

    page.get_by_role("link", name="Loaded modules").click()
    page.wait_for_url(f"{served}/api/v1/modules")
    assert '"marketplace"' in page.content()
    assert errors == []
    assert set(hosts) == {"127.0.0.1"}


def test_the_api_docs_render_offline_from_vendored_assets(served: str, page: Page) -> None:
    errors, hosts = watch(page)

    page.goto(f"{served}/api/v1/docs")

    title = page.locator(".swagger-ui .info .title")
    title.wait_for(timeout=30_000)
    assert title.inner_text().startswith("Lapak")
    page.locator(".opblock-tag", has_text="marketplace").first.wait_for()
    assert set(hosts) == {"127.0.0.1"}, "the docs must not fetch anything from outside"
    assert errors == []
