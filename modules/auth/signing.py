"""What an API-key request signs, and the HMAC over it (the server's half of the scheme).

Version ``v1`` (every key unless it opted into ``legacy``) signs, as UTF-8::

    f"{timestamp}\\n{METHOD}\\n{target}\\n{sha256(body).hexdigest()}"

* ``timestamp``: the ``X-Timestamp`` header exactly as sent (whole unix seconds).
* ``METHOD``: the HTTP method in upper case.
* ``target``: the path exactly as sent (not decoded, not normalised), then ``?`` and the query
  string exactly as sent (not re-ordered, not decoded); **no** ``?`` when the query is empty.
  The server takes the raw path from the WSGI server (gunicorn's ``RAW_URI``, else
  ``REQUEST_URI``); a server that gives neither leaves only the decoded path, which is
  re-encoded per RFC 3986 (unreserved characters, sub-delimiters, ``:``, ``@`` and ``/`` as
  they are, other bytes as ``%XX`` in upper case), what common clients send anyway.
* the body's SHA-256 in lower-case hex (that of no bytes for a GET).

``X-Signature`` is the lower-case hex HMAC-SHA256 of that string under the key's secret.

``legacy`` is the PayCoreX form, HMAC-SHA256 over ``timestamp + body`` (no separator): weaker,
because neither the method nor the path is signed, so one captured signature of a GET (empty
body) is valid for every GET path in the window, and two GETs in one second share a signature
(the replay store then refuses the second); and the signature of an empty body fits every
empty-body request, so a legacy key's POST, PUT, PATCH and DELETE must carry a body (refused
with ``api-legacy-empty-body`` otherwise). Offered only so existing integrations can move over.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from .models import SIGNATURE_LEGACY

#: Characters a path keeps as they are (RFC 3986 unreserved, sub-delims, ":", "@" and "/").
PATH_SAFE = "/-._~!$&'()*+,;=:@"


def raw_path(environ: Mapping[str, Any]) -> str | None:
    """The request's path exactly as the client sent it, if the WSGI server tells it
    (gunicorn's ``RAW_URI``, else ``REQUEST_URI``; only the origin form ``/path?query``)."""
    for name in ("RAW_URI", "REQUEST_URI"):
        uri = environ.get(name)
        if isinstance(uri, str) and uri.startswith("/"):
            try:  # WSGI strings carry the bytes as latin-1; the signed string is UTF-8
                return uri.partition("?")[0].encode("latin-1").decode("utf-8")
            except UnicodeError:
                return None
    return None


def request_target(path: str, query_string: bytes, raw: str | None = None) -> str:
    """``path?query`` as signed: the ``raw`` path as sent if known, else ``path`` (decoded, as
    WSGI gives it) encoded again; ``query_string`` as sent."""
    target = raw if raw is not None else quote(path, safe=PATH_SAFE)
    query = query_string.decode("latin-1")
    return f"{target}?{query}" if query else target


def signed_message(version: str, timestamp: str, method: str, target: str, body: bytes) -> bytes:
    """The bytes a request of signature ``version`` signs (see the module docstring)."""
    if version == SIGNATURE_LEGACY:
        return timestamp.encode() + body
    digest = hashlib.sha256(body).hexdigest()
    return f"{timestamp}\n{method.upper()}\n{target}\n{digest}".encode()


def sign(secret: str, message: bytes) -> str:
    """The lower-case hex HMAC-SHA256 of ``message`` under ``secret``."""
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def matches(secret: str, message: bytes, signature: str) -> bool:
    """Whether ``signature`` is ``message``'s under ``secret`` (constant time)."""
    # Bytes: compare_digest refuses str with non-ASCII characters (a header may carry them).
    sent = signature.strip().lower().encode("utf-8", "replace")
    return hmac.compare_digest(sign(secret, message).encode(), sent)
