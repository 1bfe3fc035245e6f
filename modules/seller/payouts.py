"""Payout adapters: who pays a settlement to the seller's bank account.

An adapter is chosen by ``LAPAK_SETTLEMENT_PAYOUT_ADAPTER`` and recorded on each settlement.
``manual`` (built in) sends nothing: staff pay by hand and mark the settlement ``completed`` or
``failed``. An adapter for a bank's API implements :meth:`PayoutAdapter.send`, called after the
settlement is committed, outside any database transaction (a bank call never holds a lock), and
answers with the outcome the settlement then moves to through the same named transitions staff
use (:mod:`.settlements`).

The account number is unsealed only into the :class:`PayoutOrder` handed to ``send``; it is
never logged, stored on the settlement or shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from flask import Flask, current_app

from app.config import Settings, SettingsError

KEY = "seller.payout_adapters"


@dataclass(frozen=True)
class PayoutOrder:
    settlement: str
    amount: Decimal
    currency: str
    bank_code: str
    holder_name: str
    #: Unsealed for the adapter only; ``repr`` leaves it out so a log line cannot show it.
    account_number: str = field(repr=False)


@dataclass(frozen=True)
class PayoutOutcome:
    """``processing`` (the bank took it), ``completed`` or ``failed`` (with a reason)."""

    state: str
    reference: str | None = None
    reason: str | None = None


class PayoutAdapter(Protocol):
    code: str
    #: False: staff pay by hand; ``send`` is never called.
    automatic: bool

    def send(self, order: PayoutOrder) -> PayoutOutcome: ...


class ManualPayout:
    """Staff transfer the money themselves and record the outcome."""

    code = "manual"
    automatic = False

    def send(self, order: PayoutOrder) -> PayoutOutcome:
        raise RuntimeError("manual payouts are paid by staff, not sent")


def register(app: Flask, adapter: PayoutAdapter) -> None:
    """Make ``adapter`` choosable by ``LAPAK_SETTLEMENT_PAYOUT_ADAPTER`` (call from a setup)."""
    app.extensions.setdefault(KEY, {})[adapter.code] = adapter


def install(app: Flask, settings: Settings) -> None:
    """Register the built-in adapters (a bank's goes here too), then check the setting names
    one of them: the app refuses to start otherwise."""
    register(app, ManualPayout())
    check_configured(app, settings)


def check_configured(app: Flask, settings: Settings) -> None:
    from .config import SellerSettings

    wanted = SellerSettings.from_settings(settings).payout_adapter
    known = app.extensions.get(KEY, {})
    if wanted not in known:
        raise SettingsError(
            f"LAPAK_SETTLEMENT_PAYOUT_ADAPTER: {wanted!r} is not a payout adapter "
            f"(one of {', '.join(sorted(known))})"
        )


def adapter(code: str) -> PayoutAdapter:
    return current_app.extensions[KEY][code]
