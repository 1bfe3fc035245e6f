"""The API keys screens of the web client (Developers), through the test client against real
PostgreSQL and Redis (and the embedded default where marked): who may open them, a key created
with its secret shown once and working, roll and revoke, refusals that change nothing, CSRF,
and the same keys as the REST API shows."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from app import clock
from app.db import Session
from modules.auth.api_keys import MAX_LIVE_KEYS
from modules.auth.models import ApiKey
from modules.user.models import User
from tests.modules.auth.test_api_keys import ORDERS, Key, signed
from tests.modules.conftest import bearer, login
from tests.modules.web.conftest import add_user, hidden_token, web_login

KEYS_PAGE = "/web/auth/api-keys"
KEYS_API = "/api/v1/auth/api-keys"
SECRET = re.compile(r"lsk_[A-Za-z0-9_-]{20,}")
KEY_ID = re.compile(r"lpk_[A-Za-z0-9_-]{10,}")


# --- reading pages (shared with the webhook screens' tests) ----------------------------------


class _Cells(HTMLParser):
    """The text of each ``tbody`` row's cells, and the text of the page's ``main``."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.main: list[str] = []
        self._cell: list[str] | None = None
        self._in_body = self._in_main = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "main":
            self._in_main = True
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag in ("td", "th") and self._in_body:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "main":
            self._in_main = False
        elif tag == "tbody":
            self._in_body = False
        elif tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_main:
            self.main.append(data)


def table_rows(html: str) -> list[list[str]]:
    """Every body row of the page's tables, as the text of its cells."""
    parser = _Cells()
    parser.feed(html)
    return parser.rows


def main_text(html: str) -> str:
    """The page's ``main`` as a person reads it (whitespace collapsed)."""
    parser = _Cells()
    parser.feed(html)
    return " ".join("".join(parser.main).split())


def notices(html: str) -> list[str]:
    """The layout's flashed notices."""
    return [" ".join(n.split()) for n in re.findall(r'<p class="notice[^"]*">(.*?)</p>', html)]


def problem_code(response: TestResponse) -> str | None:
    found = re.search(r'data-problem="([^"]+)"', response.text)
    return found.group(1) if found else None


def browser_of(app: Flask, role: str) -> tuple[FlaskClient, str]:
    """A test client logged in through the web login form as a new user with ``role``."""
    client = app.test_client()
    email = add_user(app, role)
    response = web_login(client, email)
    assert response.status_code == 303, response.text
    return client, email


def post_form(client: FlaskClient, path: str, page: str, **fields: Any) -> TestResponse:
    """Post a form of ``page`` (the path it is on) with the page's CSRF token."""
    token = hidden_token(client.get(page).text)
    return client.post(path, data={"csrf_token": token, **fields})


def flask_session(app: Flask, client: FlaskClient) -> str:
    """What the browser's Flask session cookie holds (the notices), decoded."""
    cookie = client.get_cookie("lapak_web", path="/web")
    if cookie is None:
        return ""
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    return repr(serializer.loads(cookie.value))


def api_caller(app: Flask, email: str) -> dict[str, str]:
    """Bearer headers of ``email`` (a login: the browser's session of that user ends)."""
    response = login(app.test_client(), email)
    assert response.status_code == 200
    return bearer(response.get_json()["access_token"])


# --- API keys ------------------------------------------------------------------------------


def keys_of(app: Flask, email: str) -> list[ApiKey]:
    with app.app_context():
        Session.remove()
        owner = select(User.id).where(User.email == email).scalar_subquery()
        found = Session().scalars(select(ApiKey).where(ApiKey.user_id == owner)).all()
        return sorted(found, key=lambda k: k.id)


def create(client: FlaskClient, **fields: Any) -> TestResponse:
    fields = {"name": "Shop sync", "scopes": ["orders:read"], **fields}
    return post_form(client, KEYS_PAGE, KEYS_PAGE, **fields)


def hidden_value(html: str, name: str) -> str:
    """The value of the page's hidden field ``name``."""
    found = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)">', html)
    assert found, f"the page has no {name} field"
    return found.group(1)


def issued(response: TestResponse) -> Key:
    """The key id and the secret the answer shows."""
    assert response.status_code in (200, 201), response.text
    secrets = set(SECRET.findall(response.text))
    assert len(secrets) == 1, secrets
    return Key(KEY_ID.search(response.text).group(0), secrets.pop())  # type: ignore[union-attr]


def test_a_seller_creates_a_key_sees_its_secret_once_and_it_signs_requests(app: Flask) -> None:
    client, email = browser_of(app, "seller")
    form = client.get(KEYS_PAGE)
    assert form.status_code == 200
    assert 'value="orders:read"' in form.text
    assert 'value="orders:write"' not in form.text  # an admin's scope only
    assert "You have no API keys yet." in main_text(form.text)

    answer = create(client, name="Shop sync", scopes=["orders:read", "payments:read"])
    assert answer.status_code == 201
    assert answer.headers["Cache-Control"] == "no-store"
    assert "Location" not in answer.headers
    key = issued(answer)
    assert "API key “Shop sync” created." in notices(answer.text)
    assert f'data-reload-url="/web/auth/api-keys/{key.id}"' in answer.text

    [stored] = keys_of(app, email)
    assert (stored.key_id, stored.name, stored.scopes) == (
        key.id,
        "Shop sync",
        "orders:read payments:read",
    )
    assert signed(app.test_client(), key, "GET", ORDERS).status_code == 200

    # Never again: not on the key's page, not in the list, not in the session cookie.
    for page in (client.get(f"{KEYS_PAGE}/{key.id}"), client.get(KEYS_PAGE)):
        assert page.status_code == 200
        assert key.secret not in page.text
        assert not SECRET.search(page.text)
    assert key.secret not in flask_session(app, client)


def test_the_keys_page_shows_what_the_rest_api_answers(app: Flask) -> None:
    client, email = browser_of(app, "seller")
    first = issued(create(client, name="Shop sync"))
    second = issued(create(client, name="ERP", scopes=["orders:read", "ledger:read"]))
    post_form(client, f"{KEYS_PAGE}/{first.id}/revoke", f"{KEYS_PAGE}/{first.id}")
    rows = table_rows(client.get(KEYS_PAGE).text)

    api = app.test_client().get(KEYS_API, headers=api_caller(app, email)).get_json()["items"]
    assert [[r[0], r[1], r[2], r[3]] for r in rows] == [
        [k["name"], k["id"], ", ".join(k["scopes"]), k["state"]] for k in api
    ]
    assert [k["id"] for k in api] == [second.id, first.id]
    assert [k["state"] for k in api] == ["active", "revoked"]


def test_an_admin_manages_their_own_keys_with_the_admins_scopes(app: Flask) -> None:
    client, email = browser_of(app, "admin")
    assert 'value="orders:write"' in client.get(KEYS_PAGE).text
    key = issued(create(client, scopes=["orders:read", "orders:write"]))
    assert [k.key_id for k in keys_of(app, email)] == [key.id]


@pytest.mark.parametrize("role", ["customer", "staff"])
def test_customers_and_staff_get_no_key_screens(app: Flask, role: str) -> None:
    client, email = browser_of(app, role)
    refused = client.get(KEYS_PAGE)
    assert (refused.status_code, problem_code(refused)) == (403, "forbidden")
    token = hidden_token(refused.text)  # the layout's logout form
    posted = client.post(
        KEYS_PAGE, data={"csrf_token": token, "name": "x", "scopes": ["orders:read"]}
    )
    assert posted.status_code == 403
    assert keys_of(app, email) == []
    assert "API keys" not in client.get("/web/desk/chart").text


def test_without_a_session_the_key_screen_leads_to_the_login_page(app: Flask) -> None:
    response = app.test_client().get(KEYS_PAGE)
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/web/login?next=")


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": ""}, "name", "Give the key a name."),
        ({"name": "x" * 101}, "name", "Length must be between 1 and 100."),
        ({"scopes": []}, "scopes", "Choose at least one scope."),
        ({"scopes": ["orders:read", "no:such"]}, "scopes", "unknown scope(s) no:such"),
        ({"scopes": ["orders:write"]}, "scopes", "a seller's key cannot have orders:write"),
        ({"expires_at": "2001-01-01T10:00"}, "expires_at", "the expiry must be in the future"),
        ({"expires_at": "next tuesday"}, "expires_at", "Not a valid datetime."),
        ({"signature_version": "v9"}, "signature_version", "Must be one of: v1, legacy."),
    ],
)
def test_bad_input_shows_the_message_by_its_field_and_creates_nothing(
    app: Flask, fields: dict[str, Any], field: str, message: str
) -> None:
    client, email = browser_of(app, "seller")
    answer = create(client, **fields)
    assert answer.status_code == 422
    assert "The key was not created: correct what is marked below." in main_text(answer.text)
    shown = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', answer.text)
    assert shown, answer.text
    assert message in shown.group(1).replace("&#39;", "'")
    assert 'aria-invalid="true"' in answer.text
    assert not SECRET.search(answer.text)
    assert keys_of(app, email) == []


def test_a_refused_form_keeps_what_was_typed(app: Flask) -> None:
    client, _ = browser_of(app, "seller")
    answer = create(client, name="Kept name", scopes=["payments:read", "no:such"])
    assert 'value="Kept name"' in answer.text
    assert re.search(r'value="payments:read"\s+checked', answer.text)


def test_an_expiry_is_read_as_utc(app: Flask) -> None:
    client, email = browser_of(app, "seller")
    when = (clock.now() + timedelta(days=30)).replace(second=0, microsecond=0, tzinfo=None)
    issued(create(client, expires_at=when.strftime("%Y-%m-%dT%H:%M")))
    [stored] = keys_of(app, email)
    assert stored.expires_at is not None
    assert stored.expires_at.replace(tzinfo=None) == when


def test_creating_without_the_csrf_token_is_refused_and_creates_nothing(app: Flask) -> None:
    client, email = browser_of(app, "seller")
    refused = client.post(KEYS_PAGE, data={"name": "x", "scopes": ["orders:read"]})
    wrong = client.post(
        KEYS_PAGE, data={"name": "x", "scopes": ["orders:read"], "csrf_token": "0" * 64}
    )
    assert (refused.status_code, problem_code(refused)) == (403, "csrf-missing")
    assert (wrong.status_code, problem_code(wrong)) == (403, "csrf-invalid")
    assert keys_of(app, email) == []


def test_rolling_shows_the_new_secret_once_and_the_old_one_verifies_during_the_grace(
    app: Flask,
) -> None:
    client, _ = browser_of(app, "seller")
    old = issued(create(client))
    page = f"{KEYS_PAGE}/{old.id}"
    assert 'value="24"' in client.get(page).text  # the default grace, in hours

    answer = post_form(client, f"{page}/roll", page, grace_hours="2")
    assert answer.status_code == 200
    new = issued(answer)
    assert new.id == old.id
    assert new.secret != old.secret
    assert "Previous secret verifies until" in main_text(answer.text)
    api = app.test_client()
    assert signed(api, new, "GET", ORDERS).status_code == 200
    assert signed(api, old, "GET", ORDERS).status_code == 200
    with clock.travel(timedelta(hours=2, minutes=1)):
        assert signed(api, old, "GET", ORDERS).status_code == 401
    assert not SECRET.search(client.get(page).text)


def test_a_roll_form_sent_twice_rolls_once_and_the_secret_in_use_still_verifies(
    app: Flask,
) -> None:
    client, _ = browser_of(app, "seller")
    old = issued(create(client))
    page = f"{KEYS_PAGE}/{old.id}"
    shown = client.get(page).text
    form = {
        "csrf_token": hidden_token(shown),
        "version": hidden_value(shown, "version"),
        "grace_hours": "2",
    }

    new = issued(client.post(f"{page}/roll", data=form))
    again = client.post(f"{page}/roll", data=form)
    assert (again.status_code, again.headers["Location"]) == (303, page)
    assert notices(client.get(page).text) == [
        "The key was not rolled: rolled since this page was opened; the secret shown then is "
        "still in use."
    ]
    with app.app_context():
        stored = Session().scalars(select(ApiKey.secret).where(ApiKey.key_id == old.id)).one()
        assert stored == new.secret  # the second post changed nothing
    api = app.test_client()
    assert signed(api, new, "GET", ORDERS).status_code == 200
    assert signed(api, old, "GET", ORDERS).status_code == 200  # still within its grace

    # The page shown after the roll rolls again: its form names the new secret.
    assert issued(post_form(client, f"{page}/roll", page, grace_hours="1")).secret != new.secret


def test_a_create_form_sent_twice_creates_one_key(app: Flask) -> None:
    client, email = browser_of(app, "seller")
    shown = client.get(KEYS_PAGE).text
    form = {
        "csrf_token": hidden_token(shown),
        "nonce": hidden_value(shown, "nonce"),
        "name": "Shop sync",
        "scopes": ["orders:read"],
    }

    key = issued(client.post(KEYS_PAGE, data=form))
    again = client.post(KEYS_PAGE, data=form)
    assert (again.status_code, again.headers["Location"]) == (303, f"{KEYS_PAGE}/{key.id}")
    [notice] = notices(client.get(again.headers["Location"]).text)
    assert notice.startswith("No second key was created: this form was sent already")
    assert [stored.key_id for stored in keys_of(app, email)] == [key.id]
    assert signed(app.test_client(), key, "GET", ORDERS).status_code == 200
    # A new page's form makes a new key.
    fresh = client.get(KEYS_PAGE).text
    form.update(csrf_token=hidden_token(fresh), nonce=hidden_value(fresh, "nonce"))
    assert issued(client.post(KEYS_PAGE, data=form)).id != key.id
    assert len(keys_of(app, email)) == 2


@pytest.mark.parametrize("grace", ["-1", "100000", "a day"])
def test_a_bad_grace_rolls_nothing(app: Flask, grace: str) -> None:
    client, email = browser_of(app, "seller")
    key = issued(create(client))
    page = f"{KEYS_PAGE}/{key.id}"
    answer = post_form(client, f"{page}/roll", page, grace_hours=grace)
    assert answer.status_code == 422
    assert 'id="grace_hours-error"' in answer.text
    assert not SECRET.search(answer.text)
    [stored] = keys_of(app, email)
    assert stored.rolled_at is None
    assert signed(app.test_client(), key, "GET", ORDERS).status_code == 200


def test_a_grace_beyond_the_configured_maximum_is_refused(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(module_env={"api_key_max_grace_hours": "12", "api_key_roll_grace_hours": "6"})
    client, email = browser_of(app, "seller")
    key = issued(create(client))
    page = f"{KEYS_PAGE}/{key.id}"
    form = client.get(page).text
    assert 'max="12"' in form
    assert 'value="6"' in form
    answer = post_form(client, f"{page}/roll", page, grace_hours="13")
    assert answer.status_code == 422
    assert "at most 12 hours" in answer.text
    assert keys_of(app, email)[0].rolled_at is None


def test_revoking_ends_the_key_and_a_revoked_key_cannot_be_rolled(app: Flask) -> None:
    client, email = browser_of(app, "seller")
    key = issued(create(client))
    page = f"{KEYS_PAGE}/{key.id}"
    token = hidden_token(client.get(page).text)

    revoked = client.post(f"{page}/revoke", data={"csrf_token": token})
    assert (revoked.status_code, revoked.headers["Location"]) == (303, page)
    shown = client.get(page)
    assert "API key “Shop sync” is revoked: its secrets no longer verify." in notices(shown.text)
    assert "Roll the secret" not in shown.text
    assert "Revoke the key" not in shown.text
    assert signed(app.test_client(), key, "GET", ORDERS).status_code == 401

    rolled = client.post(f"{page}/roll", data={"csrf_token": token, "grace_hours": "1"})
    assert rolled.status_code == 303
    assert "The key was not rolled" in notices(client.get(rolled.headers["Location"]).text)[0]
    assert keys_of(app, email)[0].rolled_at is None


def test_another_sellers_key_is_not_found_and_an_admin_may_revoke_but_not_roll_it(
    app: Flask,
) -> None:
    owner, owner_email = browser_of(app, "seller")
    key = issued(create(owner))
    page = f"{KEYS_PAGE}/{key.id}"

    other, _ = browser_of(app, "seller")
    token = hidden_token(other.get(KEYS_PAGE).text)
    assert problem_code(other.get(page)) == "api-key-not-found"
    assert other.post(f"{page}/revoke", data={"csrf_token": token}).status_code == 404

    admin, _ = browser_of(app, "admin")
    shown = admin.get(page)
    assert shown.status_code == 200
    assert owner_email in main_text(shown.text)
    assert "Roll the secret" not in shown.text  # only its owner rolls a key
    token = hidden_token(shown.text)
    assert admin.post(f"{page}/roll", data={"csrf_token": token}).status_code == 404
    assert keys_of(app, owner_email)[0].rolled_at is None
    assert admin.post(f"{page}/revoke", data={"csrf_token": token}).status_code == 303
    assert keys_of(app, owner_email)[0].revoked_at is not None


def test_an_altered_page_link_shows_the_first_page(app: Flask) -> None:
    client, _ = browser_of(app, "seller")
    issued(create(client))
    shown = client.get(f"{KEYS_PAGE}?cursor=forged")
    assert shown.status_code == 200
    assert "That page link is no longer valid; here is the first page." in notices(shown.text)
    assert len(table_rows(shown.text)) == 1


def test_keys_page_through_the_list(app: Flask) -> None:
    client, _ = browser_of(app, "seller")
    made = [issued(create(client, name=f"key {n}")).id for n in range(MAX_LIVE_KEYS)]
    for key_id in made[:2]:  # at most 25 live keys: two revoked make room for two more
        post_form(client, f"{KEYS_PAGE}/{key_id}/revoke", f"{KEYS_PAGE}/{key_id}")
    made += [issued(create(client, name=f"key {n}")).id for n in range(2)]
    first = client.get(KEYS_PAGE)
    following = re.search(r'href="(/web/auth/api-keys\?cursor=[^"]+)"[^>]*>Next page', first.text)
    assert following
    second = client.get(following.group(1).replace("&amp;", "&"))
    listed = [row[1] for row in table_rows(first.text) + table_rows(second.text)]
    assert listed == made[::-1]


def test_keys_on_the_embedded_default(make_embedded_app: Callable[..., Flask]) -> None:
    embedded_app = make_embedded_app()
    client, email = browser_of(embedded_app, "seller")
    key = issued(create(client))
    assert [k.key_id for k in keys_of(embedded_app, email)] == [key.id]
    assert signed(embedded_app.test_client(), key, "GET", ORDERS).status_code == 200
    assert not SECRET.search(client.get(KEYS_PAGE).text)
