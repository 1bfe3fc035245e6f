"""How ``/web/`` pages answer, beyond the browser's session (``test_session.py``): programs (API
keys), domain errors of any kind, outages, and data handed to scripts; against real PostgreSQL
and Redis."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from flask import Flask, render_template
from flask.testing import FlaskClient

from tests.modules.auth.test_api_keys import create_key, signed
from tests.modules.conftest import Caller


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
