"""How every ``/web/`` page answers, whichever module serves it: its security headers, and the
refusals a person can act on (a login page saying why, a page saying what is not allowed)
instead of problem+json, which the rest of the app keeps."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from flask import Flask, Response, flash, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BuildError

from app import WEB_PREFIX, http
from app.config import Settings
from app.errors import Unauthenticated
from app.registry import RegistryError
from modules.auth import browser
from modules.auth.csrf import CsrfRefused

log = logging.getLogger(__name__)
ErrorHandler = Callable[[Exception], Any]

#: Scripts, styles, images and connections from this origin only (no inline script or style,
#: no eval), forms posted only here, and no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
#: Why the login page is shown again, by the refusal's problem code.
LOGIN_AGAIN = {
    "session-replaced": "You logged in elsewhere, so this session was ended. "
    "Log in again to continue here.",
    "session-expired": "Your session expired. Log in again to continue.",
    "token-expired": "Your session expired. Log in again to continue.",
    "session-revoked": "Your session was ended. Log in again to continue.",
    "invalid-token": "Your session is no longer valid. Log in again to continue.",
}
#: What a person reads when a change is refused for its CSRF token (the API says it for programs).
CSRF_REFUSED = (
    "This change was refused: it did not come from a page of this session (the page may be "
    "from before your last login). Reload the page and try again."
)
#: What a person reads for Werkzeug's errors (its own texts speak of "the requested URL").
HTTP_DETAIL = {
    404: "There is no page at this address.",
    405: "This address does not open that way: use the page's links and buttons.",
}
PROBLEM_TYPE = http.problem_type("")
MAX_NEXT = 2048


def install(app: Flask, settings: Settings) -> None:
    """Headers and refusal pages for ``/web/``; Flask's session cookie (notices, the login
    form's token) with the session cookie's attributes; a menu that names only real screens."""
    app.config.update(
        SESSION_COOKIE_NAME="lapak_web",
        SESSION_COOKIE_PATH=WEB_PREFIX,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=browser.cookies_are_secure(settings),
    )
    _check_menu(app)
    app.after_request(_secure_headers)
    # Every error the app answers with problem+json by now (domain errors, a database that
    # cannot be reached, Werkzeug's 404 and 405, the unexpected 500) is a page on /web/ pages.
    for error_class, answer in list(app.error_handler_spec[None][None].items()):
        app.register_error_handler(error_class, _shown_as_page(answer))
    app.register_error_handler(Unauthenticated, _unauthenticated)


def _check_menu(app: Flask) -> None:
    """Refuse to start with a menu entry that cannot link to its screen (else every page,
    which shows the menu, would fail)."""
    urls = app.url_map.bind("localhost")
    for entry in app.extensions["lapak.registry"].wiring.menu:
        if entry.endpoint not in app.view_functions:
            raise RegistryError(
                f"the menu entry {entry.label!r} names the endpoint {entry.endpoint!r}, which no "
                "screen serves; use '<blueprint name>.<view function>' of a hooks.screens blueprint"
            )
        try:
            urls.build(entry.endpoint)
        except BuildError as error:
            raise RegistryError(
                f"the menu entry {entry.label!r} names the endpoint {entry.endpoint!r}, whose "
                "address needs arguments; a menu entry opens a screen that takes none"
            ) from error


def is_web_page() -> bool:
    return request.path == WEB_PREFIX or request.path.startswith(f"{WEB_PREFIX}/")


def local_next(target: str | None) -> str | None:
    """``target`` if it is a page of the web client on this site, else None: ``next`` must
    never send a browser elsewhere (``//evil.example``, ``/\\evil.example``, a scheme,
    ``/web/../api/``)."""
    if not target or len(target) > MAX_NEXT:
        return None
    if any(char == "\\" or ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return None  # browsers read "\" as "/" and drop tabs and newlines
    try:
        parts = urlsplit(target)
    except ValueError:  # "//[x": an unclosed IPv6 host
        return None
    if parts.scheme or parts.netloc:
        return None
    if parts.path != WEB_PREFIX and not parts.path.startswith(f"{WEB_PREFIX}/"):
        return None
    # Browsers resolve "." and ".." segments, written "%2e%2e" too, before asking: out of /web/.
    if {".", ".."} & set(unquote(parts.path).split("/")):
        return None
    return target


def _secure_headers(response: Response) -> Response:
    if not is_web_page():
        return response
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    if not (request.endpoint or "").endswith(".static"):  # any blueprint's static files
        # Pages show people's data: no cache, shared or the browser's, may keep them.
        response.headers["Cache-Control"] = "no-store"
        response.vary.add("Cookie")
    return response


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(
        ["text/html", http.PROBLEM_MIMETYPE, "application/json"]
    )
    return best in (http.PROBLEM_MIMETYPE, "application/json")


def _unauthenticated(error: Unauthenticated) -> Any:
    if not is_web_page() or _wants_json():
        return http.handle_domain_error(error)
    message = LOGIN_AGAIN.get(error.code)
    if message:
        flash(message, "warning")
    login = url_for("web.login", next=_back_after_login())
    if "HX-Request" in request.headers:
        # htmx would swap the login page into a fragment: it loads it as a page instead.
        response = Response(status=401, headers={"HX-Redirect": login})
    else:
        response = redirect(login, 303)
    if browser.session_cookie() in request.cookies:
        browser.forget_session(response)
    return response


def _back_after_login() -> str | None:
    """Where the login page leads back to: the page asked for, or, for an htmx request (a
    fragment, maybe a POST), the page it was made from; nothing after any other POST."""
    if "HX-Request" in request.headers:
        try:
            page = urlsplit(request.headers.get("HX-Current-URL", ""))
        except ValueError:
            return None
        return local_next(urlunsplit(("", "", page.path, page.query, "")))
    if request.method == "GET":
        return local_next(request.full_path.rstrip("?"))
    return None


def _shown_as_page(answer_of: ErrorHandler) -> ErrorHandler:
    """The app's handler ``answer_of``, whose problem+json answers become the problem page on
    a ``/web/`` page (with the same status and headers: ``Retry-After``, ``Allow``), unless the
    client asks for JSON."""

    @functools.wraps(answer_of)
    def answer(error: Exception) -> Any:
        response = answer_of(error)
        if (
            not isinstance(response, Response)
            or response.mimetype != http.PROBLEM_MIMETYPE
            or not is_web_page()
            or _wants_json()
        ):
            return response
        try:
            return _problem_page(response, error)
        except Exception:  # the page must not cost the answer (the error is already logged)
            log.exception("the problem page of a %s could not be shown", response.status_code)
            return response

    return answer


def _problem_page(answer: Response, error: Exception) -> Any:
    problem = answer.get_json()
    status = answer.status_code
    title = problem["title"]
    if problem["type"].startswith(PROBLEM_TYPE):
        code = problem["type"].removeprefix(PROBLEM_TYPE)
    else:  # Werkzeug's, "about:blank"
        code = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    detail = problem.get("detail")
    if isinstance(error, CsrfRefused):
        detail = CSRF_REFUSED
    elif isinstance(error, HTTPException):
        detail = HTTP_DETAIL.get(status, detail)
    headers = {
        name: value
        for name, value in answer.headers.items()
        if name.lower() not in ("content-type", "content-length")
    }
    if status == 503 and request.endpoint == "web.login":
        from .shell import login_unavailable  # the shell's pages build on this module

        return login_unavailable(headers)
    if "HX-Request" in request.headers:
        # Not a page inside the button's target: a notice in the layout's (lapak.js swaps it).
        notice = render_template("web/problem_notice.html", title=title, detail=detail, code=code)
        return notice, status, {**headers, "HX-Retarget": "#notices", "HX-Reswap": "innerHTML"}
    page = render_template(
        "web/problem.html",
        status=status,
        title=title,
        detail=detail,
        code=code,
        request_id=problem.get("request_id"),
    )
    return page, status, headers
