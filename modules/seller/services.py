"""What sellers are and do: their profiles, the KYC review, and signing up.

- A seller is a user with the ``seller`` role; their profile row is written on the first change
  (:func:`_locked_profile`). Until then they have the default profile (:func:`_default_view`):
  unverified, no bank account, the default commission, manual payouts, allowed to sell.
- The KYC review moves only along :data:`KYC_TRANSITIONS` (:func:`_move_kyc`); anything else is
  a 409 ``invalid-kyc-transition`` that changes nothing. The seller submits (with a payout bank
  account), staff approve or reject with a reason, a rejected seller fixes and submits again.
  A verified seller who changes the payout account is reviewed again (``pending``), as Stripe
  and Adyen verify a new payout account before paying to it; they keep selling meanwhile.
- The payout account number is sealed by the vault and shown as ``•••• 1234``; no message,
  event or log line carries it.
- Sign-up (``LAPAK_SELLER_SIGNUP``): ``closed`` refuses it; ``review`` makes a seller who may not
  sell until staff verify them; ``open`` a seller who sells at once. The user and the profile
  are written in one transaction.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.db import Session, get_database, transaction, utcnow
from app.errors import Conflict, Invalid, NotFound, PermissionDenied
from app.events import emit
from app.http import Page, keyset_page
from app.security import Principal
from app.vault import masked
from modules.marketplace.config import marketplace_settings
from modules.user.models import User
from modules.user.phones import normalize_phone
from modules.user.services import create_user, normalize_email

from .config import seller_settings
from .models import SellerProfile

STAFF_ROLES = ("staff", "admin")
HUNDRED = Decimal(100)
CENT = Decimal("0.01")
MAX_DISPLAY_NAME = 100
#: Bank codes: a national clearing code (``014``) or a BIC (``CENAIDJA``, ``CENAIDJAXXX``).
_BANK_CODE = re.compile(r"^[A-Z0-9]{3,11}$")
#: Account numbers once spaces and dashes are dropped: national numbers and IBANs.
_ACCOUNT_NUMBER = re.compile(r"^[A-Z0-9]{5,34}$")
_SEPARATORS = re.compile(r"[\s-]")
#: What a rule says of a bad account number: never the number itself.
ACCOUNT_NUMBER_RULE = "must be 5 to 34 letters or digits (spaces and dashes are ignored)"

#: action -> (the states it may start from, the state it leads to).
KYC_TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "submit": (("unverified", "rejected"), "pending"),
    "approve": (("pending",), "verified"),
    "reject": (("pending",), "rejected"),
    # A verified seller's new payout account is reviewed before money goes to it.
    "change_bank_account": (("verified",), "pending"),
}


class SellerNotFound(NotFound):
    code = "seller-not-found"
    title = "No such seller"


class InvalidKycTransition(Conflict):
    code = "invalid-kyc-transition"
    title = "The KYC review cannot take this step from its current state"


class KycIncomplete(Invalid):
    code = "kyc-incomplete"
    title = "The profile lacks what a KYC review needs"


class SignUpClosed(PermissionDenied):
    code = "seller-sign-up-closed"
    title = "Sellers do not sign up here; an admin makes them"


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


@dataclass(frozen=True)
class SellerFilter:
    """What a seller listing is narrowed to; ``None`` means no filter on that field."""

    kyc_state: str | None = None
    can_sell: bool | None = None
    payout_interval: str | None = None
    email_prefix: str | None = None


@dataclass(frozen=True)
class SignUp:
    email: str
    password: str
    name: str = ""
    phone: str | None = None
    display_name: str | None = None


def is_staff(actor: Principal) -> bool:
    return actor.has_role(*STAFF_ROLES)


# -- reading ------------------------------------------------------------------------------------


def own_profile(actor: Principal) -> SellerView:
    """The calling seller's profile (the default one until their first change)."""
    return _views([_seller(actor.user_id)])[0]


def get_seller(seller_uuid: uuid.UUID) -> SellerView:
    return _views([_seller_by_uuid(seller_uuid)])[0]


def list_sellers(filters: SellerFilter, *, limit: int, cursor: str | None) -> Page:
    """One page of sellers, oldest account first (with and without a profile row)."""
    statement: Select[Any] = (
        select(User)
        .outerjoin(SellerProfile, SellerProfile.user_id == User.id)
        .where(User.role == "seller")
    )
    if filters.kyc_state is not None:
        statement = statement.where(
            _profile_is(SellerProfile.kyc_state, filters.kyc_state, "unverified")
        )
    if filters.can_sell is not None:
        statement = statement.where(_profile_is(SellerProfile.can_sell, filters.can_sell, True))
    if filters.payout_interval is not None:
        statement = statement.where(
            _profile_is(SellerProfile.payout_interval, filters.payout_interval, "manual")
        )
    if filters.email_prefix:
        prefix = filters.email_prefix.strip().lower()
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(User.email_key.like(f"{escaped}%", escape="\\"))
    page = keyset_page(statement, [User.id], limit=limit, cursor=cursor)
    return Page(_views(page.items), page.next_cursor)


def _profile_is(column: Any, value: Any, default: Any) -> Any:
    """``column`` is ``value``; a seller without a profile row has the ``default``."""
    if value == default:
        return or_(SellerProfile.id.is_(None), column == value)
    return column == value


def why_not_selling(seller_id: int) -> str | None:
    """Why the seller with user id ``seller_id`` may not put products on sale, or None.

    The marketplace asks before a product becomes a seller's (``register_seller_gate``).
    """
    can_sell = Session().scalar(
        select(SellerProfile.can_sell).where(SellerProfile.user_id == seller_id)
    )
    if can_sell is False:
        return "the seller signed up for review and sells once staff verify their KYC review"
    return None


def own_commission_percents(seller_ids: Collection[int]) -> dict[int, Decimal]:
    """The sellers' own commission percents, of those who have one (staff set them).

    The marketplace fixes them on an invoice when it is posted (``register_commission_source``).
    """
    rows = Session().execute(
        select(SellerProfile.user_id, SellerProfile.commission_percent).where(
            SellerProfile.user_id.in_(sorted(seller_ids)),
            SellerProfile.commission_percent.is_not(None),
        )
    )
    return {user_id: percent for user_id, percent in rows}


# -- the seller's own changes -------------------------------------------------------------------


def update_own_profile(actor: Principal, changes: Mapping[str, Any]) -> SellerView:
    """Change the caller's display name, contact, payout bank account or payout schedule.

    A new payout account of a verified seller sends their KYC review back to ``pending``.
    """
    wanted = _checked_profile_changes(changes)
    with transaction():
        user = _seller(actor.user_id)
        profile = _locked_profile(user)
        changed = _apply(profile, wanted)
        _changed(profile, user, changed, actor)
        if "bank_account" in changed and profile.kyc_state == "verified":
            _move_kyc(profile, user, "change_bank_account", actor)
        return _views([user], {user.id: profile})[0]


def _checked_profile_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The changes with their values as stored; ``Invalid`` naming each bad field."""
    wanted: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    if "display_name" in changes:
        name = changes["display_name"].strip()
        if not name:
            errors["display_name"] = ["must not be blank"]
        wanted["display_name"] = name
    if "contact_email" in changes:
        try:
            wanted["contact_email"] = normalize_email(changes["contact_email"])[0]
        except Invalid:
            errors["contact_email"] = ["is not a valid email address"]
    if "contact_phone" in changes:
        try:
            wanted["contact_phone"] = normalize_phone(changes["contact_phone"])
        except Invalid as error:
            errors["contact_phone"] = list((error.errors or {}).get("phone", ["is not valid"]))
    if "bank_account" in changes:
        try:
            wanted["bank_account"] = _bank_account(changes["bank_account"])
        except Invalid as error:
            errors.update(error.errors or {})
    if "payout_schedule" in changes:
        try:
            wanted["payout_schedule"] = _payout_schedule(changes["payout_schedule"])
        except Invalid as error:
            errors.update(error.errors or {})
    if errors:
        raise Invalid("The changes break the profile's rules; see errors.", errors=errors)
    return wanted


def _bank_account(raw: Mapping[str, str]) -> tuple[str, str, str]:
    """(bank code, holder name, account number), normalised; the number never in a message."""
    errors = {}
    code = raw["bank_code"].strip().upper()
    if not _BANK_CODE.match(code):
        errors["bank_account.bank_code"] = [
            "must be the bank's code: 3 to 11 letters or digits (014, CENAIDJA)"
        ]
    holder = " ".join(raw["holder_name"].split())
    if not holder:
        errors["bank_account.holder_name"] = ["must not be blank"]
    number = _SEPARATORS.sub("", raw["account_number"]).upper()
    if not _ACCOUNT_NUMBER.match(number):
        errors["bank_account.account_number"] = [ACCOUNT_NUMBER_RULE]
    if errors:
        raise Invalid(errors=errors)
    return code, holder, number


def _payout_schedule(raw: Mapping[str, Any]) -> tuple[str, str | None]:
    interval, weekday = raw["interval"], raw.get("weekday")
    if interval == "weekly" and weekday is None:
        raise Invalid(errors={"payout_schedule.weekday": ["required for a weekly schedule"]})
    if interval != "weekly" and weekday is not None:
        raise Invalid(errors={"payout_schedule.weekday": ["only for a weekly schedule"]})
    return interval, weekday


def _apply(profile: SellerProfile, wanted: Mapping[str, Any]) -> list[str]:
    """Set what differs; the names of what changed."""
    changed = []
    for name in ("display_name", "contact_email", "contact_phone"):
        if name in wanted and getattr(profile, name) != wanted[name]:
            setattr(profile, name, wanted[name])
            changed.append(name)
    if "bank_account" in wanted:
        code, holder, number = wanted["bank_account"]
        current = (profile.bank_code, profile.bank_holder_name, profile.bank_account_number)
        if current != (code, holder, number):
            profile.bank_code, profile.bank_holder_name = code, holder
            profile.bank_account_number, profile.bank_account_last4 = number, number[-4:]
            profile.bank_account_updated_at = utcnow()
            changed.append("bank_account")
    if "payout_schedule" in wanted:
        interval, weekday = wanted["payout_schedule"]
        if (profile.payout_interval, profile.payout_weekday) != (interval, weekday):
            profile.payout_interval, profile.payout_weekday = interval, weekday
            changed.append("payout_schedule")
    if (
        "commission_percent" in wanted
        and profile.commission_percent != wanted["commission_percent"]
    ):
        profile.commission_percent = wanted["commission_percent"]
        changed.append("commission_percent")
    return changed


def _changed(profile: SellerProfile, user: User, changed: list[str], actor: Principal) -> None:
    if changed:
        Session().flush()  # updated_at
        emit("seller.updated", {"seller": user.uuid, "changed": changed, "by": actor.user_uuid})


# -- the KYC review -----------------------------------------------------------------------------


def submit_kyc(actor: Principal) -> SellerView:
    """The caller submits their profile for review (first time, or again after a rejection)."""
    with transaction():
        user = _seller(actor.user_id)
        profile = _locked_profile(user)
        if profile.kyc_state in KYC_TRANSITIONS["submit"][0] and profile.bank_code is None:
            raise KycIncomplete(
                "add a payout bank account, then submit for review",
                errors={"bank_account": ["required before a KYC review"]},
            )
        _move_kyc(profile, user, "submit", actor)
        return _views([user], {user.id: profile})[0]


def approve_kyc(actor: Principal, seller_uuid: uuid.UUID) -> SellerView:
    """Staff verify a pending seller, who may then sell (if they could not) and be paid."""
    with transaction():
        user = _seller_by_uuid(seller_uuid)
        profile = _locked_profile(user)
        _move_kyc(profile, user, "approve", actor)
        return _views([user], {user.id: profile})[0]


def reject_kyc(actor: Principal, seller_uuid: uuid.UUID, reason: str) -> SellerView:
    """Staff reject a pending seller's review, saying why (shown to the seller)."""
    reason = reason.strip()
    if not reason:
        raise Invalid("say why the review is rejected", errors={"reason": ["must not be blank"]})
    with transaction():
        user = _seller_by_uuid(seller_uuid)
        profile = _locked_profile(user)
        _move_kyc(profile, user, "reject", actor, reason=reason)
        return _views([user], {user.id: profile})[0]


def _move_kyc(
    profile: SellerProfile,
    user: User,
    action: str,
    actor: Principal,
    *,
    reason: str | None = None,
) -> None:
    """Take the review along ``action`` (:data:`KYC_TRANSITIONS`), or refuse it (409)."""
    sources, target = KYC_TRANSITIONS[action]
    if profile.kyc_state not in sources:
        raise InvalidKycTransition(
            f"cannot {action.replace('_', ' ')} when the KYC review is {profile.kyc_state} "
            f"(only when {' or '.join(sources)})",
            kyc_state=profile.kyc_state,
            action=action,
        )
    now, seller = utcnow(), user.uuid
    profile.kyc_state = target
    if target == "pending":
        profile.kyc_submitted_at = now
        profile.kyc_reviewed_at = profile.kyc_reviewed_by_id = None
        profile.kyc_rejection_reason = None
        emit("seller.kyc_submitted", {"seller": seller, "because": action, "by": actor.user_uuid})
    else:
        profile.kyc_reviewed_at, profile.kyc_reviewed_by_id = now, actor.user_id
        profile.kyc_rejection_reason = reason
    if target == "verified":
        profile.can_sell = True
        emit("seller.verified", {"seller": seller, "by": actor.user_uuid})
    if target == "rejected":
        emit("seller.kyc_rejected", {"seller": seller, "reason": reason, "by": actor.user_uuid})
    Session().flush()


# -- staff changes ------------------------------------------------------------------------------


def update_seller(
    actor: Principal, seller_uuid: uuid.UUID, changes: Mapping[str, Any]
) -> SellerView:
    """Staff set a seller's commission percent (None: the default) or payout schedule."""
    wanted: dict[str, Any] = {}
    if "commission_percent" in changes:
        percent = changes["commission_percent"]
        if percent is not None and not (0 <= percent < HUNDRED):
            raise Invalid(errors={"commission_percent": ["must be 0 to 99.99, or null"]})
        wanted["commission_percent"] = None if percent is None else percent.quantize(CENT)
    if "payout_schedule" in changes:
        wanted["payout_schedule"] = _payout_schedule(changes["payout_schedule"])
    with transaction():
        user = _seller_by_uuid(seller_uuid)
        profile = _locked_profile(user)
        _changed(profile, user, _apply(profile, wanted), actor)
        return _views([user], {user.id: profile})[0]


# -- signing up ---------------------------------------------------------------------------------


def sign_up(request: SignUp) -> SellerView:
    """Make a seller account and its profile in one transaction, as ``LAPAK_SELLER_SIGNUP`` says:
    ``review`` sellers may not sell until staff verify them, ``open`` ones sell at once."""
    mode = seller_settings().sign_up
    if mode == "closed":
        raise SignUpClosed("sellers are made by an admin on this marketplace")
    display_name = (request.display_name or "").strip()
    if request.display_name is not None and not display_name:
        raise Invalid(errors={"display_name": ["must not be blank"]})
    made: list[SellerProfile] = []

    def open_profile(user: User) -> None:
        profile = SellerProfile(
            user_id=user.id,
            display_name=display_name or _default_display_name(user),
            contact_email=user.email,
            contact_phone=user.phone,
            can_sell=mode == "open",
        )
        Session().add(profile)
        Session().flush()
        emit("seller.signed_up", {"seller": user.uuid, "mode": mode, "can_sell": profile.can_sell})
        made.append(profile)

    user = create_user(
        request.email,
        name=request.name,
        role="seller",
        phone=request.phone,
        password=request.password,
        completing=open_profile,
    )
    return _views([user], {user.id: made[0]})[0]


# -- rows and views -----------------------------------------------------------------------------


def _seller(user_id: int) -> User:
    user = Session().get(User, user_id)
    if user is None or user.role != "seller":
        raise SellerNotFound("there is no such seller")
    return user


def _seller_by_uuid(seller_uuid: uuid.UUID) -> User:
    found = select(User).where(User.uuid == seller_uuid, User.role == "seller")
    user = Session().scalars(found).first()
    if user is None:
        raise SellerNotFound("there is no such seller")
    return user


def _locked_profile(user: User) -> SellerProfile:
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
            display_name=_default_display_name(user),
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


def _default_display_name(user: User) -> str:
    return (user.name.strip() or user.email.split("@", 1)[0])[:MAX_DISPLAY_NAME]


def _views(
    users: Iterable[User], profiles: Mapping[int, SellerProfile] | None = None
) -> list[SellerView]:
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
    views = []
    for user in users:
        profile = profiles.get(user.id)
        if profile is None:
            views.append(_default_view(user, default_percent))
            continue
        bank = None
        if profile.bank_code is not None:
            bank = BankAccountView(
                bank_code=profile.bank_code,
                holder_name=profile.bank_holder_name or "",
                last4=profile.bank_account_last4 or "",
                updated_at=profile.bank_account_updated_at,
            )
        views.append(
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
    return views


def _default_view(user: User, default_percent: Decimal) -> SellerView:
    return SellerView(
        id=user.uuid,
        email=user.email,
        active=user.active,
        display_name=_default_display_name(user),
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
