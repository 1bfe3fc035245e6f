"""The seller module's periodic work: holds released, weekly payouts made."""

from __future__ import annotations

from . import balances


def release_due_holds() -> int:
    """Job: make available the shares whose hold is over (safe twice or at once)."""
    return balances.release_due_holds()
