"""``/``: the page a newcomer sees, and the links on it that must all answer."""

from __future__ import annotations

import re
from pathlib import Path

from app import create_app
from app.migrate import upgrade
from tests.app.fake_modules import embedded_config, fake_module_packages


def test_the_landing_page_names_lapak_and_links_to_what_exists(tmp_path: Path) -> None:
    app = create_app(embedded_config(tmp_path))
    upgrade(app.extensions["lapak.settings"])  # the web client's login page writes audit rows
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
        "/web/",
        "/api/v1/docs",
        "/api/v1/openapi.json",
        "/health/ready",
        "/api/v1/modules",
    ]
    assert "<code>lapak demo</code>" in page.text
    for link in links:
        assert client.get(link, follow_redirects=True).status_code == 200, link
    app.extensions["lapak.db"].dispose()


def test_the_landing_page_links_the_web_client_only_when_a_module_serves_it(
    tmp_path: Path,
) -> None:
    app = create_app(embedded_config(tmp_path, modules=("user", "auth")))

    page = app.test_client().get("/")

    assert page.status_code == 200
    assert re.findall(r'href="([^"]+)"', page.text)[0] == "/api/v1/docs"
    assert "/web/" not in page.text
    app.extensions["lapak.db"].dispose()


def test_module_text_on_the_landing_page_is_escaped(tmp_path: Path) -> None:
    with fake_module_packages(tmp_path / "packages") as packages:
        package = packages.package(
            {
                "memo": "from app.registry import Manifest\n"
                "manifest = Manifest(name='memo', version='1.0.0', "
                "summary='<script>alert(1)</script> & more')\n"
            }
        )
        app = create_app(embedded_config(tmp_path, module_packages=(package,)))

        page = app.test_client().get("/")

    assert "<script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page.text
    app.extensions["lapak.db"].dispose()
