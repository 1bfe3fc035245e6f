"""What the tests of the money screens (the ledger's and the sellers') share: users logged in
through the API or through the web login form, money put on a seller's available balance by a
staff adjustment (the ledger's API), and what a page shows."""

from __future__ import annotations

import html
import itertools
import re
import uuid
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from modules.user.services import create_user
from tests.modules.conftest import PASSWORD, Caller, login
from tests.modules.web.conftest import add_user, web_login

from .conftest import post_tx

_numbers = itertools.count()
_NOTICE = re.compile(r'<p class="notice notice-(\w+)"[^>]*>(.*?)</p>', re.S)
_TAG = re.compile(r"<[^>]+>")


def api_caller(app: Flask, client: FlaskClient, role: str) -> Caller:
    """A new user with ``role``, logged in through the API on ``client`` (a login through the
    web form later ends this session: one session per user)."""
    email = f"api.{role}.{next(_numbers)}@example.test"
    with app.app_context():
        user = create_user(email, role=role, password=PASSWORD, name=f"Api {role.title()}")
        user_id, user_uuid = user.id, user.uuid
    response = login(client, email)
    assert response.status_code == 200, response.get_json()
    return Caller(email, user_uuid, user_id, response.get_json()["access_token"])


def browser_of(app: Flask, email: str) -> FlaskClient:
    """A test client logged in as ``email`` through the web login form, as a browser is."""
    client = app.test_client()
    response = web_login(client, email)
    assert response.status_code == 303, response.text
    return client


def web_user(app: Flask, role: str) -> FlaskClient:
    """A browser logged in as a new user with ``role``."""
    return browser_of(app, add_user(app, role))


def adjust(
    client: FlaskClient,
    staff: Caller,
    seller: uuid.UUID,
    amount: str,
    currency: str = "IDR",
) -> dict[str, Any]:
    """Put ``amount`` on the seller's available balance: an ``ADJUSTMENT`` through the API."""
    legs = [
        {"purpose": "manual_clearing", "debit": amount},
        {"purpose": "seller_available", "holder": str(seller), "credit": amount},
    ]
    body = {"operation": "ADJUSTMENT", "nonce": f"screens-{next(_numbers)}",
            "currency": currency, "legs": legs}  # fmt: skip
    response = post_tx(client, staff, body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def api_get(client: FlaskClient, caller: Caller, path: str, **query: Any) -> Any:
    response = client.get(path, query_string=query, headers=caller.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def figure(page: TestResponse | str, element_id: str) -> str:
    """The figure in the element with ``element_id`` (``9500.00`` of ``9500.00 IDR``)."""
    text = page if isinstance(page, str) else page.text
    found = re.search(rf'id="{element_id}"[^>]*>\s*(-?[0-9]+\.[0-9]+)', text)
    assert found, f"no figure #{element_id} on the page"
    return found.group(1)


def notices(page: TestResponse) -> list[tuple[str, str]]:
    """The page's notices (flashed and inline): (category, text)."""
    return [
        (category, " ".join(html.unescape(_TAG.sub("", text)).split()))
        for category, text in _NOTICE.findall(page.text)
    ]


def text_of(page: TestResponse) -> str:
    """The page's text without tags, entities read, spaces collapsed."""
    return " ".join(html.unescape(_TAG.sub(" ", page.text)).split())
