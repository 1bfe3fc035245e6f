"""Payout adapters (who pays a settlement to the seller's bank account), the job that hands
pending settlements to an adapter that pays by itself, and the weekly payout days.

An adapter is chosen by ``LAPAK_SETTLEMENT_PAYOUT_ADAPTER`` and recorded on each settlement.
``manual`` (built in) sends nothing: staff pay by hand and mark the settlement ``completed`` or
``failed``. An adapter for a bank's API implements :meth:`PayoutAdapter.send`, called after the
settlement is committed, outside any database transaction (a bank call never holds a lock), and
answers with the outcome the settlement then moves to through the same named transitions staff
use (:mod:`.settlements`). An adapter that raises leaves its settlement ``processing`` for staff
(the error is logged with the settlement's name) and the job goes on with the next one.

The account number is unsealed only into the :class:`PayoutOrder` handed to ``send``; it is
never logged, stored on the settlement or shown.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Protocol

from flask import Flask, current_app
from sqlalchemy import and_, or_, select

from app.config import Settings
from app.db import Session, transaction, utcnow
from app.errors import ServiceUnavailable
from app.vault import Unsealed
from modules.ledger.models import Account
from modules.ledger.registry import registry
from modules.marketplace.config import marketplace_settings

from . import settlements
from .config import seller_settings
from .models import WEEKDAYS, SellerProfile, Settlement
from .profiles import locked_profile, seller_by_id

KEY = "seller.payout_adapters"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PayoutOrder:
    settlement: str
    amount: Decimal
    currency: str
    bank_code: str
    holder_name: str
    #: Unsealed for the adapter only; ``repr`` leaves it out so a log line cannot show it.
    account_number: Unsealed = field(repr=False)


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


def install(app: Flask, _settings: Settings) -> None:
    """Register the built-in adapters (a bank's goes here too).

    Whether ``LAPAK_SETTLEMENT_PAYOUT_ADAPTER`` names a registered adapter is checked at use
    (:func:`configured`), not here: a module providing an adapter depends on this one, so its
    setup runs after this, and the app has no step after every setup.
    """
    register(app, ManualPayout())


class PayoutAdapterNotConfigured(ServiceUnavailable):
    code = "payout-adapter-not-configured"
    title = "Payouts are not configured"


def configured() -> PayoutAdapter:
    """The adapter ``LAPAK_SETTLEMENT_PAYOUT_ADAPTER`` names; a 503 naming the setting while no
    module has registered it (an operator's mistake: nothing is written until it is fixed)."""
    wanted = seller_settings().payout_adapter
    known = current_app.extensions.get(KEY, {})
    if wanted not in known:
        raise PayoutAdapterNotConfigured(
            f"LAPAK_SETTLEMENT_PAYOUT_ADAPTER: {wanted!r} is not a payout adapter "
            f"(one of {', '.join(sorted(known))}); no settlement is made or sent until it is",
            setting="LAPAK_SETTLEMENT_PAYOUT_ADAPTER",
        )
    return known[wanted]


def adapter(code: str) -> PayoutAdapter:
    return current_app.extensions[KEY][code]


# -- sending ------------------------------------------------------------------------------------


def send_automatic_payouts(limit: int = 100) -> int:
    """Job: hand the pending settlements to the configured adapter, if it sends by itself.

    Each is taken to ``processing`` and committed before the bank is called, so a second run
    never sends it again; a run that dies after that leaves it ``processing`` for staff (or the
    bank's answer) to finish. How many were sent.
    """
    try:
        chosen = configured()
    except PayoutAdapterNotConfigured as refused:
        log.error("no automatic payouts sent: %s", refused.detail)
        return 0
    if not chosen.automatic:
        return 0
    code = chosen.code
    due = Session().scalars(
        select(Settlement.uuid)
        .where(Settlement.state == "pending", Settlement.payout_adapter == code)
        .order_by(Settlement.id)
        .limit(limit)
    )
    sent = 0
    for settlement_uuid in list(due):
        claimed = settlements.claim_for_sending(settlement_uuid)
        if claimed is None:  # another run took it, or it may not be sent (then it failed)
            continue
        settlement, number = claimed
        try:
            outcome = chosen.send(
                PayoutOrder(
                    settlement.name,
                    settlement.amount,
                    settlement.currency,
                    settlement.bank_code,
                    settlement.bank_holder_name,
                    number,
                )
            )
            settlements.record_outcome(
                settlement_uuid, outcome.state, outcome.reference, outcome.reason
            )
        except Exception:
            # Whether the bank took the order is unknown: failing it would make the money
            # available again while it may be on its way, so it stays processing for staff
            # (who check with the bank and complete or fail it) and the next one is sent.
            log.exception(
                "payout adapter %s raised sending settlement %s; it stays processing for staff",
                code,
                settlement.name,
            )
            continue
        sent += 1
    return sent


# -- weekly payouts -----------------------------------------------------------------------------


def pay_out_weekly(limit: int = 500) -> int:
    """Job: make today's settlement of each verified seller paid out weekly on this weekday
    (all that is available, if at least the minimum); safe twice or at once. How many made.

    Only sellers not yet paid today in that currency whose available balance reaches the
    minimum are selected (each is checked again under their lock), at most ``limit`` a run:
    the hourly job takes the rest on its next run.
    """
    try:
        configured()
    except PayoutAdapterNotConfigured as refused:
        log.error("no weekly payouts made: %s", refused.detail)
        return 0
    today = utcnow().astimezone(marketplace_settings().timezone).date()
    weekday = WEEKDAYS[today.weekday()]
    minimums = seller_settings().settlement_minimum
    paid_today = (
        select(Settlement.id)
        .where(
            Settlement.seller_id == SellerProfile.user_id,
            Settlement.scheduled_for == today,
            Settlement.currency == Account.currency,
        )
        .exists()
    )
    due = Session().execute(
        select(SellerProfile.user_id, Account.currency)
        .join(
            Account,
            and_(
                Account.holder_id == SellerProfile.user_id,
                Account.purpose == registry().purpose("seller_available").code,
            ),
        )
        .where(
            SellerProfile.payout_interval == "weekly",
            SellerProfile.payout_weekday == weekday,
            SellerProfile.kyc_state == "verified",
            or_(
                *(
                    and_(Account.currency == currency, Account.balance >= minimum)
                    for currency, minimum in minimums.items()
                )
            ),
            ~paid_today,
        )
        .order_by(SellerProfile.user_id, Account.currency)
        .limit(limit)
    )
    made = 0
    for seller_id, currency in list(due):
        made += _pay_out_scheduled(seller_id, currency, today)
    return made


def _pay_out_scheduled(seller_id: int, currency: str, today: date) -> int:
    with transaction() as session:
        user = seller_by_id(seller_id)
        profile = locked_profile(user)  # the weekly job's runs queue here, per seller
        if profile.payout_interval != "weekly" or profile.kyc_state != "verified":
            return 0
        already = session.scalar(
            select(Settlement.id).where(
                Settlement.seller_id == seller_id,
                Settlement.scheduled_for == today,
                Settlement.currency == currency,
            )
        )
        minimum = seller_settings().settlement_minimum[currency]
        if already is not None or settlements.available_balance(seller_id, currency) < minimum:
            return 0
        settlements.make(user, profile, None, currency, None, today)
        return 1
