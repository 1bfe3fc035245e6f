"""The system health report: what an operator looks at first.

Request figures come from the stored API log. Percentiles are PostgreSQL's ``percentile_cont``
(linear interpolation between the two nearest latencies) computed in the database; on SQLite,
which has no such aggregate, the window's latencies are read in order and the same
interpolation is done in Python, so both give the same figure for the same rows.

The report is kept for ``LAPAK_AUDIT_HEALTH_CACHE_SECONDS`` per process (a dashboard polled by
several people costs one report per interval, not one per poll), and on PostgreSQL its
statements are bounded by :data:`STATEMENT_TIMEOUT_MS` (a slow table gives a section's
``error``, never a request stuck behind it).
"""

from __future__ import annotations

import importlib.metadata
import math
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import and_, case, func, select, text

from app import clock
from app.db import Session, get_database
from app.events import FAILED, PENDING, OutboxEvent
from app.health import readiness_checks, readiness_status
from app.jobs import get_jobs

from .config import audit_settings
from .models import RequestLog

WINDOWS = {"last_hour": timedelta(hours=1), "last_day": timedelta(days=1)}
#: The longest a statement of the report may run on PostgreSQL.
STATEMENT_TIMEOUT_MS = 5000
_LOG = RequestLog.__table__


def system_health() -> dict[str, Any]:
    """Everything ``GET /api/v1/system/health`` shows (the primary's figures, not a replica's),
    as computed at most ``health_cache_seconds`` ago by this process."""
    keep_for = audit_settings().health_cache_seconds
    now = clock.now()
    cached = current_app.extensions.get("audit.health_report")
    if keep_for and cached is not None:
        made_at, report = cached
        if timedelta(0) <= now - made_at < timedelta(seconds=keep_for):
            return report
    report = fresh_system_health()
    if keep_for:
        current_app.extensions["audit.health_report"] = (now, report)
    return report


def fresh_system_health() -> dict[str, Any]:
    """The report computed now."""
    registry = current_app.extensions["lapak.registry"]
    checks = readiness_checks()
    report: dict[str, Any] = {
        "status": readiness_status(checks),
        "version": _version(),
        "uptime_seconds": round(time.monotonic() - current_app.extensions["audit.started"], 3),
        "modules": [{"name": m.name, "version": m.version} for m in registry.manifests],
        "checks": checks,
        "replicas": {
            name: {key: check.get(key) for key in ("ok", "lag_bytes", "lag_seconds")}
            for name, check in checks.items()
            if name not in ("primary", "redis")
        },
    }
    report["requests"] = _guarded(_bounded(request_figures))
    report["outbox"] = _guarded(_bounded(outbox_figures))
    report["jobs"] = _guarded(lambda: get_jobs().figures())
    sections = {}
    for name, figures in registry.wiring.health_sections.items():
        sections[name] = _guarded(figures)
    report["sections"] = sections
    return report


def _guarded(figures: Any) -> dict[str, Any]:
    """``figures()``, or ``{"error": ...}`` naming what failed: one source down (Redis, the
    database) leaves the rest of the report standing."""
    try:
        return figures()
    except Exception as error:  # reported, not raised: the report is for when things fail
        Session.remove()  # a failed statement leaves nothing behind for the next section
        return {"error": type(error).__name__}


def _bounded(figures: Any) -> Any:
    """``figures`` with its statements bounded by :data:`STATEMENT_TIMEOUT_MS` on PostgreSQL
    (for the rest of the request's transaction: the report reads nothing else after)."""

    def bounded() -> dict[str, Any]:
        if get_database().is_postgresql:
            Session().execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
        return figures()

    return bounded


def _version() -> str:
    try:
        return importlib.metadata.version("lapak")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def request_figures() -> dict[str, Any]:
    """Per window: requests, 4xx and 5xx counts and rates, p50 and p95 latency (ms)."""
    now = clock.now()
    return {name: window_figures(now - span) for name, span in WINDOWS.items()}


def window_figures(since: Any) -> dict[str, Any]:
    session = Session()
    in_window = _LOG.c.at >= since
    counts = select(
        func.count(),
        func.coalesce(func.sum(case((_LOG.c.status >= 500, 1), else_=0)), 0),
        func.coalesce(
            func.sum(case((and_(_LOG.c.status >= 400, _LOG.c.status < 500), 1), else_=0)), 0
        ),
    ).where(in_window)
    if get_database().is_postgresql:
        counts = counts.add_columns(
            func.percentile_cont(0.5).within_group(_LOG.c.latency_ms),
            func.percentile_cont(0.95).within_group(_LOG.c.latency_ms),
        )
        total, server_errors, client_errors, p50, p95 = session.execute(counts).one()
    else:
        total, server_errors, client_errors = session.execute(counts).one()
        latencies = list(
            session.scalars(select(_LOG.c.latency_ms).where(in_window).order_by(_LOG.c.latency_ms))
        )
        p50, p95 = percentile_cont(latencies, 0.5), percentile_cont(latencies, 0.95)
    return {
        "requests": total,
        "client_errors": client_errors,
        "server_errors": server_errors,
        "client_error_rate": client_errors / total if total else None,
        "server_error_rate": server_errors / total if total else None,
        "latency_p50_ms": p50,
        "latency_p95_ms": p95,
    }


def percentile_cont(ordered: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's ``percentile_cont(fraction)`` of ``ordered`` (ascending): the value at
    position ``fraction * (n - 1)``, interpolated between its two neighbours."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def outbox_figures() -> dict[str, Any]:
    """Events waiting for delivery, the age of the oldest one, and those that failed for good."""
    outbox = OutboxEvent.__table__
    pending, oldest = (
        Session()
        .execute(
            select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.status == PENDING)
        )
        .one()
    )
    failed = Session().scalar(select(func.count()).where(outbox.c.status == FAILED))
    if oldest is not None and oldest.tzinfo is None:  # SQLite's text, read without the type
        oldest = oldest.replace(tzinfo=clock.now().tzinfo)
    return {
        "pending": pending,
        "failed": failed,
        "oldest_pending_age_seconds": (
            round((clock.now() - oldest).total_seconds(), 3) if oldest is not None else None
        ),
    }
