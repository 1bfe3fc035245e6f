"""The dashboard's figures in the GraphQL ``Query``: ``dashboard_stats``, as
``GET /api/v1/dashboard/stats`` answers them.

The field reads its arguments with the REST endpoint's query schema, lets in the roles it lets
in (staff and admins: the platform's figures; a seller: their own share; customers are
refused), asks an API key for its scope (``dashboard:read``), and calls the same services
(``period``, ``stats``) with the caller. The answer is built from the REST schema's own dump,
so its keys and values are REST's (``from``, ``to``, money as ``"37000.00"``).

``schema.Query`` merges every class of :data:`QUERIES` into the root. The seller's settlement
summary is ``schema.SellerQuery``'s (the seller module's balances).
"""

from __future__ import annotations

from typing import Annotated

import strawberry

from app.dumping import fast_dump
from app.errors import PermissionDenied
from modules.dashboard import api as dashboard_api
from modules.dashboard import services as dashboard
from modules.dashboard.schemas import DashboardStatsQuerySchema, DashboardStatsSchema

from .loaders import Context
from .rest import read_arguments, require_scope, scope_of
from .types import DateText, DateTimeText, DecimalText

STATS_READ = scope_of(dashboard_api.Stats.get)
_STATS_QUERY = DashboardStatsQuerySchema()
_STATS = fast_dump(DashboardStatsSchema())
FROM = "The first day, in the marketplace's time zone (default: 29 days before to)"
TO = f"The last day, included (default: today); at most {dashboard.MAX_DAYS} days from from"
CURRENCY = "An ISO 4217 code (default: IDR)"


@strawberry.type(description="Counters of the dashboard over some days (a seller: their share)")
class DashboardFigures:
    transactions: int = strawberry.field(description="Transactions that reached a final state")
    succeeded: int
    failed: int
    canceled: int
    volume: DecimalText = strawberry.field(description="What succeeded (a seller: their share)")
    fees: DecimalText = strawberry.field(
        description="Providers' fees on it (a seller: the commission on their share)"
    )
    refunds: int = strawberry.field(description="Refunds whose money went back")
    refunded: DecimalText = strawberry.field(description="Their amount (a seller: their share)")


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
    pending: DecimalText
    available: DecimalText
    owed: DecimalText
    next_release_at: DateTimeText | None
    next_payout_on: DateText | None
    payouts: DashboardTally = strawberry.field(description="Settlements completed in the period")
    in_flight: DashboardTally = strawberry.field(
        description="Settlements pending or processing now"
    )


@strawberry.type(description="The dashboard's figures of a period, as GET /api/v1/dashboard/stats")
class DashboardStats:
    from_: DateText = strawberry.field(name="from", description="The first day")
    to: DateText = strawberry.field(description="The last day, included")
    currency: str
    scope: str = strawberry.field(
        description="platform: every sale (staff); seller: the caller's share"
    )
    totals: DashboardFigures
    success_rate: DecimalText | None = strawberry.field(
        description="succeeded / (succeeded + failed), 0 to 1; null when there is neither"
    )
    average: DecimalText | None = strawberry.field(
        description="volume / succeeded; null when none succeeded"
    )
    daily: list[DashboardDayFigures] = strawberry.field(description="Every day, zeros included")
    providers: list[DashboardProviderFigures]
    statuses: list[DashboardStatusCount]
    settlement: DashboardSettlementSummary

    @classmethod
    def of(cls, stats: dashboard.Stats) -> DashboardStats:
        shown = _STATS(stats)
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
