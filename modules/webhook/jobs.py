"""The webhook module's jobs: thin, they call sending.py."""

from __future__ import annotations

from . import retention, sending
from .fanout import queue_send


def send_delivery(delivery_id: int) -> str | None:
    """Job: the next attempt of one delivery, if it is due (safe twice or at once)."""
    return sending.send_delivery(delivery_id)


def send_due_deliveries() -> int:
    """Periodic job: queue the sending of every delivery whose attempt is due (retries by the
    app clock, an expired claim, and a first attempt whose queued job was lost); how many."""
    due = sending.due_deliveries()
    for delivery_id, series, attempts in due:
        queue_send(delivery_id, series, attempts)
    return len(due)


def purge_expired() -> int:
    """Periodic job: finished deliveries, attempts and messages past the retention period."""
    return retention.purge_expired()
