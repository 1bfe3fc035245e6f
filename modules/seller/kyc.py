"""The KYC review: ``unverified -> pending -> verified | rejected``, and ``rejected -> pending``.

Every step is a row of :data:`KYC_TRANSITIONS` taken by :func:`move_kyc`; anything else is a
409 ``invalid-kyc-transition`` that changes nothing. The seller submits (with a payout bank
account), staff approve or reject with a reason (shown to the seller), a rejected seller fixes
and submits again. A verified seller who changes the payout account is reviewed again
(``pending``), as Stripe and Adyen verify a new payout account before paying to it; they keep
selling meanwhile. A pending seller who changes it starts the review over (a new submission), so
staff never approve an account they did not see. Staff may name the submission they reviewed
(its ``submitted_at``); a decision on an older one is a 409 ``stale-kyc-review``. Verifying a
seller who signed up for review lets them sell.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from app.db import Session, transaction, utcnow
from app.errors import Conflict, Invalid
from app.events import emit
from app.security import Principal
from modules.user.models import User

from .models import SellerProfile
from .profiles import SellerView, locked_profile, seller_by_id, seller_by_uuid, views

#: action -> (the states it may start from, the state it leads to).
KYC_TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "submit": (("unverified", "rejected"), "pending"),
    "approve": (("pending",), "verified"),
    "reject": (("pending",), "rejected"),
    # A new payout account is reviewed before money goes to it: a verified seller's, and a
    # pending one's (a new submission, so no review of the old account approves the new one).
    "change_bank_account": (("pending", "verified"), "pending"),
}


class InvalidKycTransition(Conflict):
    code = "invalid-kyc-transition"
    title = "The KYC review cannot take this step from its current state"


class StaleKycReview(Conflict):
    code = "stale-kyc-review"
    title = "The seller submitted again since the reviewer looked; review the new submission"


class KycIncomplete(Invalid):
    code = "kyc-incomplete"
    title = "The profile lacks what a KYC review needs"


def submit_kyc(actor: Principal) -> SellerView:
    """The caller submits their profile for review (first time, or again after a rejection)."""
    with transaction():
        user = seller_by_id(actor.user_id)
        profile = locked_profile(user)
        if profile.kyc_state in KYC_TRANSITIONS["submit"][0] and profile.bank_code is None:
            raise KycIncomplete(
                "add a payout bank account, then submit for review",
                errors={"bank_account": ["required before a KYC review"]},
            )
        move_kyc(profile, user, "submit", actor)
        return views([user], {user.id: profile})[0]


def approve_kyc(
    actor: Principal, seller_uuid: uuid.UUID, submitted_at: datetime | None = None
) -> SellerView:
    """Staff verify a pending seller, who may then sell (if they could not) and be paid.

    ``submitted_at``: the submission the reviewer looked at; a newer one is not approved.
    """
    with transaction():
        user = seller_by_uuid(seller_uuid)
        profile = locked_profile(user)
        _still_reviewed_submission(profile, submitted_at)
        move_kyc(profile, user, "approve", actor)
        return views([user], {user.id: profile})[0]


def reject_kyc(
    actor: Principal, seller_uuid: uuid.UUID, reason: str, submitted_at: datetime | None = None
) -> SellerView:
    """Staff reject a pending seller's review, saying why (shown to the seller).

    ``submitted_at``: the submission the reviewer looked at; a newer one is not rejected.
    """
    reason = reason.strip()
    if not reason:
        raise Invalid("say why the review is rejected", errors={"reason": ["must not be blank"]})
    with transaction():
        user = seller_by_uuid(seller_uuid)
        profile = locked_profile(user)
        _still_reviewed_submission(profile, submitted_at)
        move_kyc(profile, user, "reject", actor, reason=reason)
        return views([user], {user.id: profile})[0]


def _still_reviewed_submission(profile: SellerProfile, submitted_at: datetime | None) -> None:
    """Refuse (409) a decision on a submission that is no longer the current one."""
    if submitted_at is None or submitted_at == profile.kyc_submitted_at:
        return
    current = profile.kyc_submitted_at
    raise StaleKycReview(
        "the seller submitted again (a new payout account, or a new submission) since "
        "this review was opened; review the current one",
        submitted_at=current.isoformat() if current else None,
        kyc_state=profile.kyc_state,
    )


def move_kyc(
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
