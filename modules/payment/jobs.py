"""The payment module's periodic work."""

from __future__ import annotations

import uuid

from . import services


def expire_transactions() -> int:
    """Job: cancel the pending transactions past their expiry (safe twice or at once)."""
    return services.expire_transactions()


def send_refund(refund_uuid: str) -> bool:
    """Job: the provider that took a refund's payment sends it back (see services)."""
    return services.send_refund(uuid.UUID(refund_uuid))


def sweep_refunds() -> int:
    """Job: send the provider refunds whose job was lost (Redis down when they were made)."""
    sent = 0
    for refund_uuid in services.pending_provider_refunds():
        sent += services.send_refund(refund_uuid)
    return sent
