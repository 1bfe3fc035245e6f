"""``/api/v1/wallets``: customers' wallets, their balances and statements (from the ledger),
top-ups through providers, freezing (staff) and the daily reward. Paying from a wallet is
``POST /api/v1/payments`` with the provider ``wallet``.

Writes run on the primary; reads inside ``@read_only()`` on a caught-up replica
(read-your-writes through ``X-Lapak-LSN``). Customers see their own wallets; anything else is 404.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, jsonify, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from app.db import read_only
from app.http import Page
from app.security import authenticate, requires
from modules.ledger.schemas import LedgerProblemSchema, StatementPageSchema, StatementQuerySchema
from modules.marketplace import idempotency
from modules.payment.api import IDEMPOTENCY_PARAMETER

from . import services, top_ups
from .schemas import (
    FreezeSchema,
    RewardSchema,
    TopUpInSchema,
    TopUpSchema,
    WalletInSchema,
    WalletPageSchema,
    WalletQuerySchema,
    WalletSchema,
)

blp = Blueprint(
    "wallet",
    __name__,
    description="Customers' wallets: stored value on the ledger, statements, freezing by staff, "
    "sign-up credit and daily rewards.",
)

STAFF = services.STAFF_ROLES
_WALLET = WalletSchema()
_REWARD = RewardSchema()
_TOP_UP = TopUpSchema()


@blp.route("")
class Wallets(MethodView):
    @requires("customer", *STAFF)
    @blp.arguments(WalletInSchema, example={"currency": "IDR"})
    @blp.response(201, WalletSchema)
    @blp.alt_response(409, schema=LedgerProblemSchema, description="wallet-exists")
    @blp.alt_response(
        422, schema=LedgerProblemSchema, description="invalid input, or invalid-customer"
    )
    def post(self, body: dict[str, Any]) -> Response:
        """Open a wallet

        A customer opens their own, one per currency; staff open one for a customer. The
        customer's first IDR wallet receives the sign-up credit, if the marketplace gives one.
        """
        view = services.open_wallet(authenticate(), body["currency"], body["customer"])
        response = jsonify(_WALLET.dump(view))
        response.status_code = 201
        response.headers["Location"] = url_for("wallet.WalletItem", wallet_id=view.uuid)
        return response

    @requires(scope="wallets:read")
    @read_only()
    @blp.arguments(WalletQuerySchema, location="query")
    @blp.response(200, WalletPageSchema)
    def get(self, args: dict[str, Any]) -> Page:
        """List wallets, oldest first (staff all, customers their own)"""
        filters = services.WalletFilter(
            customer=args["customer"], currency=args["currency"], state=args["state"]
        )
        return services.list_wallets(
            authenticate(), filters, limit=args["limit"], cursor=args["cursor"]
        )


@blp.route("/top-ups")
class TopUps(MethodView):
    @requires("customer")
    @blp.arguments(TopUpInSchema, example={"provider": "demo", "amount": "50000.00"})
    @blp.response(201, TopUpSchema)
    @blp.doc(parameters=[IDEMPOTENCY_PARAMETER])
    @blp.alt_response(409, schema=LedgerProblemSchema, description="wallet-frozen")
    @blp.alt_response(
        422, schema=LedgerProblemSchema, description="top-up-limits, provider-unavailable"
    )
    def post(self, body: dict[str, Any]) -> Response:
        """Top up your wallet through a provider

        Starts a provider transaction (``kind`` ``top_up``) for your wallet in ``currency``,
        opened if you have none; its ``action`` says what to do next (the demo gateway's page,
        bank details). The wallet is credited when the provider reports success. The amount
        is within the marketplace's limits per currency.
        """
        actor = authenticate()
        idempotent = idempotency.request_for(
            actor.user_id, "wallet-top-ups", request.headers.get("Idempotency-Key"),
            request.get_json(),
        )  # fmt: skip
        status, answer = top_ups.top_up(
            actor,
            top_ups.TopUpRequest(body["provider"], body["amount"], body["currency"]),
            idempotent,
            lambda wallet, tx: _TOP_UP.dump({"wallet": services.view(wallet), "transaction": tx}),
        )
        response = jsonify(answer)
        response.status_code = status
        response.headers["Location"] = url_for(
            "payments.TransactionItem", tx_id=answer["transaction"]["id"]
        )
        return response


@blp.route("/<uuid:wallet_id>")
class WalletItem(MethodView):
    @requires(scope="wallets:read")
    @read_only()
    @blp.response(200, WalletSchema)
    def get(self, wallet_id: uuid.UUID) -> services.WalletView:
        """Show a wallet and its balance"""
        return services.get_wallet(authenticate(), wallet_id)


@blp.route("/<uuid:wallet_id>/entries")
class WalletEntries(MethodView):
    @requires(scope="wallets:read")
    @read_only()
    @blp.arguments(StatementQuerySchema, location="query")
    @blp.response(200, StatementPageSchema)
    def get(self, args: dict[str, Any], wallet_id: uuid.UUID) -> Page:
        """A wallet's statement: its ledger entries, newest first, with the running balance"""
        return services.statement(
            authenticate(), wallet_id, limit=args["limit"], cursor=args["cursor"]
        )


@blp.route("/<uuid:wallet_id>/freeze")
class FreezeWallet(MethodView):
    @requires(*STAFF)
    @blp.arguments(FreezeSchema)
    @blp.response(200, WalletSchema)
    @blp.alt_response(409, schema=LedgerProblemSchema, description="wallet-frozen")
    def post(self, body: dict[str, Any], wallet_id: uuid.UUID) -> services.WalletView:
        """Freeze a wallet (staff): it takes no reward and pays nothing until unfrozen"""
        return services.freeze(authenticate(), wallet_id, body["reason"])


@blp.route("/<uuid:wallet_id>/unfreeze")
class UnfreezeWallet(MethodView):
    @requires(*STAFF)
    @blp.response(200, WalletSchema)
    @blp.alt_response(409, schema=LedgerProblemSchema, description="wallet-not-frozen")
    def post(self, wallet_id: uuid.UUID) -> services.WalletView:
        """Unfreeze a wallet (staff)"""
        return services.unfreeze(authenticate(), wallet_id)


@blp.route("/<uuid:wallet_id>/daily-reward")
class DailyReward(MethodView):
    @requires("customer")
    @blp.response(201, RewardSchema)
    @blp.alt_response(200, schema=RewardSchema, description="Already claimed today: that claim")
    @blp.alt_response(409, schema=LedgerProblemSchema, description="rewards-off or wallet-frozen")
    @blp.alt_response(422, schema=LedgerProblemSchema, description="reward-currency")
    def post(self, wallet_id: uuid.UUID) -> Response:
        """Claim today's reward into your IDR wallet

        Once a day in the marketplace's time zone; a second claim the same day answers the
        first (200, ``replayed: true``).
        """
        reward = services.claim_daily_reward(authenticate(), wallet_id)
        response = jsonify(_REWARD.dump(reward))
        response.status_code = 200 if reward.replayed else 201
        return response
