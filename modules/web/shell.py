"""The shell's pages: login, logout, home; the menu and the templates' globals."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from marshmallow.validate import Length

from app.errors import TooManyRequests, Unauthenticated
from app.fields import UNSTORABLE_TEXT
from app.security import Principal, authenticate, current_principal
from modules.auth import browser
from modules.auth.schemas import LoginSchema

from . import screen
from .pages import local_next

blp = Blueprint(
    "web",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

#: Where the login form's own CSRF token waits (in Flask's signed session cookie): a login form
#: posted from another site must not log the browser into someone else's account.
LOGIN_CSRF = "login_csrf"
#: The API's login body: its bounds are the form's (a huge password must not reach argon2).
LOGIN = LoginSchema()


@dataclass(frozen=True)
class MenuItem:
    label: str
    url: str
    #: The link's ``aria-current``: ``"page"`` on the entry's own screen, ``"true"`` on a screen
    #: under its address (an order under the order list), None elsewhere.
    current: str | None = None


def menu_for(principal: Principal | None) -> list[MenuItem]:
    """The menu entries this user's role may see, in order (``hooks.screens``): the entry of the
    screen being served is current, or else the entry whose address this screen's is under."""
    if principal is None:
        return []
    entries = current_app.extensions["lapak.registry"].wiring.menu
    shown = sorted(
        (e for e in entries if not e.roles or principal.role in e.roles),
        key=lambda e: (e.order, e.label),
    )
    items = [MenuItem(e.label, url_for(e.endpoint)) for e in shown]
    own = next((i for i, e in enumerate(shown) if e.endpoint == request.endpoint), None)
    if own is not None:
        items[own] = replace(items[own], current="page")
    elif (under := _section_of(request.path, [item.url for item in items])) is not None:
        items[under] = replace(items[under], current="true")
    return items


def _section_of(path: str, urls: list[str]) -> int | None:
    """The index of the longest of ``urls`` that ``path`` lies under, segment by segment
    (``/web/seller/me/withdraw`` is under ``/web/seller/me`` and ``/web/seller/``, not under
    ``/web/seller/m``), if any."""
    under = [
        (len(url), index)
        for index, url in enumerate(urls)
        if path == url or path.startswith(url if url.endswith("/") else f"{url}/")
    ]
    return max(under)[1] if under else None


@blp.app_template_global("csrf_token")
def csrf_token() -> str:
    """The CSRF token of the browser session being served (forms' hidden ``csrf_token``); ""
    on a page served to no session (the login page, a refusal shown to an API key)."""
    return browser.csrf_token() if web_user() else ""


@blp.app_template_global("web_user")
def web_user() -> Principal | None:
    """The person logged in with the browser session this page is served to, if any: not on
    the login page, and not a program (an API key, which has no session) that was refused."""
    principal = current_principal()
    return principal if principal is not None and principal.session_id is not None else None


@blp.app_template_global("web_menu")
def web_menu() -> list[MenuItem]:
    return menu_for(web_user())


@blp.app_template_filter("utc")
def utc(moment: datetime | str) -> datetime:
    """A moment (a datetime, or RFC 3339 text as the API writes it) in UTC, for
    ``web/macros.html``'s ``when``; a moment without a zone is read as UTC (as Lapak stores
    it)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@blp.get("/")
@screen()
def home() -> Response | str:
    """The first screen of the menu, or a welcome page when this role has none."""
    menu = menu_for(current_principal())
    if menu:
        return redirect(menu[0].url, 303)
    return render_template("web/home.html")


@blp.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int, dict[str, str]] | str:
    """The login form; a successful login goes on to ``next`` (a ``/web/`` page) or home."""
    target = local_next(request.values.get("next"))
    if request.method == "GET":
        if _logged_in() is not None:
            return redirect(target or url_for(".home"), 303)
        return _login_form()
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    sent = request.form.get("csrf_token", "")
    expected = session.get(LOGIN_CSRF, "")
    if not expected or not hmac.compare_digest(sent.encode(errors="replace"), expected.encode()):
        return _login_form(email, "The form expired. Please log in again.", status=400)
    problem = _check_login_fields(email, password)
    if problem:
        return _login_form(email, problem, status=422)
    try:
        opened = browser.log_in(email, password)
    except TooManyRequests as locked:
        return _login_form(
            email,
            f"Too many failed attempts: {locked.detail or 'try again later'}.",
            status=429,
            headers=locked.headers,
        )
    except Unauthenticated:
        return _login_form(email, "The email or password is wrong.", status=422)
    session.pop(LOGIN_CSRF, None)
    response = redirect(target or url_for(".home"), 303)
    browser.keep_session(response, opened)
    return response


@blp.post("/logout")
@screen()
def logout() -> Response:
    """End this browser's session (the form carries the CSRF token)."""
    response = redirect(url_for(".login"), 303)
    browser.log_out(response)
    flash("You have logged out.", "info")
    return response


def login_unavailable(headers: dict[str, str]) -> tuple[str, int, dict[str, str]]:
    """The login form again, for a login that failed on an outage (the database or Redis):
    503 with the outage's headers (``Retry-After``)."""
    return _login_form(
        request.form.get("email", "").strip(),
        "Logging in is not possible right now: the service is temporarily unavailable. "
        "Please try again in a moment.",
        status=503,
        headers=headers,
    )


def _logged_in() -> Principal | None:
    g.lapak_browser = True
    try:
        return authenticate()
    except Unauthenticated:
        return None


def _check_login_fields(email: str, password: str) -> str | None:
    if not email or not password:
        return "Enter your email and your password."
    if LOGIN.validate({"email": email, "password": password}):
        return "The email or password is too long."  # the schema's other rule: its bounds
    if UNSTORABLE_TEXT.search(email) or UNSTORABLE_TEXT.search(password):
        return "The email or password holds characters that cannot be used."
    return None


def _login_form(
    email: str = "",
    error: str | None = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> tuple[str, int, dict[str, str]]:
    if LOGIN_CSRF not in session:
        session[LOGIN_CSRF] = secrets.token_urlsafe(32)
    page = render_template(
        "web/login.html",
        email=email,
        error=error,
        next=local_next(request.values.get("next")),
        login_csrf=session[LOGIN_CSRF],
        email_max=_max_length("email"),
        password_max=_max_length("password"),
    )
    return page, status, dict(headers or {})


def _max_length(field: str) -> int | None:
    return next(
        (rule.max for rule in LOGIN.fields[field].validators if isinstance(rule, Length)), None
    )
