"""CSRF tokens of a browser's session: what a state-changing request riding on the session
cookie must also carry.

A synchronizer token derived from the session (OWASP's "HMAC-based token"): HMAC-SHA256 of the
session id under a key derived from the app's secret with a purpose of its own. It needs no
storage, is the same on every page of a session, changes with each login and is worth nothing
once its session has ended. A cross-site page can make the browser send the cookie but cannot
read the token (the cookie is HttpOnly, the pages are same-origin only).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

from flask import request

from app.errors import PermissionDenied

#: The form field and the header that carry the token (the header wins when both are sent).
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
#: Methods that change nothing (RFC 9110 9.2.1); every other one needs the token.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_MIMETYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
PURPOSE = b"lapak.auth.csrf"


class CsrfRefused(PermissionDenied):
    """A state-changing request on the session cookie without the session's token."""


class CsrfMissing(CsrfRefused):
    code = "csrf-missing"
    title = "The CSRF token is missing"


class CsrfInvalid(CsrfRefused):
    code = "csrf-invalid"
    title = "The CSRF token is not valid"


def derive_key(secret_key: str) -> bytes:
    """The key of every CSRF token of this app (from the app's secret, for this purpose only)."""
    return hmac.new(secret_key.encode(), PURPOSE, hashlib.sha256).digest()


def token_for(key: bytes, session_id: uuid.UUID) -> str:
    """The CSRF token of the session ``session_id``."""
    return hmac.new(key, session_id.bytes, hashlib.sha256).hexdigest()


def check(key: bytes, session_id: uuid.UUID) -> None:
    """Let a safe request through; any other must carry the session's token, in the header
    ``X-CSRF-Token`` or the form field ``csrf_token`` (read only when no header is sent: reading
    a form parses the body under the app's body limit, so a large upload sends the header)."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(HEADER)
    if sent is None and request.mimetype in FORM_MIMETYPES:
        sent = request.form.get(FIELD)
    if not sent:
        raise CsrfMissing(
            f"a change made with the browser's session needs its CSRF token: send the form "
            f"field {FIELD} or the header {HEADER}"
        )
    expected = token_for(key, session_id)
    if not hmac.compare_digest(sent.encode(errors="replace"), expected.encode()):
        raise CsrfInvalid(
            "the CSRF token does not belong to this session (a page from before the last "
            "login?): reload the page and try again"
        )
