"""Helpers for the audit tests: the writer flushed, rows read and written straight on the
database (the primary), known rows inserted for the figures to be checked against."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from flask import Flask
from sqlalchemy import insert, select, text

from modules.audit.models import AuditEvent, RequestLog
from modules.audit.writer import BatchWriter

AUDIT = "/api/v1/audit"
HEALTH = "/api/v1/system/health"


def writer_of(app: Flask) -> BatchWriter:
    return app.extensions["audit.writer"]


def flushed(app: Flask) -> BatchWriter:
    """The app's writer once every row it holds is written."""
    writer = writer_of(app)
    writer.flush()
    assert writer.waiting == 0
    return writer


def request_rows(app: Flask) -> list[dict[str, Any]]:
    with app.extensions["lapak.db"].primary.connect() as connection:
        rows = connection.execute(select(RequestLog.__table__).order_by(RequestLog.id))
        return [dict(row._mapping) for row in rows]


def event_rows(app: Flask) -> list[dict[str, Any]]:
    with app.extensions["lapak.db"].primary.connect() as connection:
        rows = connection.execute(select(AuditEvent.__table__).order_by(AuditEvent.id))
        return [dict(row._mapping) for row in rows]


def clear_logs(app: Flask) -> None:
    """Write what the writer holds, then empty both tables (the logins of the fixtures)."""
    flushed(app)
    with app.extensions["lapak.db"].primary.begin() as connection:
        connection.execute(text("DELETE FROM audit_request_log"))
        connection.execute(text("DELETE FROM audit_event"))


def request_row(
    at: datetime,
    *,
    status: int = 200,
    latency_ms: float = 10.0,
    route: str = "/api/v1/modules",
    method: str = "GET",
    user_id: int | None = None,
    api_key_id: str | None = None,
) -> dict[str, Any]:
    return {
        "at": at,
        "route": route,
        "method": method,
        "status": status,
        "latency_ms": latency_ms,
        "user_id": user_id,
        "api_key_id": api_key_id,
        "ip": "127.0.0.1",
        "request_id": None,
    }


def insert_requests(app: Flask, rows: Sequence[dict[str, Any]]) -> None:
    with app.extensions["lapak.db"].primary.begin() as connection:
        connection.execute(insert(RequestLog.__table__), list(rows))


def insert_events(app: Flask, rows: Sequence[dict[str, Any]]) -> None:
    with app.extensions["lapak.db"].primary.begin() as connection:
        connection.execute(insert(AuditEvent.__table__), list(rows))
