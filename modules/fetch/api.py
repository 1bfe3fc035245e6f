"""``/api/v1/fetch``: the commodity feed with USD prices, its weekly aggregates, the rate in use.

Every view needs a logged-in caller; the aggregate needs an admin. Upstream failures come back
as 502/504 problems naming the source; a source that is down while a good copy is kept is
served from that copy with ``meta.stale: true``.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from flask.views import MethodView
from flask_smorest import Blueprint

from app.security import requires

from . import services
from .rates import CURRENCY_PATTERN, RateQuote
from .schemas import (
    AggregateQuerySchema,
    AggregateSchema,
    CommodityPageSchema,
    CommodityQuerySchema,
    FeedMetaSchema,
    FetchProblemSchema,
    GroupSchema,
    RateSchema,
)

blp = Blueprint(
    "fetch",
    __name__,
    description="The external commodity price feed, cleaned, with USD prices and weekly "
    "aggregates; and the exchange rate in use.",
)

_GROUPS = GroupSchema(many=True)
_META = FeedMetaSchema()
_UPSTREAM = {
    502: "The source failed (an error status, an unusable body, unreachable) and no good copy "
    "is kept",
    504: "The source did not answer in time and no good copy is kept",
}


def _upstream_responses(view: Any) -> Any:
    for status, description in _UPSTREAM.items():
        view = blp.alt_response(status, schema=FetchProblemSchema, description=description)(view)
    return blp.alt_response(
        503, schema=FetchProblemSchema, description="No exchange rate is known"
    )(view)


@blp.route("/commodities")
class Commodities(MethodView):
    @requires()
    @blp.arguments(CommodityQuerySchema, location="query")
    @blp.response(200, CommodityPageSchema)
    @_upstream_responses
    def get(self, args: dict[str, Any]) -> services.CommodityPage:
        """List cleaned commodity listings, newest first, with USD prices

        Filters are exact names in any letter case; ``from``/``to`` take a date (a whole UTC
        day) or an RFC 3339 time. ``meta`` tells which version of the feed answered (``stale``
        when the source is down), the rate used and the rows cleaning left out, by reason.
        """
        filters = services.CommodityFilter(
            province=args["province"],
            city=args["city"],
            commodity=args["commodity"],
            since=args["since"],
            before=args["before"],
        )
        return services.list_commodities(
            args["source"], args["url"], filters, limit=args["limit"], cursor=args["cursor"]
        )


@blp.route("/commodities/aggregate")
class CommodityAggregate(MethodView):
    @requires("admin")
    @blp.arguments(AggregateQuerySchema, location="query")
    @blp.response(200, AggregateSchema)
    @_upstream_responses
    def get(self, args: dict[str, Any]) -> Response:
        """Price and size statistics per province and ISO week

        For each group: count, and min, max, median and mean of the price in IDR and in USD
        and of the size, computed exactly and rounded half-up to two decimals. Rows without a
        province are counted in ``skipped`` (``missing_province``), never grouped under null;
        rows without a usable date never get past cleaning (``missing_date``, ``invalid_date``).
        """
        report = services.aggregate_commodities(
            args["source"], args["url"], args["group"], render_groups=_GROUPS.dump
        )
        # The groups are already rendered (and cached with the feed version); only the
        # metadata, which ages, is rendered per request.
        return jsonify(
            {
                "grouped_by": list(report.grouped_by),
                "groups": report.groups,
                "skipped": report.skipped,
                "meta": _META.dump(report.report),
            }
        )


def _currency_parameter(name: str, example: str) -> dict[str, Any]:
    return {
        "in": "path",
        "name": name,
        "description": "An ISO 4217 code in capitals",
        "schema": {"type": "string", "pattern": CURRENCY_PATTERN, "example": example},
    }


@blp.route(
    "/rates/<string:base>/<string:quote>",
    parameters=[_currency_parameter("base", "IDR"), _currency_parameter("quote", "USD")],
)
class Rate(MethodView):
    @requires()
    @blp.response(200, RateSchema)
    @blp.alt_response(404, schema=FetchProblemSchema, description="Lapak converts no such pair")
    @blp.alt_response(
        422, schema=FetchProblemSchema, description="A code is not three capital letters"
    )
    @blp.alt_response(
        503, schema=FetchProblemSchema, description="The provider failed and no rate was ever kept"
    )
    def get(self, base: str, quote: str) -> RateQuote:
        """The exchange rate in use, its source and age

        Lapak keeps the pairs it converts (IDR/USD); another pair is a 404. ``stale`` is true
        when the provider failed and this is the last rate it gave.
        """
        return services.rate_in_use(base, quote)
