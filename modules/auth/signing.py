"""What an API-key request signs, and the HMAC over it (the server's half of the scheme).

Version ``v1`` (every key unless it opted into ``legacy``) signs, as UTF-8::

    f"{timestamp}\\n{METHOD}\\n{target}\\n{sha256(body).hexdigest()}"

* ``timestamp``: the ``X-Timestamp`` header exactly as sent (whole unix seconds).
* ``METHOD``: the HTTP method in upper case.
* ``target``: the path as sent (percent-encoded per RFC 3986: unreserved characters and
  sub-delimiters as they are, other bytes as ``%XX`` in upper case), then ``?`` and the query
  string exactly as sent (not re-ordered, not decoded); **no** ``?`` when the query is empty.
* the body's SHA-256 in lower-case hex (that of no bytes for a GET).

``X-Signature`` is the lower-case hex HMAC-SHA256 of that string under the key's secret.

``legacy`` is the PayCoreX form, HMAC-SHA256 over ``timestamp + body`` (no separator): weaker,
because neither the method nor the path is signed, so one captured signature of a GET (empty
body) is valid for every GET path in the window, and two GETs in one second share a signature
(the replay cache then refuses the second). Offered only so existing integrations can move over.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

from .models import SIGNATURE_LEGACY

#: Characters a path keeps as they are (RFC 3986 unreserved, sub-delims, ":", "@" and "/").
PATH_SAFE = "/-._~!$&'()*+,;=:@"


def request_target(path: str, query_string: bytes) -> str:
    """``path?query`` as signed: ``path`` decoded (as WSGI gives it), ``query_string`` raw."""
    target = quote(path, safe=PATH_SAFE)
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
