"""The dashboard's figures in the GraphQL ``Query``: ``dashboard_stats``, as
``GET /api/v1/dashboard/stats`` answers them.

The field reads its arguments with the REST endpoint's query schema, lets in the roles it lets
in (staff and admins: the platform's figures; a seller: their own share; customers are
refused), asks an API key for its scope (``dashboard:read``), and calls the same services
(``period``, ``stats``) with the caller. The answer is built from the REST schema's own dump,
so its keys and values are REST's (``from``, ``to``, money as ``"37000.00"``): the dashboard's
``dump_stats``.

``schema.Query`` merges every class of :data:`QUERIES` into the root. The seller's settlement
summary is ``schema.SellerQuery``'s (the seller module's balances).
"""

from __future__ import annotations

from typing import Annotated, Any

import marshmallow as ma
import strawberry

from app.errors import PermissionDenied
from modules.dashboard import api as dashboard_api
from modules.dashboard import services as dashboard
from modules.dashboard.schemas import (
    DashboardFiguresSchema,
    DashboardSettlementSummarySchema,
    DashboardStatsQuerySchema,
    DashboardStatsSchema,
    dump_stats,
)

from .loaders import Context
from .rest import read_arguments, require_scope, scope_of
from .types import DateText, DateTimeText, DecimalText

STATS_READ = scope_of(dashboard_api.Stats.get)
_STATS_QUERY = DashboardStatsQuerySchema()
FROM = "The first day, in the marketplace's time zone (default: 29 days before to)"
TO = f"The last day, included (default: today); at most {dashboard.MAX_DAYS} days from from"
CURRENCY = "An ISO 4217 code (default: IDR)"


def _as_rest(schema: type[ma.Schema], name: str) -> Any:
    """A field as the REST schema describes it: the definitions (the success rate's...) are
    the dashboard's to state, in one place."""
    return strawberry.field(description=schema().fields[name].metadata.get("description"))


@strawberry.type(description="Counters of the dashboard over some days (a seller: their share)")
class DashboardFigures:
    transactions: int = _as_rest(DashboardFiguresSchema, "transactions")
    succeeded: int
    failed: int
    canceled: int
    manual: int = _as_rest(DashboardFiguresSchema, "manual")
    volume: DecimalText = _as_rest(DashboardFiguresSchema, "volume")
    fees: DecimalText = _as_rest(DashboardFiguresSchema, "fees")
    refunds: int = _as_rest(DashboardFiguresSchema, "refunds")
    refunded: DecimalText = _as_rest(DashboardFiguresSchema, "refunded")


@strawberry.type(description="The dashboard's counters of one day")
class DashboardDayFigures(DashboardFigures):
    day: DateText


@strawberry.type(description="The dashboard's counters of one provider (or payment method)")
class DashboardProviderFigures(DashboardFigures):
    provider: str


@strawberry.type(description="Transactions that ended in one state")
class DashboardStatusCount:
    state: str
    count: int


@strawberry.type(description="A count of settlements and their amount")
class DashboardTally:
    count: int
    amount: DecimalText


@strawberry.type(description="The dashboard's settlement summary")
class DashboardSettlementSummary:
    pending: DecimalText = _as_rest(DashboardSettlementSummarySchema, "pending")
    available: DecimalText = _as_rest(DashboardSettlementSummarySchema, "available")
    owed: DecimalText = _as_rest(DashboardSettlementSummarySchema, "owed")
    next_release_at: DateTimeText | None = _as_rest(
        DashboardSettlementSummarySchema, "next_release_at"
    )
    next_payout_on: DateText | None = _as_rest(DashboardSettlementSummarySchema, "next_payout_on")
    payouts: DashboardTally = _as_rest(DashboardSettlementSummarySchema, "payouts")
    in_flight: DashboardTally = _as_rest(DashboardSettlementSummarySchema, "in_flight")


@strawberry.type(description="The dashboard's figures of a period, as GET /api/v1/dashboard/stats")
class DashboardStats:
    from_: DateText = strawberry.field(name="from", description="The first day")
    to: DateText = strawberry.field(description="The last day, included")
    currency: str
    scope: str = _as_rest(DashboardStatsSchema, "scope")
    totals: DashboardFigures
    success_rate: DecimalText | None = _as_rest(DashboardStatsSchema, "success_rate")
    average: DecimalText | None = _as_rest(DashboardStatsSchema, "average")
    daily: list[DashboardDayFigures] = _as_rest(DashboardStatsSchema, "daily")
    providers: list[DashboardProviderFigures]
    statuses: list[DashboardStatusCount]
    settlement: DashboardSettlementSummary

    @classmethod
    def of(cls, stats: dashboard.Stats) -> DashboardStats:
        shown = dump_stats(stats)
        settlement = shown.pop("settlement")
        return cls(
            from_=shown.pop("from"),
            totals=DashboardFigures(**shown.pop("totals")),
            daily=[DashboardDayFigures(**day) for day in shown.pop("daily")],
            providers=[DashboardProviderFigures(**one) for one in shown.pop("providers")],
            statuses=[DashboardStatusCount(**status) for status in shown.pop("statuses")],
            settlement=DashboardSettlementSummary(
                payouts=DashboardTally(**settlement.pop("payouts")),
                in_flight=DashboardTally(**settlement.pop("in_flight")),
                **settlement,
            ),
            **shown,
        )


@strawberry.type
class DashboardQuery:
    @strawberry.field(
        description="The dashboard's figures of a period, as GET /api/v1/dashboard/stats: "
        "staff the platform's, a seller their own share"
    )
    def dashboard_stats(
        self,
        info: strawberry.Info[Context, None],
        from_: Annotated[str | None, strawberry.argument(name="from", description=FROM)] = None,
        to: Annotated[str | None, strawberry.argument(description=TO)] = None,
        currency: Annotated[str | None, strawberry.argument(description=CURRENCY)] = None,
    ) -> DashboardStats | None:
        actor = info.context.actor
        if not actor.has_role(*dashboard_api.VIEWERS):
            raise PermissionDenied(f"this needs the role {' or '.join(dashboard_api.VIEWERS)}")
        require_scope(actor, STATS_READ)
        args = read_arguments(_STATS_QUERY, {"from": from_, "to": to, "currency": currency})
        asked = dashboard.period(args["since"], args["until"], args["currency"])
        return DashboardStats.of(dashboard.stats(actor, asked))


#: Strawberry types whose fields join the ``Query`` root.
QUERIES: tuple[type, ...] = (DashboardQuery,)
