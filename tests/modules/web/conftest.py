"""Fixtures of the web client's tests, for the shell's and for the screens that build on it.

* ``served``: the test's app (real PostgreSQL and Redis) over real HTTP on 127.0.0.1, and
  ``served_embedded``: the embedded default (SQLite, no Redis) the same way.
* ``browser`` (a headless Debian Chromium) and ``page`` (a fresh page in its own context);
  ``browser.new_context()`` is a second, separate browser (its own cookies).
* :func:`log_in_through_form` for Chromium, :func:`web_login` and :func:`csrf_of` for the test
  client; :func:`add_user` creates a user in any app.

The sample module ``tests/sample_modules/desk`` adds screens to every test app: Notes (staff
and admins; a form and an htmx button that add a note), Audit desk (admins) and Chart
(everyone; the vendored uPlot).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, Page
from sqlalchemy import select
from werkzeug.test import TestResponse

from app.db import Base, Session
from modules.user.services import create_user
from tests.chromium import chromium, serve
from tests.modules.conftest import PASSWORD
from tests.sample_modules.notes.models import Note

_emails = itertools.count()
_HIDDEN_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class Served:
    """An app served over HTTP: ``url`` is its base (``http://127.0.0.1:<port>``)."""

    url: str
    app: Flask


def add_user(app: Flask, role: str = "staff", email: str | None = None) -> str:
    """Create an active user with :data:`PASSWORD` in ``app``; returns the email."""
    email = email or f"web.{role}.{next(_emails)}@example.test"
    with app.app_context():
        create_user(email, role=role, password=PASSWORD, name=f"Web {role.title()}")
    return email


def note_titles(app: Flask) -> list[str]:
    """The sample notes' titles, in the order they were added (what the desk's screens add)."""
    with app.app_context():
        Session.remove()
        return list(Session().scalars(select(Note.title).order_by(Note.id)))


def with_sample_tables(app: Flask) -> Flask:
    """The sample notes module's tables in an embedded app's database (migrations do not
    know test modules; the harness creates them on PostgreSQL)."""
    engine = app.extensions["lapak.db"].primary
    Base.metadata.create_all(
        engine, tables=[t for n, t in Base.metadata.tables.items() if n.startswith("notes_")]
    )
    return app


@pytest.fixture
def embedded_app(make_embedded_app: Callable[..., Flask]) -> Flask:
    return with_sample_tables(make_embedded_app())


@pytest.fixture(params=["postgresql", "sqlite"])
def either_app(request: pytest.FixtureRequest) -> Flask:
    """The harness's app (PostgreSQL and Redis), then the embedded default."""
    return request.getfixturevalue("app" if request.param == "postgresql" else "embedded_app")


@pytest.fixture
def served(app: Flask) -> Iterator[Served]:
    with serve(app) as url:
        yield Served(url, app)


@pytest.fixture
def served_embedded(embedded_app: Flask) -> Iterator[Served]:
    with serve(embedded_app) as url:
        yield Served(url, embedded_app)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Page:
    return browser.new_context().new_page()


def log_in_through_form(page: Page, base_url: str, email: str, password: str = PASSWORD) -> None:
    """Open the login page, fill the form and submit it; waits for the page it leads to."""
    page.goto(f"{base_url}/web/login")
    submit_login(page, email, password)


def submit_login(page: Page, email: str, password: str = PASSWORD) -> None:
    """Fill and submit the login form the page shows; waits for the page it leads to."""
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()


def hidden_token(html: str) -> str:
    """The ``csrf_token`` hidden field's value on a page."""
    found = _HIDDEN_TOKEN.search(html)
    assert found, "the page has no csrf_token field"
    return found.group(1)


def web_login(
    client: FlaskClient, email: str, password: str = PASSWORD, next_page: str | None = None
) -> TestResponse:
    """Log ``client`` in through the login form (its own token included), as a browser does."""
    form = client.get("/web/login")
    assert form.status_code == 200
    fields = {"email": email, "password": password, "csrf_token": hidden_token(form.text)}
    if next_page is not None:
        fields["next"] = next_page
    return client.post("/web/login", data=fields)


def csrf_of(client: FlaskClient) -> str:
    """The CSRF token of ``client``'s browser session, read from a page as a browser does."""
    page = client.get("/web/desk/chart")
    assert page.status_code == 200, page.headers.get("Location")
    return hidden_token(page.text)
