"""Settlements as they are shown: to their seller, and to staff (every seller's, filtered).

The bank account appears as its bank code, holder and masked last four only: the settlement
never holds more.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, select

from app.db import Session
from app.errors import NotFound
from app.http import Page, keyset_page
from app.security import Principal
from app.vault import masked
from modules.user.models import User

from .models import Settlement

STAFF_ROLES = ("staff", "admin")


class SettlementNotFound(NotFound):
    code = "settlement-not-found"
    title = "No such settlement"


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
        # An id that is no seller's filters everything out, as any filter would.
        seller_id = select(User.id).where(User.uuid == filters.seller, User.role == "seller")
        statement = statement.where(Settlement.seller_id == seller_id.scalar_subquery())
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
