"""Reading the API log and the audit events, and purging them after the retention period."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, bindparam, select

from app import clock
from app.db import delete_in_batches
from app.http import KeysetListing, Page
from app.security import Principal
from modules.user.models import User

from .config import audit_settings
from .models import AuditEvent, RequestLog

log = logging.getLogger(__name__)

_LOG = RequestLog.__table__
_EVENTS = AuditEvent.__table__
_USERS = User.__table__

REQUEST_COLUMNS = (
    "id",
    "at",
    "route",
    "method",
    "status",
    "latency_ms",
    "user",
    "api_key_id",
    "ip",
    "request_id",
)
REQUEST_ROWS = select(
    _LOG.c.id,
    _LOG.c.at,
    _LOG.c.route,
    _LOG.c.method,
    _LOG.c.status,
    _LOG.c.latency_ms,
    _USERS.c.uuid.label("user"),
    _LOG.c.api_key_id,
    _LOG.c.ip,
    _LOG.c.request_id,
).select_from(_LOG.outerjoin(_USERS, _USERS.c.id == _LOG.c.user_id))

_REQUEST_PAGES = KeysetListing([_LOG.c.at, _LOG.c.id], descending=True)
#: Each filter of :class:`RequestFilter` as a condition, its value the parameter of that name.
_REQUEST_FILTERS: dict[str, Any] = {
    "since": _LOG.c.at >= bindparam("since"),
    "before": _LOG.c.at < bindparam("before"),
    "status": _LOG.c.status == bindparam("status"),
    "route": _LOG.c.route == bindparam("route"),
    "method": _LOG.c.method == bindparam("method"),
    "user": _LOG.c.user_id
    == select(_USERS.c.id).where(_USERS.c.uuid == bindparam("user")).scalar_subquery(),
    "api_key": _LOG.c.api_key_id == bindparam("api_key"),
}
#: A seller sees the calls their own API keys made, nothing else (not their own logged-in calls,
#: which the web client makes for them).
_SELLER_ROWS = (_LOG.c.user_id == bindparam("viewer_id"), _LOG.c.api_key_id.is_not(None))

EVENT_COLUMNS = ("id", "at", "event", "outcome", "actor", "ip", "request_id", "fields")
EVENT_ROWS = select(
    _EVENTS.c.id,
    _EVENTS.c.at,
    _EVENTS.c.event,
    _EVENTS.c.outcome,
    _USERS.c.uuid.label("actor"),
    _EVENTS.c.ip,
    _EVENTS.c.request_id,
    _EVENTS.c.fields,
).select_from(_EVENTS.outerjoin(_USERS, _USERS.c.id == _EVENTS.c.actor_user_id))
_EVENT_PAGES = KeysetListing([_EVENTS.c.at, _EVENTS.c.id], descending=True)
_EVENT_FILTERS: dict[str, Any] = {
    "since": _EVENTS.c.at >= bindparam("since"),
    "before": _EVENTS.c.at < bindparam("before"),
    "event": _EVENTS.c.event == bindparam("event"),
    "outcome": _EVENTS.c.outcome == bindparam("outcome"),
}


@dataclass(frozen=True)
class RequestFilter:
    since: datetime | None = None
    before: datetime | None = None
    status: int | None = None
    route: str | None = None
    method: str | None = None
    user: Any = None
    api_key: str | None = None


@dataclass(frozen=True)
class EventFilter:
    since: datetime | None = None
    before: datetime | None = None
    event: str | None = None
    outcome: str | None = None


def list_requests(
    actor: Principal, filters: RequestFilter, *, limit: int, cursor: str | None
) -> Page:
    """API log rows, newest first: every row for admins; a seller's own API keys' for sellers
    (a ``user`` filter of theirs is then ignored). Items are dicts of :data:`REQUEST_COLUMNS`."""
    values = _given(filters, _REQUEST_FILTERS)
    seller = not actor.has_role("admin")
    if seller:
        values.pop("user", None)
        values["viewer_id"] = actor.user_id
    given = tuple(name for name in values if name != "viewer_id")

    def build() -> Select[Any]:
        statement = REQUEST_ROWS.where(*(_REQUEST_FILTERS[name] for name in given))
        return statement.where(*_SELLER_ROWS) if seller else statement

    page = _REQUEST_PAGES.page((seller, given), build, values, limit=limit, cursor=cursor)
    return Page([dict(zip(REQUEST_COLUMNS, row, strict=True)) for row in page.items],
                page.next_cursor)  # fmt: skip


def list_events(filters: EventFilter, *, limit: int, cursor: str | None) -> Page:
    """Stored audit events, newest first (admins). Items are dicts of :data:`EVENT_COLUMNS`."""
    values = _given(filters, _EVENT_FILTERS)
    given = tuple(values)

    def build() -> Select[Any]:
        return EVENT_ROWS.where(*(_EVENT_FILTERS[name] for name in given))

    page = _EVENT_PAGES.page(given, build, values, limit=limit, cursor=cursor)
    return Page([dict(zip(EVENT_COLUMNS, row, strict=True)) for row in page.items],
                page.next_cursor)  # fmt: skip


def _given(filters: Any, conditions: dict[str, Any]) -> dict[str, Any]:
    """The filters given, in the order of ``conditions`` (part of the statement's shape)."""
    return {
        name: getattr(filters, name)
        for name in conditions
        if getattr(filters, name) not in (None, "")
    }


# --- retention -------------------------------------------------------------------------------


def purge_expired(batch_rows: int | None = None) -> int:
    """Delete API log rows and audit events older than the retention period, ``batch_rows`` per
    statement (one short transaction each, so the purge never holds long locks nor bloats one
    transaction); returns how many rows went. The periodic job; safe to run concurrently."""
    settings = audit_settings()
    size = batch_rows or settings.purge_batch_rows
    cutoff = clock.now() - timedelta(days=settings.retention_days)
    purged = sum(delete_in_batches(table, table.c.at < cutoff, size) for table in (_LOG, _EVENTS))
    if purged:
        log.info("purged %d audit rows older than %s", purged, cutoff.isoformat())
    return purged
