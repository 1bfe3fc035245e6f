"""How ``/web/`` pages answer, beyond the browser's session (``test_session.py``): programs (API
keys), domain errors of any kind, outages, and data handed to scripts; against real PostgreSQL
and Redis."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import Flask, render_template
from flask.testing import FlaskClient

from app import create_app
from app.migrate import upgrade
from app.registry import RegistryError
from tests.app.fake_modules import embedded_config, fake_module_packages, manifest_source
from tests.modules.auth.test_api_keys import create_key, signed
from tests.modules.conftest import PASSWORD, Caller
from tests.modules.web.conftest import csrf_of, hidden_token, note_titles
from tests.modules.web.test_session import NOTES, logged_in
from tests.servers import Services


@pytest.fixture
def unpropagated(app: Flask) -> Flask:
    """The app as served: an exception escaping a handler is a 500, not raised in the test."""
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app


@pytest.mark.parametrize("path", ["/web/", "/web/desk/chart"])
def test_an_api_key_on_a_web_page_is_refused_with_a_page_not_a_500(
    unpropagated: Flask, client: FlaskClient, admin: Caller, path: str
) -> None:
    key = create_key(client, admin, ["orders:read"])

    response = signed(client, key, "GET", path)

    assert response.status_code == 403
    assert response.mimetype == "text/html"
    assert 'data-problem="scope-missing"' in response.text
    assert 'name="csrf_token"' not in response.text  # a program has no session, no token
    assert admin.email not in response.text  # nor a menu or an account


class Attributes(HTMLParser):
    """The attributes of every element with an id, as a browser reads them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if named.get("id"):
            self.by_id[str(named["id"])] = named


def test_data_for_a_script_stays_inside_its_attribute(app: Flask) -> None:
    """The desk's chart is the pattern screens copy: ``tojson`` in a single-quoted attribute."""
    points = [[1, 2], ['" onmouseover="alert(1)', "it's </div><b>"]]

    with app.test_request_context("/web/desk/chart"):
        html = render_template("desk/chart.html", points=points)

    chart = Attributes(html).by_id["chart"]
    assert set(chart) == {"id", "data-points"}
    assert json.loads(chart["data-points"] or "") == points
    assert "<b>" not in html


# --- refusals and outages are pages --------------------------------------------------------------


def test_a_domain_error_on_a_screen_is_a_page_with_its_status(either_app: Flask) -> None:
    client, _ = logged_in(either_app)
    refused_title = {"title": "rollback this", "csrf_token": csrf_of(client)}

    page = client.post(NOTES, data=refused_title)
    asked_json = client.post(NOTES, data=refused_title, headers={"Accept": "application/json"})

    assert page.status_code == 400
    assert page.mimetype == "text/html"
    assert 'data-problem="refused-title"' in page.text
    assert "titles starting with rollback are refused" in page.text
    assert ">Notes</a>" in page.text  # the layout, with the menu
    assert asked_json.status_code == 400
    assert asked_json.json["type"] == "urn:lapak:problem:refused-title"
    assert note_titles(either_app) == []


def test_a_refused_htmx_request_gets_a_notice_for_the_notices_area(app: Flask) -> None:
    client, _ = logged_in(app)

    response = client.post(NOTES + "fragment", headers={"HX-Request": "true"})

    assert response.status_code == 403
    assert response.headers["HX-Retarget"] == "#notices"
    assert response.headers["HX-Reswap"] == "innerHTML"
    assert response.text.startswith('<p class="notice notice-error" role="alert"')
    assert 'data-problem="csrf-missing"' in response.text
    assert "This change was refused" in response.text
    assert "<html" not in response.text


def test_logout_by_get_is_a_page_saying_it_does_not_open_that_way(app: Flask) -> None:
    client, _ = logged_in(app)

    response = client.get("/web/logout")

    assert response.status_code == 405
    assert response.mimetype == "text/html"
    assert "POST" in response.headers["Allow"]
    assert "use the page&#39;s links and buttons" in response.text
    assert client.get(NOTES).status_code == 200  # still logged in


def test_the_database_down_is_a_503_page_and_the_login_form_again(
    make_app: Callable[..., Flask], own_replica: Services
) -> None:
    app = make_app(replica_urls=())
    client, email = logged_in(app)
    token = csrf_of(client)
    elsewhere = app.test_client()
    form = elsewhere.get("/web/login")
    own_replica.primary.stop()
    try:
        screen = client.post(NOTES, data={"title": "during", "csrf_token": token})
        login = elsewhere.post(
            "/web/login",
            data={"email": email, "password": PASSWORD, "csrf_token": hidden_token(form.text)},
        )
    finally:
        own_replica.primary.start()

    assert screen.status_code == 503
    assert screen.mimetype == "text/html"
    assert int(screen.headers["Retry-After"]) > 0
    assert 'data-problem="database-unavailable"' in screen.text
    assert login.status_code == 503
    assert int(login.headers["Retry-After"]) > 0
    assert "Logging in is not possible right now" in login.text
    assert f'value="{email}"' in login.text
    assert 'name="password"' in login.text
    assert client.get(NOTES).status_code == 200  # and back when the database is


# --- the menu -------------------------------------------------------------------------------------

KIOSK_SCREENS = """
from flask import Blueprint

screens = Blueprint("kiosk_screens", __name__)


@screens.get("/<int:number>")
def stand(number: int) -> str:
    return str(number)
"""


@pytest.mark.parametrize(
    ("endpoint", "refusal"),
    [
        ("kiosk_screens.stand", "whose address needs arguments"),
        ("kiosk_screens.nowhere", "which no screen serves"),
    ],
)
def test_a_menu_entry_that_cannot_link_refuses_to_start(
    tmp_path: Path, endpoint: str, refusal: str
) -> None:
    """Caught at start, not as a 500 on every page (each one shows the menu)."""
    load = f"""
        from app.registry import MenuEntry


        def load(hooks):
            from . import screens

            hooks.screens(screens.screens, MenuEntry("Stand", {endpoint!r}))
    """
    kiosk = {
        "__init__.py": manifest_source("kiosk", depends=("web",), body=load),
        "screens.py": KIOSK_SCREENS,
    }
    with fake_module_packages(tmp_path / "packages") as packages:
        package = packages.package({"kiosk": kiosk})

        refused = f"'Stand' names the endpoint '{endpoint}', {refusal}"
        with pytest.raises(RegistryError, match=refused):
            create_app(embedded_config(tmp_path, module_packages=("modules", package)))


KIOSK_SECTIONS = """
from flask import Blueprint, render_template_string

from modules.web import screen

screens = Blueprint("kiosk_screens", __name__)


def page(**_: int) -> str:
    return render_template_string('{% extends "web/layout.html" %}')


for rule, endpoint in (
    ("/", "stands"),
    ("/<int:number>", "stand"),
    ("/specials", "specials"),
    ("/specials/<int:number>", "special"),
):
    screens.add_url_rule(rule, endpoint, screen()(page))
"""
CURRENT_ENTRY = re.compile(r'<a href="[^"]*" aria-current="([^"]+)">([^<]+)</a>')


def marked_entries(page: str) -> dict[str, str]:
    """The menu's entries marked current on ``page``: label -> ``aria-current``."""
    return {label: current for current, label in CURRENT_ENTRY.findall(page)}


def test_the_menu_marks_the_entry_of_the_screen_or_of_the_list_the_screen_is_under(
    tmp_path: Path,
) -> None:
    """A stand's page (``/web/kiosk/7``) is under Stands (``/web/kiosk/``), as an order's is under
    Orders; Specials (``/web/kiosk/specials``) is an entry of its own, whose address is under
    Stands': its screens mark Specials alone."""
    load = """
        from app.registry import MenuEntry


        def load(hooks):
            from . import screens

            hooks.screens(
                screens.screens,
                MenuEntry("Stands", "kiosk_screens.stands", order=2),
                MenuEntry("Specials", "kiosk_screens.specials", order=3),
            )
    """
    kiosk = {
        "__init__.py": manifest_source("kiosk", depends=("web",), body=load),
        "screens.py": KIOSK_SECTIONS,
    }
    with fake_module_packages(tmp_path / "packages") as packages:
        package = packages.package({"kiosk": kiosk})
        app = create_app(
            embedded_config(tmp_path, module_packages=("modules", "tests.sample_modules", package))
        )
        upgrade(app.extensions["lapak.settings"])
        client, _ = logged_in(app, "staff")
        paths = ("/web/kiosk/", "/web/kiosk/7", "/web/kiosk/specials", "/web/kiosk/specials/3")
        marked = {
            path: marked_entries(client.get(path).text) for path in (*paths, "/web/desk/chart")
        }

    assert marked == {
        "/web/kiosk/": {"Stands": "page"},
        "/web/kiosk/7": {"Stands": "true"},
        "/web/kiosk/specials": {"Specials": "page"},
        "/web/kiosk/specials/3": {"Specials": "true"},
        "/web/desk/chart": {"Chart": "page"},  # not Notes, though /web/desk/ is its address
    }
