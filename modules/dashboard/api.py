"""``/api/v1/dashboard``: the figures of a period and the recent transactions, from a replica.

Staff and admins see the platform's; a seller their own share; customers nothing (403). API
keys need the scope ``dashboard:read``.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from flask.views import MethodView
from flask_smorest import Blueprint

from app.db import read_only
from app.http import Page
from app.security import authenticate, requires

from . import services
from .schemas import (
    DashboardStatsQuerySchema,
    DashboardStatsSchema,
    DashboardTransactionPageSchema,
    DashboardTransactionQuerySchema,
    dump_stats,
)

blp = Blueprint(
    "dashboard",
    __name__,
    description="The back office's dashboard: volume, transactions, success rate, refunds, "
    "daily series, status and provider split, settlement summary; recent transactions. "
    "Answered from per-day rollups (see the README's Dashboard section).",
)

VIEWERS = ("staff", "admin", "seller")
_STATS_QUERY = DashboardStatsQuerySchema()
_TRANSACTION_QUERY = DashboardTransactionQuerySchema()


@blp.route("/stats")
class Stats(MethodView):
    @requires(*VIEWERS, scope="dashboard:read")
    @read_only()
    @blp.arguments(_STATS_QUERY, location="query")
    @blp.response(200, DashboardStatsSchema)
    def get(self, args: dict[str, Any]) -> Response:
        """The figures of a period

        Whole days of the marketplace's time zone, both ends included (at most 366; default
        the last 30), in one currency (default IDR). Staff see the platform's figures, a seller
        their own share. success_rate = succeeded / (succeeded + failed) over provider
        transactions only: payments made without a provider (bank transfer, cash) that staff
        confirmed are counted apart (manual: in transactions and volume, not in the rate), and
        canceled ones are left out; null when there is neither. average = volume / (succeeded
        + manual), null when neither.
        """
        asked = services.period(args["since"], args["until"], args["currency"])
        return jsonify(dump_stats(services.stats(authenticate(), asked)))


@blp.route("/transactions")
class Transactions(MethodView):
    @requires(*VIEWERS, scope="dashboard:read")
    @read_only()
    @blp.arguments(_TRANSACTION_QUERY, location="query")
    @blp.response(200, DashboardTransactionPageSchema)
    def get(self, args: dict[str, Any]) -> Page:
        """Recent transactions, newest first

        Every payment with its provider transaction when it has one (a payment made without a
        provider shows its method as the provider). Staff see all, a seller those of invoices
        with their lines. Filters: state, provider, currency.
        """
        filters = services.TransactionFilter(
            state=args["state"], provider=args["provider"], currency=args["currency"]
        )
        return services.list_transactions(
            authenticate(), filters, limit=args["limit"], cursor=args["cursor"]
        )
