"""The seller module's periodic work: holds released, weekly payouts made."""

from __future__ import annotations

from . import balances, payouts


def release_due_holds() -> int:
    """Job: make available the shares whose hold is over (safe twice or at once)."""
    return balances.release_due_holds()


def pay_out_weekly() -> int:
    """Job: make today's weekly settlements (once per seller, day and currency)."""
    return payouts.pay_out_weekly()


def send_automatic_payouts() -> int:
    """Job: send the pending settlements through an adapter that pays by itself."""
    return payouts.send_automatic_payouts()
