"""Settlements: a seller's available balance paid out to their bank account.

A verified seller with a payout account withdraws (``POST /settlements``; all that is available
unless they name an amount, at least ``LAPAK_SETTLEMENT_MINIMUM``), or their weekly payout day
does it for them (:func:`.payouts.pay_out_weekly`). Either way one transaction locks the
seller's profile (so one seller's withdrawals queue behind each other and each reads the balance
the previous one left), takes the next gap-free ``STL/YYYY/NNNNN``, writes the settlement and
posts ``PAYOUT`` (available -> payout clearing); the ledger checks again under the account's
lock that the available balance covers it. A seller's balance is therefore never overdrawn,
however many withdrawals arrive at once.

States, each change a named transition that checks where the settlement is
(:data:`TRANSITIONS`): ``pending -> processing | canceled``, ``processing -> completed | failed``.
Staff mark a manual payout ``processing`` before they start the transfer, so the seller can no
longer cancel it (and withdraw the same money again) while it is on its way; only a ``pending``
one is canceled (by its seller or staff). ``completed`` posts
``PAYOUT_COMPLETE`` (clearing -> bank) and sets ``completed_at``; ``failed`` (with a reason) and
``canceled`` post ``PAYOUT_REVERSAL`` (the money back to available). Asking for the state a
settlement is already in changes nothing and answers it again.

Locks, always in this order: the seller's profile, the settlement counter, the settlement, the
ledger's accounts, the ledger's chain head.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.db import Session, get_database, transaction, utcnow
from app.errors import Conflict, Invalid, PermissionDenied
from app.events import emit
from app.security import Principal
from app.vault import Unsealed
from modules.ledger.chart import account_code
from modules.ledger.models import Account
from modules.ledger.posting import InsufficientBalance, post
from modules.ledger.registry import registry
from modules.marketplace import idempotency
from modules.marketplace.config import marketplace_settings
from modules.marketplace.idempotency import IdempotentRequest, Replay
from modules.marketplace.services import refused_by_database
from modules.user.models import User

from . import postings
from .config import seller_settings
from .models import SellerProfile, Settlement, SettlementCounter
from .profiles import locked_profile, seller_by_id
from .settlement_views import STAFF_ROLES, SettlementNotFound, SettlementView, views

log = logging.getLogger(__name__)

ZERO = Decimal("0.00")
#: The sizes of the columns an adapter's answer is stored in.
REFERENCE_SIZE = Settlement.__table__.c.payout_reference.type.length
REASON_SIZE = Settlement.__table__.c.failure_reason.type.length
#: target -> the states it may be reached from.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "processing": ("pending",),
    "completed": ("processing",),
    "failed": ("processing",),
    "canceled": ("pending",),
}


class WithdrawalNotAllowed(PermissionDenied):
    code = "withdrawal-not-allowed"
    title = "This seller cannot withdraw yet"


class BelowSettlementMinimum(Invalid):
    code = "settlement-below-minimum"
    title = "The amount is below the smallest settlement"


class InvalidSettlementTransition(Conflict):
    code = "invalid-settlement-transition"
    title = "The settlement cannot move to that state from where it is"


# -- making one ---------------------------------------------------------------------------------


def withdraw(
    actor: Principal,
    amount: Decimal | None,
    currency: str,
    idempotent: IdempotentRequest | None,
    render: Callable[[SettlementView], dict[str, Any]],
) -> tuple[int, dict[str, Any]]:
    """The calling seller's withdrawal: 201 and the rendered settlement, or the first answer
    given to a repeated ``Idempotency-Key``."""
    with refused_by_database(), transaction():
        if idempotent is not None:
            claimed = idempotency.claim(idempotent, marketplace_settings().idempotency_keep_hours)
            if isinstance(claimed, Replay):
                return claimed.status_code, claimed.body
        user = seller_by_id(actor.user_id)
        settlement = make(user, locked_profile(user), amount, currency, actor.user_id, None)
        body = render(views([settlement])[0])
        if idempotent is not None:
            idempotency.complete(claimed, 201, body)
    return 201, body


def make(
    user: User,
    profile: SellerProfile,
    amount: Decimal | None,
    currency: str,
    actor_id: int | None,
    scheduled_for: date | None,
) -> Settlement:
    """Write a settlement and post its ``PAYOUT``, under the seller's profile lock."""
    # The last four digits are there exactly when the sealed number is (a check constraint),
    # so the deferred number is neither loaded nor unsealed to learn whether it exists.
    if profile.bank_account_last4 is None:
        raise WithdrawalNotAllowed(
            "add a payout bank account and have it verified before you withdraw",
            reason="no-bank-account",
        )
    if profile.kyc_state != "verified":
        raise WithdrawalNotAllowed(
            f"only a verified seller withdraws; your KYC review is {profile.kyc_state}",
            reason="not-verified",
            kyc_state=profile.kyc_state,
        )
    minimum = seller_settings().settlement_minimum.get(currency)
    if minimum is None:
        raise Invalid(
            f"this marketplace makes no settlements in {currency}",
            errors={
                "currency": f"one of {', '.join(sorted(seller_settings().settlement_minimum))}"
            },
        )
    available = available_balance(user.id, currency)
    if amount is None:
        amount = available
    if amount > available:
        raise InsufficientBalance(
            f"you have {available} {currency} available, less than the {amount} asked for",
            errors={"amount": "more than your available balance"},
            available=str(available),
            currency=currency,
        )
    if amount < minimum:
        raise BelowSettlementMinimum(
            f"a settlement is at least {minimum} {currency}; you asked for {amount}",
            errors={"amount": f"at least {minimum}"},
            minimum=str(minimum),
            available=str(available),
            currency=currency,
        )
    now = utcnow()
    settlement = Settlement(
        uuid=uuid.uuid4(),
        name=_next_name(now),
        seller_id=user.id,
        currency=currency,
        amount=amount,
        state="pending",
        bank_code=profile.bank_code,
        bank_holder_name=profile.bank_holder_name,
        bank_account_last4=profile.bank_account_last4,
        payout_adapter=_configured_adapter_code(),
        scheduled_for=scheduled_for,
        created_by_id=actor_id,
        created_at=now,
        updated_at=now,
    )
    session = Session()
    session.add(settlement)
    session.flush()
    post(postings.payout(settlement, actor_id))
    emit("settlement.created", _event(settlement, user.uuid))
    return settlement


def _configured_adapter_code() -> str:
    # Imported here: payouts sends through this module's transitions and imports it.
    from .payouts import configured

    return configured().code


def available_balance(seller_id: int, currency: str) -> Decimal:
    """What the seller's available account holds now (read after the profile's lock)."""
    code = account_code(registry().purpose("seller_available"), currency, seller_id)
    found = Session().scalar(select(Account.balance).where(Account.code == code))
    return found if found is not None else ZERO


def _next_name(now: datetime) -> str:
    """``STL/YYYY/NNNNN``: the year's counter, incremented under its row lock (gap-free: a
    rolled-back settlement gives its number back)."""
    year = now.astimezone(marketplace_settings().timezone).year
    session = Session()
    take = (
        update(SettlementCounter)
        .where(SettlementCounter.year == year)
        .values(next_number=SettlementCounter.next_number + 1)
        .returning(SettlementCounter.next_number)
    )
    number = session.execute(take).scalar()
    if number is None:  # the year's first settlement
        insert = (
            postgresql_insert
            if get_database().primary.dialect.name == "postgresql"
            else sqlite_insert
        )
        session.execute(
            insert(SettlementCounter)
            .values(year=year, next_number=0)
            .on_conflict_do_nothing(index_elements=["year"])
        )
        number = session.execute(take).scalar_one()
    return f"STL/{year}/{number:05d}"


# -- moving one ---------------------------------------------------------------------------------


def move(
    actor: Principal,
    settlement_uuid: uuid.UUID,
    target: str,
    *,
    reason: str | None = None,
    reference: str | None = None,
) -> SettlementView:
    """Move a settlement to ``target`` (staff; a seller cancels their own pending one)."""
    with refused_by_database(), transaction():
        settlement = _locked(settlement_uuid)
        staff = actor.has_role(*STAFF_ROLES)
        if settlement is None or (not staff and settlement.seller_id != actor.user_id):
            raise SettlementNotFound("there is no such settlement")
        if not staff and target != "canceled":
            raise PermissionDenied("staff record a payout's outcome")
        if settlement.state == target:
            log.info("settlement %s is already %s", settlement.name, target)
            return views([settlement])[0]
        if settlement.state not in TRANSITIONS[target]:
            raise InvalidSettlementTransition(
                f"{settlement.name} is {settlement.state}: it cannot become {target} "
                f"(only from {' or '.join(TRANSITIONS[target])})",
                state=settlement.state,
                target=target,
            )
        _apply(settlement, target, actor.user_id, reason, reference)
        return views([settlement])[0]


def _apply(
    settlement: Settlement,
    target: str,
    actor_id: int | None,
    reason: str | None,
    reference: str | None,
) -> None:
    now = utcnow()
    settlement.state = target
    settlement.updated_at = now
    if reference is not None:
        settlement.payout_reference = reference
    if target == "processing":
        settlement.processing_at = now
    elif target == "completed":
        settlement.completed_at = now
        post(postings.payout_complete(settlement, actor_id))
    elif target == "failed":
        settlement.failed_at, settlement.failure_reason = now, reason
        post(postings.payout_reversal(settlement, actor_id))
    else:
        settlement.canceled_at = now
        post(postings.payout_reversal(settlement, actor_id))
    Session().flush()
    if target in ("completed", "failed"):
        seller_uuid = Session().scalar(select(User.uuid).where(User.id == settlement.seller_id))
        emit(f"settlement.{target}", _event(settlement, seller_uuid))


def _event(settlement: Settlement, seller_uuid: uuid.UUID | None) -> dict[str, Any]:
    """What an event says of a settlement: never the bank account beyond its bank code."""
    return {
        "settlement": settlement.uuid,
        "name": settlement.name,
        "seller": seller_uuid,
        "amount": settlement.amount,
        "currency": settlement.currency,
        "state": settlement.state,
        "scheduled_for": settlement.scheduled_for,
        "failure_reason": settlement.failure_reason,
    }


def claim_for_sending(settlement_uuid: uuid.UUID) -> tuple[Settlement, Unsealed] | None:
    """Take a pending settlement to ``processing`` for an automatic adapter (committed before
    the bank is called, so it is sent once); it and the unsealed account number, or None if
    it is no longer pending or may not be sent.

    The number is the profile's current one, so it is sent only if it is still the account the
    settlement was made for (same bank code, holder and last four) and the seller is still
    verified: a changed account is unverified until staff review it again. Otherwise the
    settlement fails (``PAYOUT_REVERSAL``: the money is available again) and the seller
    withdraws anew to the account staff verify."""
    with transaction() as session:
        settlement = _locked(settlement_uuid)
        if settlement is None or settlement.state != "pending":
            return None
        _apply(settlement, "processing", None, None, None)
        profile = session.execute(
            select(
                SellerProfile.kyc_state,
                SellerProfile.bank_code,
                SellerProfile.bank_holder_name,
                SellerProfile.bank_account_last4,
                SellerProfile.bank_account_number,
            ).where(SellerProfile.user_id == settlement.seller_id)
        ).one_or_none()
        refusal = _why_not_send(settlement, profile)
        if refusal is not None:
            log.warning("settlement %s %s", settlement.name, refusal)
            _apply(settlement, "failed", None, refusal, None)
            return None
        # Kept Unsealed (``str`` would drop the wrapper whose repr hides it) up to the adapter.
        return settlement, profile.bank_account_number


def _why_not_send(settlement: Settlement, profile: Any) -> str | None:
    if profile is None or profile.bank_account_number is None:
        return "not sent: the seller has no payout account any more"
    made_for = (settlement.bank_code, settlement.bank_holder_name, settlement.bank_account_last4)
    now = (profile.bank_code, profile.bank_holder_name, profile.bank_account_last4)
    if made_for != now:
        return "not sent: the seller's payout account changed after the settlement was made"
    if profile.kyc_state != "verified":
        return f"not sent: the seller's KYC review is {profile.kyc_state}"
    return None


def record_outcome(
    settlement_uuid: uuid.UUID, state: str, reference: str | None, reason: str | None
) -> None:
    """What an adapter answered for a settlement it sent (``processing`` keeps it there)."""
    if state not in ("processing", "completed", "failed"):
        raise ValueError(f"a payout adapter answers processing, completed or failed: {state!r}")
    reference = reference[:REFERENCE_SIZE] if reference else None
    reason = reason[:REASON_SIZE] if reason else None
    with refused_by_database(), transaction():
        settlement = _locked(settlement_uuid)
        if settlement is None:
            return
        if settlement.state != "processing":
            if state != "processing" and state != settlement.state:
                _outcome_conflict(settlement, state, reference)
            return
        if state == "processing":
            settlement.payout_reference = reference or settlement.payout_reference
            return
        if state == "failed" and not reason:
            reason = f"{settlement.payout_adapter} reported the payout failed"
        _apply(settlement, state, None, reason, reference)


def _outcome_conflict(settlement: Settlement, reported: str, reference: str | None) -> None:
    """The bank reports an outcome contradicting the one recorded (e.g. completed after staff
    failed it and the money went back): staff must look, nothing is moved by itself."""
    log.error(
        "payout adapter %s reports settlement %s %s (reference %s) but it is %s: check with "
        "the bank",
        settlement.payout_adapter,
        settlement.name,
        reported,
        reference,
        settlement.state,
    )
    seller_uuid = Session().scalar(select(User.uuid).where(User.id == settlement.seller_id))
    emit(
        "settlement.outcome_conflict",
        {**_event(settlement, seller_uuid), "reported": reported, "reported_reference": reference},
    )


def _locked(settlement_uuid: uuid.UUID) -> Settlement | None:
    return (
        Session()
        .scalars(
            select(Settlement)
            .where(Settlement.uuid == settlement_uuid)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        .first()
    )
