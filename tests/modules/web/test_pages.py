"""How ``/web/`` pages answer callers and refusals that are not a browser's session: programs
(API keys), domain errors of any kind, outages; against real PostgreSQL and Redis."""

from __future__ import annotations

import pytest
from flask import Flask
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
