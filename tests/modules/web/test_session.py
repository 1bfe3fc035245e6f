"""The browser's session in the web client, through the test client against real PostgreSQL and
Redis (and the embedded default where marked): the login form and its cookie, what the cookie
opens, CSRF, replaced, expired and ended sessions, logout, and ``next`` that stays here."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from marshmallow.validate import Length
from sqlalchemy import select
from werkzeug.test import TestResponse

from app.cli import main as lapak_main
from app.clock import travel
from app.db import Session
from modules.auth.models import AuthSession
from modules.auth.schemas import LoginSchema
from modules.auth.services import DEVELOPMENT_SESSION_COOKIE, SESSION_COOKIE
from modules.user.demo import DEMO_ADMIN_EMAIL
from tests.modules.conftest import PASSWORD, Caller, bearer, login
from tests.modules.user.test_cli import demo_passwords
from tests.modules.web.conftest import add_user, csrf_of, hidden_token, note_titles, web_login

SESSION_API = "/api/v1/auth/session"
BROWSER_API = "/api/v1/desk/notes"
NOTES = "/web/desk/"


def cookie_attributes(response: TestResponse, name: str) -> dict[str, str]:
    """The attributes of the ``Set-Cookie`` of ``name`` (lower-case keys; the value as "")."""
    for header in response.headers.getlist("Set-Cookie"):
        first, *attributes = (part.strip() for part in header.split(";"))
        key, _, value = first.partition("=")
        if key == name:
            parsed = {"": value}
            for attribute in attributes:
                attribute_name, _, attribute_value = attribute.partition("=")
                parsed[attribute_name.lower()] = attribute_value
            return parsed
    raise AssertionError(f"no Set-Cookie for {name}")


def live_sessions(app: Flask) -> list[AuthSession]:
    with app.app_context():
        Session.remove()
        return list(Session().scalars(select(AuthSession).where(AuthSession.revoked_at.is_(None))))


def session_of(app: Flask, sid: str) -> AuthSession:
    with app.app_context():
        Session.remove()
        return Session().scalars(select(AuthSession).where(AuthSession.sid == uuid.UUID(sid))).one()


def logged_in(app: Flask, role: str = "staff") -> tuple[FlaskClient, str]:
    client = app.test_client()
    email = add_user(app, role)
    response = web_login(client, email)
    assert response.status_code == 303, response.text
    return client, email


def login_page_after(response: TestResponse, client: FlaskClient) -> str:
    """Follow a redirect to the login page; its text (with the notices)."""
    assert response.status_code == 303
    assert urlsplit(response.headers["Location"]).path == "/web/login"
    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    return page.text


# --- login and the cookie ----------------------------------------------------------------------


def test_login_sets_the_session_cookie_with_its_attributes(app: Flask) -> None:
    client = app.test_client()
    email = add_user(app, "staff")

    response = web_login(client, email)

    assert response.status_code == 303
    assert response.headers["Location"] == "/web/"
    cookie = cookie_attributes(response, SESSION_COOKIE)
    assert "httponly" in cookie
    assert cookie["samesite"] == "Lax"
    assert "secure" in cookie  # LAPAK_ENV=test is not development
    assert cookie["path"] == "/"
    # No longer than the session (12 hours by default), and about that long.
    assert 12 * 3600 - 60 <= int(cookie["max-age"]) <= 12 * 3600
    # The cookie is the API's access token of a normal session, the user's only live one.
    token = cookie[""]
    assert client.get(SESSION_API, headers=bearer(token)).status_code == 200
    assert len(live_sessions(app)) == 1


def test_the_cookie_lives_no_longer_than_a_shorter_session(
    make_app: Callable[..., Flask], config: dict[str, Any]
) -> None:
    app = make_app(module_env={**config["module_env"], "session_absolute_hours": "1"})
    email = add_user(app, "staff")

    cookie = cookie_attributes(web_login(app.test_client(), email), SESSION_COOKIE)

    assert 3600 - 60 <= int(cookie["max-age"]) <= 3600


def test_the_cookie_is_not_secure_in_development_only(make_app: Callable[..., Flask]) -> None:
    """Over http, without Secure, the cookie cannot have the __Host- prefix: a name of its own."""
    app = make_app(env="development")
    client = app.test_client()
    email = add_user(app, "staff")

    response = web_login(client, email)

    assert "secure" not in cookie_attributes(response, DEVELOPMENT_SESSION_COOKIE)
    assert "secure" not in cookie_attributes(response, "lapak_web")
    assert client.get(NOTES).status_code == 200  # the authenticator reads that one here


def test_the_secure_cookie_has_the_host_prefix_and_no_other_name_is_read(app: Flask) -> None:
    """__Host-: browsers keep it only if Secure, Path=/ and without Domain, so no plain-http
    page or subdomain can plant it; a cookie of the development name is not read here."""
    client = app.test_client()
    response = web_login(client, add_user(app))
    token = client.get_cookie(SESSION_COOKIE).value
    unprefixed = app.test_client()
    unprefixed.set_cookie(DEVELOPMENT_SESSION_COOKIE, token)

    assert SESSION_COOKIE == "__Host-lapak_session"
    assert "domain" not in cookie_attributes(response, SESSION_COOKIE)
    assert client.get(NOTES).status_code == 200
    assert unprefixed.get(NOTES).status_code == 303


def test_a_wrong_password_shows_the_form_again_and_sets_no_cookie(app: Flask) -> None:
    client = app.test_client()
    email = add_user(app, "staff")

    response = web_login(client, email, "not the password")

    assert response.status_code == 422
    assert "The email or password is wrong." in response.text
    assert f'value="{email}"' in response.text
    assert SESSION_COOKIE not in response.headers.get("Set-Cookie", "")
    assert live_sessions(app) == []


def test_the_login_form_has_the_apis_bounds(app: Flask) -> None:
    """The API's LoginSchema bounds the form too: a huge password never reaches argon2."""
    client = app.test_client()
    email = add_user(app, "staff")
    bounds = {
        name: next(v.max for v in field.validators if isinstance(v, Length))
        for name, field in LoginSchema().fields.items()
    }

    form = client.get("/web/login")
    too_long = web_login(client, email, "x" * (bounds["password"] + 1))
    at_the_bound = web_login(client, email, "x" * bounds["password"])

    assert f'maxlength="{bounds["email"]}"' in form.text
    assert f'maxlength="{bounds["password"]}"' in form.text
    assert too_long.status_code == 422
    assert "The email or password is too long." in too_long.text
    assert "The email or password is wrong." in at_the_bound.text  # checked, and wrong
    assert live_sessions(app) == []


def test_a_login_form_from_elsewhere_is_refused(app: Flask) -> None:
    """Login CSRF: a form posted by another site (without the form's own token) logs nobody
    in, not even into the attacker's account."""
    client = app.test_client()
    email = add_user(app, "staff")

    response = client.post("/web/login", data={"email": email, "password": PASSWORD})

    assert response.status_code == 400
    assert "The form expired" in response.text
    assert live_sessions(app) == []


def test_repeated_failures_lock_the_login_form_too(
    make_app: Callable[..., Flask], config: dict[str, Any]
) -> None:
    app = make_app(module_env={**config["module_env"], "login_max_account_failures": "2"})
    client = app.test_client()
    email = add_user(app, "staff")
    for _ in range(2):
        assert web_login(client, email, "wrong").status_code == 422

    locked = web_login(client, email)

    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 0
    assert "Too many failed attempts" in locked.text
    assert live_sessions(app) == []


def test_the_login_page_sends_a_logged_in_browser_on(app: Flask) -> None:
    client, _ = logged_in(app)

    response = client.get("/web/login?next=/web/desk/chart")

    assert response.status_code == 303
    assert response.headers["Location"] == "/web/desk/chart"


# --- what the cookie opens ---------------------------------------------------------------------


def test_the_cookie_opens_browser_views_but_not_the_api(app: Flask) -> None:
    client, _ = logged_in(app)
    token = client.get_cookie(SESSION_COOKIE).value
    only_cookie = app.test_client()
    only_cookie.set_cookie(SESSION_COOKIE, token)

    assert only_cookie.get(NOTES).status_code == 200
    refused = only_cookie.get(SESSION_API)
    assert refused.status_code == 401
    assert refused.json["type"] == "urn:lapak:problem:unauthenticated"
    # The same token as a bearer header opens the API.
    assert only_cookie.get(SESSION_API, headers=bearer(token)).status_code == 200


def test_a_bearer_header_wins_over_the_cookie_and_needs_no_csrf_token(
    app: Flask, staff: Caller
) -> None:
    """The header is no ambient credential: a page of another site cannot send it."""
    client, _ = logged_in(app, "customer")  # the cookie of a customer, who may not add notes

    response = client.post(BROWSER_API, json={"title": "by bearer"}, headers=staff.headers)

    assert response.status_code == 201
    assert note_titles(app) == ["by bearer"]


def test_a_proxys_basic_login_leaves_the_cookie_in_use_with_its_csrf_token(app: Flask) -> None:
    """An HTTP Basic login at a proxy in front: the browser sends its header with every request
    (cross-site ones too, like the cookie), so it neither hides the cookie nor spares the token."""
    client, _ = logged_in(app)
    token = csrf_of(client)
    basic = {"Authorization": "Basic cHJveHk6cGFzc3dvcmQ="}

    page = client.get(NOTES, headers=basic)
    no_token = client.post(NOTES, data={"title": "no token"}, headers=basic)
    added = client.post(NOTES, data={"title": "behind a proxy", "csrf_token": token}, headers=basic)

    assert page.status_code == 200
    assert 'data-problem="csrf-missing"' in no_token.text
    assert added.status_code == 303
    assert note_titles(app) == ["behind a proxy"]
    assert client.get(SESSION_API, headers=basic).status_code == 401  # the API: no cookie


def test_an_unauthenticated_visit_goes_to_the_login_page_and_back(app: Flask) -> None:
    client = app.test_client()
    email = add_user(app, "staff")

    response = client.get("/web/desk/?tab=all")

    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    assert location.path == "/web/login"
    assert parse_qs(location.query) == {"next": ["/web/desk/?tab=all"]}
    form = client.get(response.headers["Location"])
    assert 'name="next" value="/web/desk/?tab=all"' in form.text
    arrived = client.post(
        "/web/login",
        data={
            "email": email,
            "password": PASSWORD,
            "next": "/web/desk/?tab=all",
            "csrf_token": hidden_token(form.text),
        },
    )
    assert arrived.status_code == 303
    assert arrived.headers["Location"] == "/web/desk/?tab=all"


def test_an_htmx_request_without_a_session_is_sent_to_the_login_page(app: Flask) -> None:
    response = app.test_client().get(NOTES, headers={"HX-Request": "true"})

    assert response.status_code == 401
    assert urlsplit(response.headers["HX-Redirect"]).path == "/web/login"


def test_an_htmx_request_leads_back_to_its_page_not_its_fragment(app: Flask) -> None:
    client = app.test_client()
    htmx = {"HX-Request": "true", "HX-Current-URL": "http://localhost/web/desk/?tab=all"}

    from_a_page = client.post("/web/desk/fragment", headers=htmx)
    from_elsewhere = client.post(
        "/web/desk/fragment",
        headers={**htmx, "HX-Current-URL": "http://localhost/api/v1/auth/session"},
    )
    without_a_page = client.get("/web/desk/chart", headers={"HX-Request": "true"})

    assert parse_qs(urlsplit(from_a_page.headers["HX-Redirect"]).query) == {
        "next": ["/web/desk/?tab=all"]
    }
    for response in (from_elsewhere, without_a_page):
        assert response.headers["HX-Redirect"] == "/web/login"


def test_home_goes_to_the_first_screen_of_the_role_and_the_menu_follows_the_role(
    app: Flask,
) -> None:
    menus = {}
    for role in ("admin", "staff", "customer"):
        client, _ = logged_in(app, role)
        menus[role] = client.get("/web/desk/chart").text
        home = client.get("/web/")
        # A customer's first screen is the marketplace's Orders (menu order 20; Chart is 30).
        expected = "/web/marketplace/" if role == "customer" else "/web/desk/"
        assert (role, home.status_code, home.headers["Location"]) == (role, 303, expected)

    assert all(">Chart</a>" in text for text in menus.values())
    assert ">Notes</a>" in menus["admin"]
    assert ">Audit desk</a>" in menus["admin"]
    assert ">Notes</a>" in menus["staff"]
    assert ">Audit desk</a>" not in menus["staff"]
    assert ">Notes</a>" not in menus["customer"]


def test_a_wrong_role_gets_a_page_not_json(app: Flask) -> None:
    client, _ = logged_in(app, "staff")

    page = client.get("/web/desk/audit", headers={"Accept": "text/html"})
    asked_json = client.get("/web/desk/audit", headers={"Accept": "application/json"})

    assert page.status_code == 403
    assert page.mimetype == "text/html"
    assert "this needs the role admin" in page.text
    assert ">Notes</a>" in page.text  # the layout, with the menu
    assert asked_json.status_code == 403
    assert asked_json.json["type"] == "urn:lapak:problem:forbidden"


def test_an_unknown_web_address_is_a_page(app: Flask) -> None:
    response = app.test_client().get("/web/no/such/page")

    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "There is no page at this address." in response.text
    assert app.test_client().get("/api/v1/no/such").mimetype == "application/problem+json"


def test_web_answers_carry_a_strict_csp_and_pages_are_not_stored(app: Flask) -> None:
    client, _ = logged_in(app)

    page = client.get(NOTES)
    asset = client.get("/web/static/lapak.css")
    screens_asset = client.get("/web/desk/static/chart.js")  # a module's own static files
    login_page = app.test_client().get("/web/login")

    for response in (page, asset, screens_asset, login_page):
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "form-action 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "unsafe-eval" not in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Cache-Control"] == "no-store"
    assert login_page.headers["Cache-Control"] == "no-store"
    for response in (asset, screens_asset):
        assert response.status_code == 200
        assert "no-store" not in response.headers.get("Cache-Control", "")
        assert "Cookie" not in response.vary
    assert "Content-Security-Policy" not in app.test_client().get("/api/v1/modules").headers


# --- CSRF -----------------------------------------------------------------------------------------


def test_a_form_post_needs_the_csrf_token(either_app: Flask) -> None:
    client, _ = logged_in(either_app)
    token = csrf_of(client)

    missing = client.post(NOTES, data={"title": "no token"})
    wrong = client.post(NOTES, data={"title": "wrong token", "csrf_token": "0" * 64})
    assert (missing.status_code, wrong.status_code) == (403, 403)
    assert note_titles(either_app) == []
    assert "This change was refused" in missing.text
    assert 'data-problem="csrf-missing"' in missing.text
    assert 'data-problem="csrf-invalid"' in wrong.text

    accepted = client.post(NOTES, data={"title": "with token", "csrf_token": token})
    assert accepted.status_code == 303
    assert note_titles(either_app) == ["with token"]
    assert "Note &#39;with token&#39; added." in client.get(accepted.headers["Location"]).text


def test_a_browser_api_call_needs_the_csrf_token_as_problem_json(app: Flask) -> None:
    client, _ = logged_in(app)
    token = csrf_of(client)

    missing = client.post(BROWSER_API, json={"title": "no token"})
    wrong = client.post(BROWSER_API, json={"title": "x"}, headers={"X-CSRF-Token": token[::-1]})
    in_a_form_field = client.post(BROWSER_API, data={"title": "form", "csrf_token": token[:-1]})

    assert [r.status_code for r in (missing, wrong, in_a_form_field)] == [403, 403, 403]
    assert {r.mimetype for r in (missing, wrong, in_a_form_field)} == {"application/problem+json"}
    assert missing.json["type"] == "urn:lapak:problem:csrf-missing"
    assert wrong.json["type"] == "urn:lapak:problem:csrf-invalid"
    assert in_a_form_field.json["type"] == "urn:lapak:problem:csrf-invalid"
    assert note_titles(app) == []

    accepted = client.post(BROWSER_API, json={"title": "ok"}, headers={"X-CSRF-Token": token})
    assert accepted.status_code == 201
    assert note_titles(app) == ["ok"]


def test_the_token_of_an_earlier_session_is_refused(app: Flask) -> None:
    client, email = logged_in(app)
    earlier = csrf_of(client)
    assert web_login(app.test_client(), email).status_code == 303  # elsewhere: this one ends
    assert web_login(client, email).status_code == 303  # and back here, in a new session

    refused = client.post(NOTES, data={"title": "stale", "csrf_token": earlier})

    assert refused.status_code == 403
    assert 'data-problem="csrf-invalid"' in refused.text
    assert csrf_of(client) != earlier
    assert note_titles(app) == []


# --- sessions that end ---------------------------------------------------------------------------


def test_a_login_elsewhere_sends_the_first_browser_to_the_login_page(either_app: Flask) -> None:
    first, email = logged_in(either_app)
    second = either_app.test_client()
    assert web_login(second, email).status_code == 303

    sent_back = first.get(NOTES)

    assert "secure" in cookie_attributes(sent_back, SESSION_COOKIE)
    assert cookie_attributes(sent_back, SESSION_COOKIE)["max-age"] == "0"  # cleared
    assert "You logged in elsewhere" in login_page_after(sent_back, first)
    assert second.get(NOTES).status_code == 200


def test_an_expired_session_goes_to_the_login_page_saying_so(app: Flask) -> None:
    client, _ = logged_in(app)

    with travel(timedelta(minutes=31)):
        sent_back = client.get(NOTES)

    assert "Your session expired" in login_page_after(sent_back, client)


def test_a_revoked_session_goes_to_the_login_page_saying_so(
    app: Flask, make_user: Callable[..., tuple[int, uuid.UUID, str]], admin: Caller
) -> None:
    _, user_uuid, email = make_user(role="staff")
    client = app.test_client()
    assert web_login(client, email).status_code == 303
    api = app.test_client()
    revoked = api.post(f"/api/v1/auth/users/{user_uuid}/revoke-sessions", headers=admin.headers)
    assert revoked.json == {"revoked": 1}

    sent_back = client.get(NOTES)

    assert "Your session was ended" in login_page_after(sent_back, client)


def test_logout_needs_the_token_then_ends_the_session(either_app: Flask) -> None:
    client, _ = logged_in(either_app)
    sid = str(
        client.get(SESSION_API, headers=bearer(client.get_cookie(SESSION_COOKIE).value)).json["id"]
    )

    refused = client.post("/web/logout")
    assert refused.status_code == 403
    assert session_of(either_app, sid).revoked_at is None

    response = client.post("/web/logout", data={"csrf_token": csrf_of(client)})

    assert response.status_code == 303
    assert cookie_attributes(response, SESSION_COOKIE)["max-age"] == "0"
    assert session_of(either_app, sid).revoked_reason == "logout"
    assert "You have logged out." in login_page_after(response, client)
    assert client.get(NOTES).status_code == 303


# --- next stays on this site ------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/web/",
        "//evil.example/web/",
        "/\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "/api/v1/auth/session",
        "web/desk/",
        "/web/../api/v1/auth/session",
        "/web/%2e%2e/api/v1/auth/session",
        "/web/desk/.%2E/%2E./api/v1/auth/session",
        "/web/./",
        "//[evil.example",
    ],
)
def test_next_never_leads_off_the_web_client(app: Flask, target: str) -> None:
    client = app.test_client()
    email = add_user(app, "staff")

    form = client.get("/web/login", query_string={"next": target})
    response = web_login(client, email, next_page=target)

    assert 'name="next"' not in form.text
    assert response.status_code == 303
    assert response.headers["Location"] == "/web/"


def test_api_login_and_web_login_are_one_session_rule(app: Flask) -> None:
    """The API's login ends the browser's session, as any other login does."""
    client, email = logged_in(app)

    assert login(app.test_client(), email).status_code == 200

    assert "You logged in elsewhere" in login_page_after(client.get(NOTES), client)


def test_the_demo_admin_logs_in_at_the_web_login(embedded_app: Flask) -> None:
    """The README's first steps: ``lapak demo`` on the embedded default, then /web/login."""
    demo = embedded_app.test_cli_runner().invoke(lapak_main, ["demo"])
    assert demo.exit_code == 0, demo.output
    password = demo_passwords(demo.output)[DEMO_ADMIN_EMAIL]
    client = embedded_app.test_client()

    response = web_login(client, DEMO_ADMIN_EMAIL, password)

    assert response.status_code == 303
    screen = client.get(client.get("/web/").headers["Location"])
    assert screen.status_code == 200
    assert f'{DEMO_ADMIN_EMAIL} <span class="role">admin</span>' in screen.text
