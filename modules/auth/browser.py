"""A browser's session: an ordinary Lapak session whose access token lives in a cookie.

:func:`log_in` is the API's login (the same throttle, audit and single-session rule);
:func:`keep_session` puts its token in the ``__Host-lapak_session`` cookie: HttpOnly (no script
reads it), SameSite=Lax (other sites' forms and fetches do not carry it), Secure, Path=/ (the web
pages and the event stream), no Domain, gone when the session reaches its absolute expiry. In
``LAPAK_ENV=development`` (http, no TLS) it is not Secure, so it cannot have the ``__Host-``
prefix either: it is ``lapak_session`` there (:func:`session_cookie`). The authenticator reads
the cookie in use only for views that accept a browser (``@requires(..., browser=True)``) and
checks it exactly as a bearer token; a state-changing request on it needs the session's
:func:`csrf_token` too (``csrf.py``).
"""

from __future__ import annotations

import math

from flask import Response, current_app, request

from app.db import utcnow
from app.security import current_principal

from . import csrf, services
from .services import LoginResult, cookies_are_secure

__all__ = [
    "cookies_are_secure",
    "csrf_token",
    "forget_session",
    "keep_session",
    "log_in",
    "log_out",
    "session_cookie",
]


def log_in(email: str, password: str) -> LoginResult:
    """Log in from this request's browser (see ``services.login``: every other session of the
    user ends; wrong credentials, a lockout or an outage raise as for the API)."""
    return services.login(
        email, password, ip=request.remote_addr, user_agent=request.headers.get("User-Agent")
    )


def keep_session(response: Response, login: LoginResult) -> None:
    """Set the session cookie of ``login`` on ``response``."""
    lifetime = (login.session.absolute_expires_at - utcnow()).total_seconds()
    response.set_cookie(
        session_cookie(),
        login.token,
        max_age=max(math.floor(lifetime), 0),
        path="/",
        secure=_secure(),
        httponly=True,
        samesite="Lax",
    )


def forget_session(response: Response) -> None:
    """Clear the session cookie (the same attributes, so the browser replaces it)."""
    response.delete_cookie(
        session_cookie(), path="/", secure=_secure(), httponly=True, samesite="Lax"
    )


def log_out(response: Response) -> None:
    """End the current browser session (call behind ``@requires(browser=True)``) and clear its
    cookie."""
    services.logout()
    forget_session(response)


def csrf_token() -> str:
    """The CSRF token of the current browser session (call behind ``@requires(browser=True)``):
    what its forms put in the field ``csrf_token`` and its scripts in ``X-CSRF-Token``."""
    principal = current_principal()
    if principal is None or principal.session_id is None:
        raise services.MissingCredentials("this needs a logged-in session")
    return csrf.token_for(services.runtime().csrf_key, principal.session_id)


def session_cookie() -> str:
    """The name of the session cookie in this app (the one the authenticator reads)."""
    return services.runtime().session_cookie


def _secure() -> bool:
    return cookies_are_secure(current_app.extensions["lapak.settings"])
