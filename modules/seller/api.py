"""``/api/v1/sellers``: a seller's own profile and KYC submission, staff's review of sellers, and
the public sign-up when ``LAPAK_SELLER_SIGNUP`` allows it.

Writes run on the primary; reads inside ``@read_only()`` on a caught-up replica
(read-your-writes through ``X-Lapak-LSN``). Sellers see only their own profile (``/me``);
staff (and admins) list, read and review every seller.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, jsonify, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from app.db import read_only
from app.http import Page, ProblemSchema
from app.security import authenticate, requires
from modules.marketplace import idempotency

from . import balances, kyc, services, settlement_views, settlements, sign_up
from .profiles import SellerView, seller_by_uuid
from .schemas import (
    BalanceQuerySchema,
    BalanceSchema,
    OwnProfileUpdateSchema,
    RejectSchema,
    ReviewedSubmissionSchema,
    SellerPageSchema,
    SellerQuerySchema,
    SellerSchema,
    SettlementFailureSchema,
    SettlementOutcomeSchema,
    SettlementPageSchema,
    SettlementQuerySchema,
    SettlementSchema,
    SignUpSchema,
    SignUpThrottledProblemSchema,
    StaffSellerSchema,
    StaffUpdateSchema,
    WithdrawSchema,
)

blp = Blueprint(
    "seller",
    __name__,
    description="Sellers: their profiles (display name, contact, payout bank account shown "
    "masked, commission, payout schedule), the KYC review, and signing up.",
)

STAFF = services.STAFF_ROLES
EXAMPLE_BANK_ACCOUNT = {
    "bank_code": "014",
    "holder_name": "Budi Santoso",
    "account_number": "1234567890",
}


@blp.route("/me")
class OwnProfile(MethodView):
    @requires("seller")
    @read_only()
    @blp.response(200, SellerSchema)
    def get(self) -> SellerView:
        """Your seller profile"""
        return services.own_profile(authenticate())

    @requires("seller")
    @blp.arguments(
        OwnProfileUpdateSchema,
        example={"display_name": "Toko Budi Makmur", "bank_account": EXAMPLE_BANK_ACCOUNT},
    )
    @blp.response(200, SellerSchema)
    def patch(self, body: dict[str, Any]) -> SellerView:
        """Change your display name, contact, payout bank account or payout schedule

        A new payout account is stored sealed and shown masked from then on. If your KYC review
        was verified, it becomes pending again: staff verify the new account before money is
        paid to it (you keep selling meanwhile).
        """
        return services.update_own_profile(authenticate(), body)


@blp.route("/me/balance")
class OwnBalance(MethodView):
    @requires("seller", scope="settlements:read")
    @read_only()
    @blp.arguments(BalanceQuerySchema, location="query")
    @blp.response(200, BalanceSchema)
    def get(self, args: dict[str, Any]) -> balances.BalanceView:
        """Your balances: available, pending (on hold), owed; the next release and payout

        From your ledger accounts. A share of a confirmed payment is pending for
        ``LAPAK_SETTLEMENT_HOLD_DAYS`` x 24 h, then available to withdraw.
        """
        return balances.balance(authenticate().user_id, args["currency"])


@blp.route("/<uuid:seller_id>/balance")
class SellerBalance(MethodView):
    @requires(*STAFF, scope="settlements:read")
    @read_only()
    @blp.arguments(BalanceQuerySchema, location="query")
    @blp.response(200, BalanceSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="seller-not-found")
    def get(self, args: dict[str, Any], seller_id: uuid.UUID) -> balances.BalanceView:
        """A seller's balances (staff)"""
        return balances.balance(seller_by_uuid(seller_id).id, args["currency"])


@blp.route("/me/kyc")
class SubmitKyc(MethodView):
    @requires("seller")
    @blp.response(200, SellerSchema)
    @blp.alt_response(
        409, schema=ProblemSchema, description="invalid-kyc-transition: pending or verified"
    )
    @blp.alt_response(
        422, schema=ProblemSchema, description="kyc-incomplete: no payout bank account yet"
    )
    def post(self) -> SellerView:
        """Submit your profile for KYC review

        From ``unverified``, or again from ``rejected`` once you fixed what the reason says.
        Needs a payout bank account.
        """
        return kyc.submit_kyc(authenticate())


@blp.route("/sign-up")
class SignUp(MethodView):
    @blp.arguments(
        SignUpSchema,
        example={"email": "budi@example.co.id", "password": "kopi tubruk pagi hari",
                 "name": "Budi Santoso", "display_name": "Toko Budi Makmur"},
    )  # fmt: skip
    @blp.response(201, SellerSchema, headers={"Location": {"description": "Your profile's URL"}})
    @blp.alt_response(
        403, schema=ProblemSchema, description="seller-sign-up-closed: admins make sellers"
    )
    @blp.alt_response(409, schema=ProblemSchema, description="email-taken")
    @blp.alt_response(
        429, schema=SignUpThrottledProblemSchema, description="sign-up-throttled: see Retry-After"
    )
    def post(self, body: dict[str, Any]) -> tuple[SellerView, int, dict[str, str]]:
        """Sign up as a seller

        Open when ``LAPAK_SELLER_SIGNUP`` is ``review`` (you may log in and complete your
        profile; your products go on sale once staff verify your KYC review) or ``open`` (you
        sell at once). Log in with ``POST /api/v1/auth/login`` afterwards. Sign-ups per client
        IP are limited (``LAPAK_SELLER_SIGNUP_MAX_PER_IP`` per window).
        """
        view = sign_up.sign_up(sign_up.SignUp(**body), ip=request.remote_addr)
        return view, 201, {"Location": url_for("seller.OwnProfile")}


@blp.route("")
class Sellers(MethodView):
    @requires(*STAFF)
    @read_only()
    @blp.arguments(SellerQuerySchema, location="query")
    @blp.response(200, SellerPageSchema)
    def get(self, args: dict[str, Any]) -> Page:
        """List sellers, oldest account first (staff)

        Filter by KYC state (``pending`` is the review queue), whether they may sell, payout
        interval and login email prefix.
        """
        filters = services.SellerFilter(
            kyc_state=args["kyc_state"],
            can_sell=args["can_sell"],
            payout_interval=args["payout_interval"],
            email_prefix=args["email_prefix"],
        )
        return services.list_sellers(filters, limit=args["limit"], cursor=args["cursor"])


@blp.route("/<uuid:seller_id>")
class SellerItem(MethodView):
    @requires(*STAFF)
    @read_only()
    @blp.response(200, StaffSellerSchema)
    def get(self, seller_id: uuid.UUID) -> SellerView:
        """Show a seller (staff)"""
        return services.get_seller(seller_id)

    @requires(*STAFF)
    @blp.arguments(
        StaffUpdateSchema,
        example={"commission_percent": "7.50",
                 "payout_schedule": {"interval": "weekly", "weekday": "friday"}},
    )  # fmt: skip
    @blp.response(200, StaffSellerSchema)
    @blp.alt_response(
        403, schema=ProblemSchema, description="commission-admin-only: staff set the schedule only"
    )
    def patch(self, body: dict[str, Any], seller_id: uuid.UUID) -> SellerView:
        """Set a seller's payout schedule (staff) or commission (admins only)

        ``commission_percent`` null gives the seller the marketplace's
        (``LAPAK_COMMISSION_PERCENT``); only an admin changes it.
        """
        return services.update_seller(authenticate(), seller_id, body)


STALE_OR_NOT_PENDING = (
    "invalid-kyc-transition: not pending; stale-kyc-review: the seller submitted again since "
    "the ``submitted_at`` given"
)


@blp.route("/<uuid:seller_id>/kyc/approve")
class ApproveKyc(MethodView):
    @requires(*STAFF)
    @blp.arguments(ReviewedSubmissionSchema, example={"submitted_at": "2026-11-29T08:15:02+00:00"})
    @blp.response(200, StaffSellerSchema)
    @blp.alt_response(409, schema=ProblemSchema, description=STALE_OR_NOT_PENDING)
    def post(self, body: dict[str, Any], seller_id: uuid.UUID) -> SellerView:
        """Verify a pending seller (staff)

        The seller may sell from now on (if they signed up for review) and, later, be paid out.
        Pass the ``kyc.submitted_at`` you reviewed, so a newer submission (a new payout account)
        is not approved unseen.
        """
        return kyc.approve_kyc(authenticate(), seller_id, body["submitted_at"])


@blp.route("/<uuid:seller_id>/kyc/reject")
class RejectKyc(MethodView):
    @requires(*STAFF)
    @blp.arguments(RejectSchema)
    @blp.response(200, StaffSellerSchema)
    @blp.alt_response(409, schema=ProblemSchema, description=STALE_OR_NOT_PENDING)
    def post(self, body: dict[str, Any], seller_id: uuid.UUID) -> SellerView:
        """Reject a pending seller's review with a reason (staff); they may fix and resubmit

        Pass the ``kyc.submitted_at`` you reviewed, as for approving.
        """
        return kyc.reject_kyc(authenticate(), seller_id, body["reason"], body["submitted_at"])


# -- /api/v1/settlements ------------------------------------------------------------------------

settlements_blp = Blueprint(
    "settlements",
    __name__,
    description="Settlements: a seller's available balance paid out to their bank account "
    "(withdrawn by the seller or on their weekly payout day), completed or failed by staff.",
)
_SETTLEMENT = SettlementSchema()
IDEMPOTENCY_PARAMETER = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "description": "Retrying with the same key and body returns the first answer; the same key "
    "with another body is 422.",
    "schema": {"type": "string", "maxLength": idempotency.MAX_KEY_LENGTH},
}


@settlements_blp.route("")
class Settlements(MethodView):
    @requires("seller", scope="payouts:write")
    @settlements_blp.arguments(WithdrawSchema)
    @settlements_blp.response(201, SettlementSchema)
    @settlements_blp.doc(parameters=[IDEMPOTENCY_PARAMETER])
    @settlements_blp.alt_response(
        403,
        schema=ProblemSchema,
        description="withdrawal-not-allowed: not verified, or no payout bank account",
    )
    @settlements_blp.alt_response(
        422,
        schema=ProblemSchema,
        description="insufficient-balance, settlement-below-minimum, idempotency-key-reused",
    )
    def post(self, body: dict[str, Any]) -> Response:
        """Withdraw your available balance

        All of it unless you give an ``amount``; at least ``LAPAK_SETTLEMENT_MINIMUM``. The
        money leaves your available balance at once and is paid to your verified payout bank
        account; the settlement says how that goes.
        """
        actor = authenticate()
        idempotent = idempotency.request_for(
            actor.user_id, "settlements", request.headers.get("Idempotency-Key"),
            request.get_json(),
        )  # fmt: skip
        status, answer = settlements.withdraw(
            actor, body["amount"], body["currency"], idempotent, _SETTLEMENT.dump
        )
        response = jsonify(answer)
        response.status_code = status
        response.headers["Location"] = url_for(
            "settlements.SettlementItem", settlement_id=answer["id"]
        )
        return response

    @requires("seller", *STAFF, scope="settlements:read")
    @read_only()
    @settlements_blp.arguments(SettlementQuerySchema, location="query")
    @settlements_blp.response(200, SettlementPageSchema)
    def get(self, args: dict[str, Any]) -> Page:
        """List settlements, newest first: a seller's own, everyone's for staff"""
        filters = settlement_views.SettlementFilter(
            state=args["state"], currency=args["currency"], seller=args["seller"]
        )
        return settlement_views.list_settlements(
            authenticate(), filters, limit=args["limit"], cursor=args["cursor"]
        )


@settlements_blp.route("/<uuid:settlement_id>")
class SettlementItem(MethodView):
    @requires("seller", *STAFF, scope="settlements:read")
    @read_only()
    @settlements_blp.response(200, SettlementSchema)
    @settlements_blp.alt_response(404, schema=ProblemSchema, description="settlement-not-found")
    def get(self, settlement_id: uuid.UUID) -> settlement_views.SettlementView:
        """Show a settlement (a seller's own; any for staff)"""
        return settlement_views.get_settlement(authenticate(), settlement_id)


def _outcome(target: str, schema: type, summary: str) -> type:
    """A ``POST /settlements/{id}/<action>`` view that moves the settlement to ``target``."""

    class Outcome(MethodView):
        @requires(*STAFF, scope="payouts:write")
        @settlements_blp.arguments(schema)
        @settlements_blp.response(200, SettlementSchema)
        @settlements_blp.alt_response(404, schema=ProblemSchema, description="settlement-not-found")
        @settlements_blp.alt_response(
            409, schema=ProblemSchema, description="invalid-settlement-transition"
        )
        def post(self, body: dict[str, Any], settlement_id: uuid.UUID) -> Any:
            return settlements.move(
                authenticate(),
                settlement_id,
                target,
                reason=body.get("reason"),
                reference=body.get("reference"),
            )

    Outcome.post.__doc__ = summary
    Outcome.__name__ = f"Settlement{target.capitalize()}"
    return Outcome


settlements_blp.route("/<uuid:settlement_id>/processing")(
    _outcome("processing", SettlementOutcomeSchema, "Record that the payout is under way (staff)")
)
settlements_blp.route("/<uuid:settlement_id>/complete")(
    _outcome(
        "completed",
        SettlementOutcomeSchema,
        "Record that the money reached the seller's bank (staff)",
    )
)
settlements_blp.route("/<uuid:settlement_id>/fail")(
    _outcome(
        "failed",
        SettlementFailureSchema,
        "Record that the payout failed, with a reason; the money goes back to available (staff)",
    )
)


@settlements_blp.route("/<uuid:settlement_id>/cancel")
class SettlementCancel(MethodView):
    @requires("seller", *STAFF, scope="payouts:write")
    @settlements_blp.response(200, SettlementSchema)
    @settlements_blp.alt_response(404, schema=ProblemSchema, description="settlement-not-found")
    @settlements_blp.alt_response(
        409, schema=ProblemSchema, description="invalid-settlement-transition: not pending"
    )
    def post(self, settlement_id: uuid.UUID) -> settlement_views.SettlementView:
        """Cancel a pending settlement: its money goes back to the available balance

        A seller cancels their own; staff any.
        """
        return settlements.move(authenticate(), settlement_id, "canceled")
