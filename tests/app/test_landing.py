"""``/``: the page a newcomer sees, and the links on it that must all answer."""

from __future__ import annotations

import re
from pathlib import Path

from app import create_app
from tests.app.fake_modules import embedded_config


def test_the_landing_page_names_lapak_and_links_to_what_exists(tmp_path: Path) -> None:
    app = create_app(embedded_config(tmp_path))
    client = app.test_client()

    page = client.get("/")

    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none';")
    assert "<script" not in page.text
    assert "Lapak" in page.text
    for module in ("auth", "fetch", "marketplace", "user"):
        assert f"<code>{module}</code>" in page.text
    links = re.findall(r'href="([^"]+)"', page.text)
    assert links == [
        "/api/v1/docs",
        "/api/v1/openapi.json",
        "/health/ready",
        "/api/v1/modules",
    ]
    for link in links:
        assert client.get(link, follow_redirects=True).status_code == 200, link
    app.extensions["lapak.db"].dispose()
