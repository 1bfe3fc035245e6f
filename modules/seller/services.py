"""What sellers and staff change of a profile, the staff listing, and what the marketplace asks
of the seller module (may this seller sell; their own commission).

- A seller changes their display name, contact, payout bank account and payout schedule; a new
  payout account of a verified or pending seller starts a new KYC review (:mod:`.kyc`).
  The account number never appears in a message, an event or a log line.
- Admins set the seller's commission percent (None: the marketplace's): it decides how much
  of each sale is the platform's, so staff may not (they set the payout schedule and review KYC).
- Every change is all or nothing: one bad field and nothing is written.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, or_, select

from app.db import Session, transaction, utcnow
from app.errors import Invalid, PermissionDenied
from app.events import emit
from app.http import Page, keyset_page
from app.security import Principal
from modules.user.models import User
from modules.user.phones import normalize_phone
from modules.user.services import normalize_email

from .kyc import KYC_TRANSITIONS, move_kyc
from .models import SellerProfile
from .profiles import CENT, SellerView, locked_profile, seller_by_id, seller_by_uuid, views

STAFF_ROLES = ("staff", "admin")
HUNDRED = Decimal(100)
#: Bank codes: a national clearing code (``014``) or a BIC (``CENAIDJA``, ``CENAIDJAXXX``).
_BANK_CODE = re.compile(r"^[A-Z0-9]{3,11}$")
#: Account numbers once spaces and dashes are dropped: national numbers and IBANs.
_ACCOUNT_NUMBER = re.compile(r"^[A-Z0-9]{5,34}$")
_SEPARATORS = re.compile(r"[\s-]")
#: What a rule says of a bad account number: never the number itself.
ACCOUNT_NUMBER_RULE = "must be 5 to 34 letters or digits (spaces and dashes are ignored)"


class CommissionAdminOnly(PermissionDenied):
    code = "commission-admin-only"
    title = "Only an admin sets a seller's commission"


@dataclass(frozen=True)
class SellerFilter:
    """What a seller listing is narrowed to; ``None`` means no filter on that field."""

    kyc_state: str | None = None
    can_sell: bool | None = None
    payout_interval: str | None = None
    email_prefix: str | None = None


# -- reading ------------------------------------------------------------------------------------


def own_profile(actor: Principal) -> SellerView:
    """The calling seller's profile (the default one until their first change)."""
    return views([seller_by_id(actor.user_id)])[0]


def get_seller(seller_uuid: uuid.UUID) -> SellerView:
    """Any seller's profile (staff)."""
    return views([seller_by_uuid(seller_uuid)])[0]


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
    return Page(views(page.items), page.next_cursor)


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


def why_not_invoicing(seller_id: int) -> str | None:
    """Why the seller with user id ``seller_id`` may not issue invoices of their own sales
    (without an order), or None: only a verified seller who may sell does.

    The marketplace asks before such an invoice is written or posted
    (``register_issuer_gate``).
    """
    found = (
        Session()
        .execute(
            select(SellerProfile.kyc_state, SellerProfile.can_sell).where(
                SellerProfile.user_id == seller_id
            )
        )
        .first()
    )
    if found is None or found.kyc_state != "verified":
        state = "unverified" if found is None else found.kyc_state
        return (
            f"only verified sellers issue invoices; this seller's KYC review is {state}: submit "
            "it and wait for staff to verify it"
        )
    if not found.can_sell:
        return "the seller may not sell for now, so may not issue invoices"
    return None


def display_names(seller_ids: Collection[int]) -> dict[int, str]:
    """The sellers' display names, of those with a profile (the marketplace prints them on
    invoices: ``register_seller_names``)."""
    rows = Session().execute(
        select(SellerProfile.user_id, SellerProfile.display_name).where(
            SellerProfile.user_id.in_(sorted(seller_ids))
        )
    )
    return {user_id: name for user_id, name in rows}


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

    A new payout account of a verified or pending seller starts a new KYC review.
    """
    wanted = _checked_profile_changes(changes)
    with transaction():
        user = seller_by_id(actor.user_id)
        profile = locked_profile(user)
        changed = _apply(profile, wanted)
        _changed(profile, user, changed, actor)
        if (
            "bank_account" in changed
            and profile.kyc_state in KYC_TRANSITIONS["change_bank_account"][0]
        ):
            move_kyc(profile, user, "change_bank_account", actor)
        return views([user], {user.id: profile})[0]


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
        current = (profile.bank_code, profile.bank_holder_name, profile.bank_account_last4)
        # The sealed number (deferred) is opened only when nothing else tells the accounts apart.
        if current != (code, holder, number[-4:]) or profile.bank_account_number != number:
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


def _changed(
    profile: SellerProfile,
    user: User,
    changed: list[str],
    actor: Principal,
    details: Mapping[str, Any] | None = None,
) -> None:
    """``seller.updated`` with the changed field names, and ``details`` of those that say more."""
    if changed:
        Session().flush()  # updated_at
        payload = {"seller": user.uuid, "changed": changed, "by": actor.user_uuid}
        emit("seller.updated", {**payload, **(details or {})})


# -- staff changes ------------------------------------------------------------------------------


def update_seller(
    actor: Principal, seller_uuid: uuid.UUID, changes: Mapping[str, Any]
) -> SellerView:
    """Staff set a seller's payout schedule; admins also their commission percent (None: the
    default), whose old and new values go in the ``seller.updated`` event."""
    wanted: dict[str, Any] = {}
    if "commission_percent" in changes:
        if not actor.has_role("admin"):
            raise CommissionAdminOnly("ask an admin to change a seller's commission")
        percent = changes["commission_percent"]
        if percent is not None and not (0 <= percent < HUNDRED):
            raise Invalid(errors={"commission_percent": ["must be 0 to 99.99, or null"]})
        wanted["commission_percent"] = None if percent is None else percent.quantize(CENT)
    if "payout_schedule" in changes:
        wanted["payout_schedule"] = _payout_schedule(changes["payout_schedule"])
    with transaction():
        user = seller_by_uuid(seller_uuid)
        profile = locked_profile(user)
        old_percent = profile.commission_percent
        changed = _apply(profile, wanted)
        details = {}
        if "commission_percent" in changed:
            details["commission_percent"] = {
                "from": _text(old_percent),
                "to": _text(profile.commission_percent),
            }
        _changed(profile, user, changed, actor, details)
        return views([user], {user.id: profile})[0]


def _text(percent: Decimal | None) -> str | None:
    """A percent as events carry money: a string (``7.50``), or None."""
    return None if percent is None else str(percent.quantize(CENT))
