"""The marketplace's periodic housekeeping."""

from __future__ import annotations

from app.db import transaction

from . import idempotency
from .config import marketplace_settings


def forget_idempotency_keys() -> int:
    """Job: delete Idempotency-Key answers older than the keep time."""
    with transaction():
        return idempotency.forget_expired(marketplace_settings().idempotency_keep_hours)
