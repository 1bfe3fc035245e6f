"""How every ``/web/`` page answers, whichever module serves it: its security headers, and the
refusals a person can act on (a login page saying why, a page saying what is not allowed)
instead of problem+json, which the rest of the app keeps."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, flash, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from app import WEB_PREFIX, http
from app.config import Settings
from app.errors import DomainError, NotFound, PermissionDenied, Unauthenticated
from app.registry import RegistryError
from modules.auth import browser
from modules.auth.csrf import CsrfRefused

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
    for entry in app.extensions["lapak.registry"].wiring.menu:
        if entry.endpoint not in app.view_functions:
            raise RegistryError(
                f"the menu entry {entry.label!r} names the endpoint {entry.endpoint!r}, which no "
                "screen serves; use '<blueprint name>.<view function>' of a hooks.screens blueprint"
            )
    app.after_request(_secure_headers)
    app.register_error_handler(Unauthenticated, _unauthenticated)
    app.register_error_handler(PermissionDenied, _refused)
    app.register_error_handler(NotFound, _refused)
    app.register_error_handler(404, _not_found)


def is_web_page() -> bool:
    return request.path == WEB_PREFIX or request.path.startswith(f"{WEB_PREFIX}/")


def local_next(target: str | None) -> str | None:
    """``target`` if it is a page of the web client on this site, else None: ``next`` must
    never send a browser elsewhere (``//evil.example``, ``/\\evil.example``, a scheme)."""
    if not target or len(target) > MAX_NEXT:
        return None
    if any(char == "\\" or ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return None  # browsers read "\" as "/" and drop tabs and newlines
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    if parts.path != WEB_PREFIX and not parts.path.startswith(f"{WEB_PREFIX}/"):
        return None
    return target


def _secure_headers(response: Response) -> Response:
    if not is_web_page():
        return response
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    if request.endpoint != "web.static":
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
    target = request.full_path.rstrip("?") if request.method == "GET" else None
    login = url_for("web.login", next=local_next(target))
    if "HX-Request" in request.headers:
        # htmx would swap the login page into a fragment: it loads it as a page instead.
        response = Response(status=401, headers={"HX-Redirect": login})
    else:
        response = redirect(login, 303)
    if browser.SESSION_COOKIE in request.cookies:
        browser.forget_session(response)
    return response


def _refused(error: DomainError) -> Any:
    if not is_web_page() or _wants_json():
        return http.handle_domain_error(error)
    if isinstance(error, NotFound):
        return _problem_page(404, error.title, error.detail, error.code)
    detail = CSRF_REFUSED if isinstance(error, CsrfRefused) else error.detail
    return _problem_page(403, error.title, detail, error.code)


def _not_found(error: HTTPException) -> Any:
    if not is_web_page() or _wants_json():
        return http.api_of().handle_http_exception(error)
    return _problem_page(404, "Not found", "There is no page at this address.", "not-found")


def _problem_page(status: int, title: str, detail: str | None, code: str) -> Any:
    page = render_template("web/problem.html", status=status, title=title, detail=detail, code=code)
    return page, status
