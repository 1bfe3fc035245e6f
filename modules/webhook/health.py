"""Webhook figures for the system health endpoint: recomputable from the delivery table."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import Session as ScopedSession
from app.db import utcnow

from .models import FAILED, PENDING, SENT, WebhookDelivery

WINDOWS = {"last_hour": timedelta(hours=1), "last_day": timedelta(days=1)}


def figures(session: Session, now: datetime) -> dict[str, Any]:
    """Deliveries sent and failed in the last hour and day (by when they finished), the
    pending backlog and the age in seconds of its oldest (by when it was queued; None if
    empty)."""
    result: dict[str, Any] = {}
    for name, span in WINDOWS.items():
        rows = session.execute(
            select(WebhookDelivery.status, func.count())
            .where(
                WebhookDelivery.status.in_((SENT, FAILED)),
                WebhookDelivery.finished_at >= now - span,
            )
            .group_by(WebhookDelivery.status)
        ).all()
        counts = dict(rows)
        result[name] = {"sent": counts.get(SENT, 0), "failed": counts.get(FAILED, 0)}
    pending, oldest = session.execute(
        select(func.count(), func.min(WebhookDelivery.queued_at)).where(
            WebhookDelivery.status == PENDING
        )
    ).one()
    result["pending"] = pending
    result["oldest_pending_seconds"] = (
        None if oldest is None else max((now - _aware(oldest)).total_seconds(), 0.0)
    )
    return result


def section() -> dict[str, Any]:
    """The ``webhooks`` section of ``GET /api/v1/system/health`` (``hooks.health_section``):
    :func:`figures` now, with the last hour's deliveries per second."""
    result = figures(ScopedSession(), utcnow())
    hour = result["last_hour"]
    result["last_hour"] = {**hour, "sent_per_second": round(hour["sent"] / 3600, 4)}
    return result


def _aware(value: datetime) -> datetime:
    # func.min() bypasses the column type on SQLite: the text comes back without a zone.
    from datetime import UTC

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
