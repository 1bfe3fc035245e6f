"""What is kept of a request and of an audit line, handed to the batched writer.

Runs on the request path (the core's request observer and audit sink): it only builds a small
dict and appends it. A request row holds the route *template* (``/api/v1/orders/<uuid:order_id>``),
never the raw path, the query string or the body, and no header but one: the key id a refused
API-key call claimed (``X-API-Key``), kept only when it has exactly the shape of a key id, so
nothing else a caller sends (a token, a signature, a secret in a query) can reach the table.

Values are cleaned so that the database takes the row: text cut to its column, NUL characters
removed (PostgreSQL refuses them), non-finite numbers in an event's fields stored as null.
"""

from __future__ import annotations

import math
import re
from typing import Any

from flask import Request, Response, current_app, g, has_request_context, request

from app import clock
from app.http import API_PREFIX
from modules.auth.api_keys import KEY_PREFIX
from modules.auth.signed_requests import HEADER_KEY

from .models import (
    API_KEY_ID_CHARS,
    IP_CHARS,
    REQUEST_ID_CHARS,
    ROUTE_CHARS,
    AuditEvent,
    RequestLog,
)
from .writer import BatchWriter

#: A request to no route keeps this, not its path (which may hold anything).
UNMATCHED_ROUTE = "(no route)"
_API = API_PREFIX + "/"
_REQUESTS = RequestLog.__table__
_EVENTS = AuditEvent.__table__
#: Fields of an audit line never stored, whatever their value (a caller's mistake must not put
#: a credential in the table).
_SECRET_FIELD = re.compile(
    r"pass|secret|token|authori[sz]ation|signature|cookie|credential|private", re.IGNORECASE
)
#: A key id as issued (``KEY_PREFIX`` and ``secrets.token_urlsafe(16)``): a refused call's
#: claimed id is kept only in exactly this shape (never a secret pasted in the header).
_KEY_ID = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]{22}")


def writer() -> BatchWriter:
    return current_app.extensions["audit.writer"]


def observe_request(req: Request, response: Response, duration_ms: float) -> None:
    """The core's request observer: one row per API request (not the docs' static files)."""
    if not req.path.startswith(_API) or (req.endpoint or "").endswith("static"):
        return
    if not current_app.extensions["audit.settings"].request_log:
        return
    rule = req.url_rule
    principal = g.get("lapak_principal")
    api_key_id = principal.api_key_id if principal is not None else claimed_key_id(req)
    writer().add(
        _REQUESTS,
        {
            "at": clock.now(),
            "route": _text(rule.rule if rule is not None else UNMATCHED_ROUTE, ROUTE_CHARS),
            "method": _text(req.method, 10),
            "status": response.status_code,
            "latency_ms": duration_ms,
            "user_id": principal.user_id if principal is not None else None,
            "api_key_id": _text(api_key_id, API_KEY_ID_CHARS),
            "ip": _text(req.remote_addr, IP_CHARS),
            "request_id": _text(g.get("request_id"), REQUEST_ID_CHARS),
        },
    )


def claimed_key_id(req: Request) -> str | None:
    """The key id an unauthenticated request (a refused API-key call) sent in ``X-API-Key``,
    if it has exactly a key id's shape: admins can then find the refused calls of a key.
    Anything else there (a secret pasted by mistake) is not kept."""
    claimed = req.headers.get(HEADER_KEY, "").strip()
    return claimed if _KEY_ID.fullmatch(claimed) else None


def keep_audit_event(event: str, outcome: str, fields: dict[str, Any]) -> None:
    """The core's audit sink: one stored event per :func:`app.log.audit` line."""
    in_request = has_request_context()
    principal = g.get("lapak_principal") if in_request else None
    ip = fields.get("ip") or (request.remote_addr if in_request else None)
    writer().add(
        _EVENTS,
        {
            "at": clock.now(),
            "event": _text(event, 64) or "",
            "outcome": _text(outcome, 32) or "",
            "actor_user_id": principal.user_id if principal is not None else None,
            "ip": _text(str(ip), IP_CHARS) if ip else None,
            "request_id": _text(g.get("request_id"), REQUEST_ID_CHARS) if in_request else None,
            "fields": stored_fields(fields),
        },
    )


def stored_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` as stored: JSON values (others as text, non-finite numbers as null, no NUL
    character), and at no depth a field whose name suggests a secret."""
    return _json_object(fields)


def _json_object(fields: dict[Any, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in fields.items():
        name = str(key).replace("\x00", "")
        if _SECRET_FIELD.search(name):
            continue
        kept[name] = _json_value(value)
    return kept


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # JSON has no NaN nor Infinity
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return _json_object(value)
    return str(value).replace("\x00", "")


def _text(value: str | None, chars: int | None = None) -> str | None:
    """``value`` without NUL characters (PostgreSQL refuses them), cut to ``chars``; ``None``
    for nothing or an empty text."""
    if not value:
        return None
    return value.replace("\x00", "")[:chars] or None


def writer_figures() -> dict[str, Any]:
    """The health section of this process's writer: rows waiting, written and dropped."""
    return writer().figures()
