"""What is kept of a request and of an audit line, handed to the batched writer.

Runs on the request path (the core's request observer and audit sink): it only builds a small
dict and appends it. A request row holds the route *template* (``/api/v1/orders/<uuid:order_id>``),
never the raw path, the query string or the body, and no header at all: nothing a caller sends
(a token, a signature, a secret in a query) can reach the table.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Request, Response, current_app, g, has_request_context, request

from app import clock
from app.http import API_PREFIX

from .models import (
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
    writer().add(
        _REQUESTS,
        {
            "at": clock.now(),
            "route": (rule.rule if rule is not None else UNMATCHED_ROUTE)[:ROUTE_CHARS],
            "method": req.method[:10],
            "status": response.status_code,
            "latency_ms": duration_ms,
            "user_id": principal.user_id if principal is not None else None,
            "api_key_id": principal.api_key_id if principal is not None else None,
            "ip": (req.remote_addr or "")[:IP_CHARS] or None,
            "request_id": (g.get("request_id") or "")[:REQUEST_ID_CHARS] or None,
        },
    )


def keep_audit_event(event: str, outcome: str, fields: dict[str, Any]) -> None:
    """The core's audit sink: one stored event per :func:`app.log.audit` line."""
    in_request = has_request_context()
    principal = g.get("lapak_principal") if in_request else None
    ip = fields.get("ip") or (request.remote_addr if in_request else None)
    writer().add(
        _EVENTS,
        {
            "at": clock.now(),
            "event": event[:64],
            "outcome": outcome[:32],
            "actor_user_id": principal.user_id if principal is not None else None,
            "ip": str(ip)[:IP_CHARS] if ip else None,
            "request_id": (g.get("request_id") or "")[:REQUEST_ID_CHARS] or None
            if in_request
            else None,
            "fields": stored_fields(fields),
        },
    )


def stored_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` as stored: JSON values (others as text), none whose name suggests a secret."""
    kept: dict[str, Any] = {}
    for name, value in fields.items():
        if _SECRET_FIELD.search(name):
            continue
        kept[name] = _json_value(value)
    return kept


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    return str(value)


def writer_figures() -> dict[str, Any]:
    """The health section of this process's writer: rows waiting, written and dropped."""
    return writer().figures()
