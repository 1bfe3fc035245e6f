"""The stored API log and audit events: append-only rows, purged after the retention period.

No foreign keys: a log row outlives nothing it points at and must never block (or be blocked
by) a change to users; ``user_id`` is the user's internal id at the time of the request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, Index, Integer, SmallInteger, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JsonDocument

ROUTE_CHARS = 200
IP_CHARS = 45  # the longest IPv6 text form
REQUEST_ID_CHARS = 128
API_KEY_ID_CHARS = 64

#: 64-bit on PostgreSQL (a busy API passes 2^31 rows); SQLite's INTEGER PRIMARY KEY is 64-bit
#: already and autoincrements only under that exact type.
_ID = BigInteger().with_variant(Integer, "sqlite")


class RequestLog(Base):
    """One API request: what was called (the route template, never the raw path, query or
    body), how it ended, how long it took and who called."""

    __tablename__ = "audit_request_log"
    __table_args__ = (
        # The listing's keyset order, and (on PostgreSQL, which can read status and latency
        # from the index alone) the health report's hour and day aggregates.
        Index(
            "ix_audit_request_log_at_id",
            "at",
            "id",
            postgresql_include=("status", "latency_ms"),
        ),
        # The admin's user filter.
        Index("ix_audit_request_log_user_at_id", "user_id", "at", "id"),
        # A seller's view: the calls their API keys made.
        Index(
            "ix_audit_request_log_user_key_at_id",
            "user_id",
            "at",
            "id",
            postgresql_where=text("api_key_id IS NOT NULL"),
            sqlite_where=text("api_key_id IS NOT NULL"),
        ),
        # The admin's API key filter.
        Index("ix_audit_request_log_key_at_id", "api_key_id", "at", "id"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    at: Mapped[datetime] = mapped_column()
    route: Mapped[str] = mapped_column(String(ROUTE_CHARS))
    method: Mapped[str] = mapped_column(String(10))
    status: Mapped[int] = mapped_column(SmallInteger)
    latency_ms: Mapped[float] = mapped_column(Float)
    user_id: Mapped[int | None] = mapped_column(Integer)
    api_key_id: Mapped[str | None] = mapped_column(String(API_KEY_ID_CHARS))
    ip: Mapped[str | None] = mapped_column(String(IP_CHARS))
    request_id: Mapped[str | None] = mapped_column(String(REQUEST_ID_CHARS))


class AuditEvent(Base):
    """One :func:`app.log.audit` line: an authentication outcome and its (secret-free) fields."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_at_id", "at", "id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    at: Mapped[datetime] = mapped_column()
    event: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32))
    #: The caller of the request that caused it, when one was authenticated.
    actor_user_id: Mapped[int | None] = mapped_column(Integer)
    ip: Mapped[str | None] = mapped_column(String(IP_CHARS))
    request_id: Mapped[str | None] = mapped_column(String(REQUEST_ID_CHARS))
    fields: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
