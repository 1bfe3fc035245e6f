"""The payment module's periodic work."""

from __future__ import annotations

from . import services


def expire_transactions() -> int:
    """Job: cancel the pending transactions past their expiry (safe twice or at once)."""
    return services.expire_transactions()
