"""Settlements: a seller's available balance paid out to their bank account.

A verified seller with a payout account withdraws (``POST /settlements``; all that is available
unless they name an amount, at least ``LAPAK_SETTLEMENT_MINIMUM``), or their weekly payout day
does it for them (:func:`pay_out_weekly`). Either way one transaction locks the seller's profile
(so one seller's withdrawals queue behind each other and each reads the balance the previous one
left), takes the next gap-free ``STL/YYYY/NNNNN``, writes the settlement and posts ``PAYOUT``
(available -> payout clearing); the ledger checks again under the account's lock that the
available balance covers it. A seller's balance is therefore never overdrawn, however many
withdrawals arrive at once.

States, each change a named transition that checks where the settlement is
(:data:`TRANSITIONS`): ``pending -> processing -> completed | failed``, ``pending -> canceled``
(and ``pending -> completed | failed`` for a manual payout done at once). ``completed`` posts
``PAYOUT_COMPLETE`` (clearing -> bank) and sets ``completed_at``; ``failed`` (with a reason) and
``canceled`` post ``PAYOUT_REVERSAL`` (the money back to available). Asking for the state a
settlement is already in changes nothing and answers it again.

Locks, always in this order: the seller's profile, the settlement counter, the settlement, the
ledger's accounts, the ledger's chain head.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.db import Session, get_database, transaction, utcnow
from app.errors import Conflict, Invalid, NotFound, PermissionDenied
from app.events import emit
from app.http import Page, keyset_page
from app.security import Principal
from app.vault import masked
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
from .models import WEEKDAYS, SellerProfile, Settlement, SettlementCounter
from .profiles import locked_profile, seller_by_id, seller_by_uuid

log = logging.getLogger(__name__)

ZERO = Decimal("0.00")
STAFF_ROLES = ("staff", "admin")
#: target -> the states it may be reached from.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "processing": ("pending",),
    "completed": ("pending", "processing"),
    "failed": ("pending", "processing"),
    "canceled": ("pending",),
}


class SettlementNotFound(NotFound):
    code = "settlement-not-found"
    title = "No such settlement"


class WithdrawalNotAllowed(PermissionDenied):
    code = "withdrawal-not-allowed"
    title = "This seller cannot withdraw yet"


class BelowSettlementMinimum(Invalid):
    code = "settlement-below-minimum"
    title = "The amount is below the smallest settlement"


class InvalidSettlementTransition(Conflict):
    code = "invalid-settlement-transition"
    title = "The settlement cannot move to that state from where it is"


@dataclass(frozen=True)
class SettlementBankView:
    bank_code: str
    holder_name: str
    last4: str

    @property
    def number(self) -> str:
        return masked(self.last4)


@dataclass(frozen=True)
class SettlementView:
    id: uuid.UUID
    name: str
    seller: uuid.UUID
    currency: str
    amount: Decimal
    state: str
    bank_account: SettlementBankView
    payout_adapter: str
    payout_reference: str | None
    failure_reason: str | None
    scheduled_for: date | None
    created_at: datetime
    updated_at: datetime
    processing_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None
    canceled_at: datetime | None


@dataclass(frozen=True)
class SettlementFilter:
    state: str | None = None
    currency: str | None = None
    seller: uuid.UUID | None = None


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
        settlement = _make(user, locked_profile(user), amount, currency, actor.user_id, None)
        body = render(views([settlement])[0])
        if idempotent is not None:
            idempotency.complete(claimed, 201, body)
    return 201, body


def _make(
    user: User,
    profile: SellerProfile,
    amount: Decimal | None,
    currency: str,
    actor_id: int | None,
    scheduled_for: date | None,
) -> Settlement:
    """Write a settlement and post its ``PAYOUT``, under the seller's profile lock."""
    if profile.bank_account_number is None:
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
        payout_adapter=seller_settings().payout_adapter,
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


# -- weekly payouts -----------------------------------------------------------------------------


def pay_out_weekly() -> int:
    """Job: make today's settlement of each verified seller paid out weekly on this weekday
    (all that is available, if at least the minimum); safe twice or at once. How many made."""
    today = utcnow().astimezone(marketplace_settings().timezone).date()
    weekday = WEEKDAYS[today.weekday()]
    due = Session().scalars(
        select(SellerProfile.user_id)
        .where(
            SellerProfile.payout_interval == "weekly",
            SellerProfile.payout_weekday == weekday,
            SellerProfile.kyc_state == "verified",
        )
        .order_by(SellerProfile.user_id)
    )
    made = 0
    for seller_id in list(due):
        for currency in sorted(seller_settings().settlement_minimum):
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
        if already is not None or available_balance(seller_id, currency) < minimum:
            return 0
        _make(user, profile, None, currency, None, today)
        return 1


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
    with refused_by_database(), transaction() as session:
        settlement = session.scalars(
            select(Settlement)
            .where(Settlement.uuid == settlement_uuid)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).first()
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


# -- reading ------------------------------------------------------------------------------------


def get_settlement(actor: Principal, settlement_uuid: uuid.UUID) -> SettlementView:
    """One settlement: a seller's own, or any for staff (404 for anyone else's)."""
    statement = select(Settlement).where(Settlement.uuid == settlement_uuid)
    if not actor.has_role(*STAFF_ROLES):
        statement = statement.where(Settlement.seller_id == actor.user_id)
    settlement = Session().scalars(statement).first()
    if settlement is None:
        raise SettlementNotFound("there is no such settlement")
    return views([settlement])[0]


def list_settlements(
    actor: Principal, filters: SettlementFilter, *, limit: int, cursor: str | None
) -> Page:
    """Newest first: a seller's own, or everyone's for staff (filtered)."""
    statement: Select[Any] = select(Settlement)
    if not actor.has_role(*STAFF_ROLES):
        statement = statement.where(Settlement.seller_id == actor.user_id)
    elif filters.seller is not None:
        statement = statement.where(Settlement.seller_id == seller_by_uuid(filters.seller).id)
    if filters.state is not None:
        statement = statement.where(Settlement.state == filters.state)
    if filters.currency is not None:
        statement = statement.where(Settlement.currency == filters.currency)
    page = keyset_page(statement, [Settlement.id], limit=limit, cursor=cursor, descending=True)
    return Page(views(page.items), page.next_cursor)


def views(settlements: Sequence[Settlement]) -> list[SettlementView]:
    """The settlements as shown (their sellers' ids in one query)."""
    seller_ids = {settlement.seller_id for settlement in settlements}
    uuids = dict(
        Session().execute(select(User.id, User.uuid).where(User.id.in_(seller_ids))).all()
        if seller_ids
        else []
    )
    return [
        SettlementView(
            id=s.uuid,
            name=s.name,
            seller=uuids[s.seller_id],
            currency=s.currency,
            amount=s.amount,
            state=s.state,
            bank_account=SettlementBankView(s.bank_code, s.bank_holder_name, s.bank_account_last4),
            payout_adapter=s.payout_adapter,
            payout_reference=s.payout_reference,
            failure_reason=s.failure_reason,
            scheduled_for=s.scheduled_for,
            created_at=s.created_at,
            updated_at=s.updated_at,
            processing_at=s.processing_at,
            completed_at=s.completed_at,
            failed_at=s.failed_at,
            canceled_at=s.canceled_at,
        )
        for s in settlements
    ]
