"""The seller module's web screens, at ``/web/seller/``.

- Staff and admins: the sellers, the KYC review queue first (``pending``), and a seller's page:
  their profile, balances and settlements, and the review's approve or reject (with a reason).
- A seller: their own page with their balances, a Withdraw form and their settlements.

Every figure comes from the service the REST endpoint calls and is written by the endpoint's
own schema (``9500.00``, never a float), and every action calls the endpoint's service: the
screens calculate nothing. Reads go to a caught-up replica (the ``lapak_lsn`` cookie a write
sets brings a browser its own writes). A Withdraw form carries an idempotency key made when the
page was drawn: submitted twice (a double click, a resend), it pays out once.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for

from app.db import read_only
from app.errors import BadRequest, Conflict, Invalid, PermissionDenied
from app.http import PageArgs
from app.screens import invalid_fields, load_form, next_page_url
from app.security import Principal, authenticate, requires
from modules.marketplace import idempotency
from modules.marketplace.models import CURRENCY_PLACES

from . import balances, kyc, services, settlement_views, settlements
from .config import seller_settings
from .models import KYC_STATES
from .profiles import seller_by_uuid
from .schemas import (
    BalanceQuerySchema,
    BalanceSchema,
    RejectSchema,
    ReviewedSubmissionSchema,
    SellerQuerySchema,
    SellerSchema,
    SettlementSchema,
    StaffSellerSchema,
    WithdrawSchema,
)

screens = Blueprint("seller_screens", __name__, template_folder="templates")

STAFF = services.STAFF_ROLES
#: The queue staff open first: the sellers waiting for a KYC review.
QUEUE = "pending"
#: The idempotency scope of withdrawals: the API's, as it is the same service.
WITHDRAWALS = "settlements"
#: How the form's fields are named in messages.
LABELS = {
    "amount": "Amount",
    "currency": "Currency",
    "reason": "Reason",
    "submitted_at": "Submission",
    "kyc_state": "KYC state",
    "email_prefix": "Email starts with",
    "cursor": "Page",
}
# One instance each: a schema builds its nested schemas once, not per request.
_SELLER = StaffSellerSchema()
_OWN = SellerSchema()
_BALANCE = BalanceSchema()
_SETTLEMENT = SettlementSchema()


class SellerPageArgs(BalanceQuerySchema, PageArgs):
    """A seller's page: the balance's currency and the settlements' page."""


# -- staff --------------------------------------------------------------------------------------


@screens.get("/")
@requires(*STAFF, browser=True)
@read_only()
def sellers() -> tuple[str, int]:
    """The sellers, oldest account first; the KYC review queue unless another state is asked."""
    values = request.args.to_dict()
    values.setdefault("kyc_state", QUEUE)  # an empty choice is "every state"
    chosen = {"kyc_state": values["kyc_state"], "email_prefix": values.get("email_prefix", "")}
    try:
        args = load_form(SellerQuerySchema(), values, LABELS)
        filters = services.SellerFilter(
            kyc_state=args["kyc_state"],
            can_sell=args["can_sell"],
            payout_interval=args["payout_interval"],
            email_prefix=args["email_prefix"],
        )
        page = services.list_sellers(filters, limit=args["limit"], cursor=args["cursor"])
    except (Invalid, BadRequest) as refused:
        return _page("seller/sellers.html", 422, chosen=chosen, states=KYC_STATES,
                     error=str(refused), invalid=invalid_fields(refused))  # fmt: skip
    return _page(
        "seller/sellers.html",
        sellers=[_SELLER.dump(shown) for shown in page.items],
        next_url=next_page_url(page.next_cursor),
        chosen=chosen,
        states=KYC_STATES,
    )


@screens.get("/<uuid:seller_id>")
@requires(*STAFF, browser=True)
@read_only()
def seller(seller_id: uuid.UUID) -> tuple[str, int]:
    """A seller's profile, review, balances in one currency and settlements (newest first)."""
    profile = _SELLER.dump(services.get_seller(seller_id))
    try:
        args = load_form(SellerPageArgs(), request.args, LABELS)
        balance = balances.balance(seller_by_uuid(seller_id).id, args["currency"])
        filters = settlement_views.SettlementFilter(currency=args["currency"], seller=seller_id)
        money = _money_of(authenticate(), balance, filters, args)
    except (Invalid, BadRequest) as refused:
        return _page("seller/seller.html", 422, seller=profile, error=str(refused),
                     invalid=invalid_fields(refused), **_currencies())  # fmt: skip
    return _page(
        "seller/seller.html", seller=profile, currency=args["currency"], **money, **_currencies()
    )


@screens.post("/<uuid:seller_id>/kyc/approve")
@requires(*STAFF, browser=True)
def approve(seller_id: uuid.UUID) -> Response:
    """Verify the submission the reviewer saw (a newer one is refused, as by the API)."""
    try:
        reviewed = load_form(ReviewedSubmissionSchema(), request.form, LABELS)
        shown = kyc.approve_kyc(authenticate(), seller_id, reviewed["submitted_at"])
    except (Invalid, Conflict) as refused:
        flash(f"The review was not approved: {refused}", "error")
    else:
        flash(f"{shown.display_name} is verified.", "success")
    return redirect(url_for(".seller", seller_id=seller_id), 303)


@screens.post("/<uuid:seller_id>/kyc/reject")
@requires(*STAFF, browser=True)
def reject(seller_id: uuid.UUID) -> Response:
    """Reject the submission the reviewer saw, with the reason the seller will read."""
    try:
        reviewed = load_form(RejectSchema(), request.form, LABELS)
        shown = kyc.reject_kyc(
            authenticate(), seller_id, reviewed["reason"], reviewed["submitted_at"]
        )
    except (Invalid, Conflict) as refused:
        flash(f"The review was not rejected: {refused}", "error")
    else:
        flash(f"{shown.display_name}'s review is rejected; they can fix it and submit again.",
              "success")  # fmt: skip
    return redirect(url_for(".seller", seller_id=seller_id), 303)


# -- the seller ---------------------------------------------------------------------------------


@screens.get("/me")
@requires("seller", browser=True)
@read_only()
def own() -> tuple[str, int]:
    """The seller's own balances, the Withdraw form and their settlements."""
    actor = authenticate()
    profile = _OWN.dump(services.own_profile(actor))
    try:
        args = load_form(SellerPageArgs(), request.args, LABELS)
        currency = args["currency"]
        balance = balances.balance(actor.user_id, currency)
        filters = settlement_views.SettlementFilter(currency=currency)
        money = _money_of(actor, balance, filters, args)
    except (Invalid, BadRequest) as refused:
        return _page("seller/own.html", 422, seller=profile, error=str(refused),
                     invalid=invalid_fields(refused), **_currencies())  # fmt: skip
    return _page(
        "seller/own.html",
        seller=profile,
        currency=currency,
        minimum=seller_settings().settlement_minimum.get(currency),
        # Drawn with the page: the form's submissions are one withdrawal, however many.
        idempotency_key=str(uuid.uuid4()),
        **money,
        **_currencies(),
    )


@screens.post("/me/withdraw")
@requires("seller", browser=True)
def withdraw() -> Response:
    """Withdraw the amount asked (all that is available if none) through the API's service."""
    actor = authenticate()
    currency = request.form.get("currency", "")
    try:
        asked = load_form(WithdrawSchema(), request.form, LABELS)
        key = request.form.get("idempotency_key") or None
        if key is None:
            raise Invalid("The form is incomplete: reload the page and withdraw again.")
        currency = asked["currency"]
        amount = asked["amount"]
        # "7000" and "7000.00" are one request; an empty amount (all available) is its own.
        fingerprint = {
            "amount": amount.quantize(Decimal("0.01")) if amount is not None else None,
            "currency": currency,
        }
        idempotent = idempotency.request_for(actor.user_id, WITHDRAWALS, key, fingerprint)
        _, made = settlements.withdraw(
            actor, asked["amount"], currency, idempotent, _SETTLEMENT.dump
        )
    except idempotency.IdempotencyKeyReused:
        flash(
            "This form was already used for a withdrawal (see your settlements below); reload "
            "the page to make another.",
            "error",
        )
    except (Invalid, PermissionDenied, Conflict) as refused:
        flash(f"Nothing was withdrawn: {refused}", "error")
    else:
        flash(
            f"{made['name']}: {made['amount']} {made['currency']} is on its way to your bank "
            f"account {made['bank_account']['number']}.",
            "success",
        )
    target = {"currency": currency} if currency in CURRENCY_PLACES else {}
    return redirect(url_for(".own", **target), 303)


# -- shared -------------------------------------------------------------------------------------


def _money_of(
    actor: Principal,
    balance: balances.BalanceView,
    filters: settlement_views.SettlementFilter,
    args: dict[str, Any],
) -> dict[str, Any]:
    """The balance and one page of settlements as the API writes them."""
    page = settlement_views.list_settlements(
        actor, filters, limit=args["limit"], cursor=args["cursor"]
    )
    return {
        "balance": _BALANCE.dump(balance),
        "settlements": [_SETTLEMENT.dump(shown) for shown in page.items],
        "next_url": next_page_url(page.next_cursor),
    }


def _currencies() -> dict[str, Any]:
    return {"currencies": sorted(CURRENCY_PLACES)}


def _page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(template, **context), status
