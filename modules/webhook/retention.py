"""Retention: finished deliveries, their attempts and their messages go after
``LAPAK_WEBHOOK_RETENTION_DAYS`` (30 by default), as the API logs do.

A pending delivery stays whatever its age (it is still being sent); a message stays while any
delivery of it does. An endpoint's failing stretch is kept on the endpoint itself
(``failing_since``), so purging old attempts never changes when it is disabled.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, exists

from app import clock
from app.db import delete_in_batches

from .config import webhook_settings
from .models import FAILED, SENT, WebhookAttempt, WebhookDelivery, WebhookMessage

log = logging.getLogger(__name__)

#: Rows deleted per short transaction.
PURGE_BATCH_ROWS = 5000

_DELIVERIES = WebhookDelivery.__table__
_ATTEMPTS = WebhookAttempt.__table__
_MESSAGES = WebhookMessage.__table__


def purge_expired(batch_rows: int = PURGE_BATCH_ROWS) -> int:
    """Delete what finished before the retention period; how many rows went (deliveries,
    their attempts and messages). The periodic job; safe to run concurrently."""
    cutoff = clock.now() - timedelta(days=webhook_settings().retention_days)

    def attempts_of(session: Any, delivery_ids: list[int]) -> None:
        session.execute(delete(_ATTEMPTS).where(_ATTEMPTS.c.delivery_id.in_(delivery_ids)))

    deliveries = delete_in_batches(
        _DELIVERIES,
        _DELIVERIES.c.status.in_((SENT, FAILED)) & (_DELIVERIES.c.finished_at < cutoff),
        batch_rows,
        dependents=attempts_of,
    )
    messages = delete_in_batches(
        _MESSAGES,
        (_MESSAGES.c.created_at < cutoff)
        & ~exists().where(_DELIVERIES.c.message_id == _MESSAGES.c.id),
        batch_rows,
    )
    if deliveries or messages:
        log.info(
            "purged %d webhook deliveries and %d messages finished before %s",
            deliveries,
            messages,
            cutoff.isoformat(),
        )
    return deliveries + messages
