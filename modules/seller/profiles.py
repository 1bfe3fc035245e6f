"""A seller's profile, as a row and as it is shown.

A seller is a user with the ``seller`` role. Their profile row is written on their first change
(:func:`locked_profile`); until then they have the default profile (:func:`views` shows it):
unverified, no payout account, the marketplace's commission, manual payouts, allowed to sell.
The payout account number is sealed by the vault and shown as ``•••• 1234``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.db import Session, get_database, utcnow
from app.errors import NotFound
from app.vault import masked
from modules.marketplace.config import marketplace_settings
from modules.user.models import User

from .models import SellerProfile

CENT = Decimal("0.01")
MAX_DISPLAY_NAME = 100


class SellerNotFound(NotFound):
    code = "seller-not-found"
    title = "No such seller"


@dataclass(frozen=True)
class BankAccountView:
    bank_code: str
    holder_name: str
    last4: str
    updated_at: datetime | None

    @property
    def number(self) -> str:
        """The account number as it is shown: masked, its last four characters only."""
        return masked(self.last4)


@dataclass(frozen=True)
class KycView:
    state: str
    submitted_at: datetime | None
    reviewed_at: datetime | None
    reviewed_by: uuid.UUID | None
    rejection_reason: str | None


@dataclass(frozen=True)
class PayoutScheduleView:
    interval: str
    weekday: str | None


@dataclass(frozen=True)
class SellerView:
    #: The seller's public id: their user's.
    id: uuid.UUID
    email: str
    active: bool
    display_name: str
    contact_email: str
    contact_phone: str | None
    can_sell: bool
    kyc: KycView
    bank_account: BankAccountView | None
    commission_percent: Decimal | None
    effective_commission_percent: Decimal
    payout_schedule: PayoutScheduleView
    created_at: datetime
    updated_at: datetime


# -- rows ---------------------------------------------------------------------------------------


def seller_by_id(user_id: int) -> User:
    """The seller with this user id (the caller's own); ``SellerNotFound`` for anyone else."""
    user = Session().get(User, user_id)
    if user is None or user.role != "seller":
        raise SellerNotFound("there is no such seller")
    return user


def seller_by_uuid(seller_uuid: uuid.UUID) -> User:
    """The seller with this public id; ``SellerNotFound`` for a user who is not a seller."""
    found = select(User).where(User.uuid == seller_uuid, User.role == "seller")
    user = Session().scalars(found).first()
    if user is None:
        raise SellerNotFound("there is no such seller")
    return user


def locked_profile(user: User) -> SellerProfile:
    """The seller's profile row, locked; written with the defaults if it is their first change."""
    session = Session()
    found = (
        select(SellerProfile)
        .where(SellerProfile.user_id == user.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    profile = session.scalars(found).first()
    if profile is not None:
        return profile
    insert = (
        postgresql_insert if get_database().primary.dialect.name == "postgresql" else sqlite_insert
    )
    now = utcnow()
    session.execute(
        insert(SellerProfile)
        .values(
            user_id=user.id,
            display_name=default_display_name(user),
            contact_email=user.email,
            contact_phone=user.phone,
            can_sell=True,
            kyc_state="unverified",
            payout_interval="manual",
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["user_id"])
    )
    return session.scalars(found).one()


def default_display_name(user: User) -> str:
    """The user's name, or their email's local part when they gave none."""
    return (user.name.strip() or user.email.split("@", 1)[0])[:MAX_DISPLAY_NAME]


# -- as shown -----------------------------------------------------------------------------------


def views(
    users: Iterable[User], profiles: Mapping[int, SellerProfile] | None = None
) -> list[SellerView]:
    """The sellers' profiles as shown (``profiles`` by user id when the caller holds them, else
    read in one query); a seller without a row has the default profile."""
    users = list(users)
    session = Session()
    if profiles is None:
        ids = [user.id for user in users]
        found = session.scalars(select(SellerProfile).where(SellerProfile.user_id.in_(ids)))
        profiles = {profile.user_id: profile for profile in found}
    reviewer_ids = {p.kyc_reviewed_by_id for p in profiles.values() if p.kyc_reviewed_by_id}
    reviewers = {}
    if reviewer_ids:
        rows = session.execute(select(User.id, User.uuid).where(User.id.in_(reviewer_ids)))
        reviewers = {row.id: row.uuid for row in rows}
    default_percent = marketplace_settings().commission_percent
    shown = []
    for user in users:
        profile = profiles.get(user.id)
        if profile is None:
            shown.append(_default_view(user, default_percent))
            continue
        bank = None
        if profile.bank_code is not None:
            bank = BankAccountView(
                bank_code=profile.bank_code,
                holder_name=profile.bank_holder_name or "",
                last4=profile.bank_account_last4 or "",
                updated_at=profile.bank_account_updated_at,
            )
        shown.append(
            SellerView(
                id=user.uuid,
                email=user.email,
                active=user.active,
                display_name=profile.display_name,
                contact_email=profile.contact_email,
                contact_phone=profile.contact_phone,
                can_sell=profile.can_sell,
                kyc=KycView(
                    state=profile.kyc_state,
                    submitted_at=profile.kyc_submitted_at,
                    reviewed_at=profile.kyc_reviewed_at,
                    reviewed_by=reviewers.get(profile.kyc_reviewed_by_id or 0),
                    rejection_reason=profile.kyc_rejection_reason,
                ),
                bank_account=bank,
                commission_percent=profile.commission_percent,
                effective_commission_percent=_percent(profile.commission_percent, default_percent),
                payout_schedule=PayoutScheduleView(profile.payout_interval, profile.payout_weekday),
                created_at=profile.created_at,
                updated_at=profile.updated_at,
            )
        )
    return shown


def _default_view(user: User, default_percent: Decimal) -> SellerView:
    return SellerView(
        id=user.uuid,
        email=user.email,
        active=user.active,
        display_name=default_display_name(user),
        contact_email=user.email,
        contact_phone=user.phone,
        can_sell=True,
        kyc=KycView("unverified", None, None, None, None),
        bank_account=None,
        commission_percent=None,
        effective_commission_percent=_percent(None, default_percent),
        payout_schedule=PayoutScheduleView("manual", None),
        created_at=user.created_at,
        updated_at=user.updated_at,
    )


def _percent(own: Decimal | None, default: Decimal) -> Decimal:
    return (default if own is None else own).quantize(CENT)
