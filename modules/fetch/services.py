"""The fetch module's use cases: listings with USD prices, weekly aggregates, the rate in use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np

from app.errors import Invalid
from app.http import InvalidCursor, decode_cursor, encode_cursor, link_next

from . import analysis
from .cleaning import Listing, normalise_name
from .feeds import PreparedFeed, Snapshot, feeds, micros
from .rates import RateQuote, convert, rates

#: The feed's prices are in rupiah; they are shown in dollars too.
FEED_CURRENCY, DISPLAY_CURRENCY = "IDR", "USD"
#: Aggregates kept per feed version (one per grouping and rate).
MEMO_ENTRIES = 8


@dataclass(frozen=True)
class CommodityFilter:
    province: str | None = None
    city: str | None = None
    commodity: str | None = None
    #: Listed at or after (inclusive).
    since: datetime | None = None
    #: Listed before (exclusive).
    before: datetime | None = None


@dataclass(frozen=True)
class PricedListing:
    listing: Listing
    price_usd: Decimal


@dataclass(frozen=True)
class FeedReport:
    """How the answer was made: which feed version, which rate, what cleaning left out."""

    snapshot: Snapshot
    rate: RateQuote

    @property
    def source(self) -> str:
        return self.snapshot.feed.source

    @property
    def fetched_at(self) -> datetime:
        return self.snapshot.fetched_at

    @property
    def age_seconds(self) -> int:
        return self.snapshot.age_seconds()

    @property
    def stale(self) -> bool:
        return self.snapshot.stale

    @property
    def stale_reason(self) -> str | None:
        return self.snapshot.stale_reason

    @property
    def rows(self) -> dict[str, object]:
        prepared = self.snapshot.prepared
        return {
            "received": prepared.received,
            "kept": len(prepared.cleaned.listings),
            "duplicates": prepared.cleaned.duplicates,
            "skipped": dict(sorted(prepared.cleaned.skipped.items())),
        }


@dataclass(frozen=True)
class CommodityPage:
    items: list[PricedListing]
    next_cursor: str | None
    #: Listings matching the filters, in all pages.
    matched: int
    report: FeedReport


@dataclass(frozen=True)
class AggregateReport:
    #: The groups as ``render_groups`` made them.
    groups: Any
    grouped_by: tuple[str, ...]
    #: Rows left out of the groups, by reason: cleaning's reasons and ``missing_province``.
    skipped: dict[str, int]
    report: FeedReport


def list_commodities(
    source: str | None,
    url: str | None,
    filters: CommodityFilter,
    *,
    limit: int,
    cursor: str | None,
) -> CommodityPage:
    """Cleaned listings of the feed, newest first, filtered, one page, with USD prices."""
    if filters.since and filters.before and filters.since >= filters.before:
        raise Invalid("the date range is empty", errors={"from": "must be before 'to'"})
    snapshot = feeds().snapshot(source, url)
    rate = rates().current_rate(FEED_CURRENCY, DISPLAY_CURRENCY)
    prepared = snapshot.prepared
    positions = _matching(prepared, filters)
    start = 0
    if cursor:
        newest_first, uuid = decode_cursor(cursor, 2)
        if not isinstance(newest_first, int) or not isinstance(uuid, str):
            raise InvalidCursor("the cursor belongs to another listing; start again without it")
        start = prepared.position_after((newest_first, uuid))
    if positions is None:
        matched = len(prepared.ordered)
        chosen = prepared.ordered[start : start + limit + 1]
    else:
        matched = len(positions)
        first = int(np.searchsorted(positions, start))
        chosen = [prepared.ordered[i] for i in positions[first : first + limit + 1]]
    next_cursor = None
    if len(chosen) > limit:
        chosen = chosen[:limit]
        next_cursor = encode_cursor(list(PreparedFeed.sort_key(chosen[-1])))
        link_next(next_cursor)
    items = [PricedListing(item, convert(item.price_idr, rate.rate)) for item in chosen]
    return CommodityPage(items, next_cursor, matched, FeedReport(snapshot, rate))


def aggregate_commodities(
    source: str | None,
    url: str | None,
    grouped_by: tuple[str, ...],
    render_groups: Callable[[list[analysis.Group]], Any],
) -> AggregateReport:
    """Price (IDR and USD) and size statistics per group; see :mod:`.analysis`.

    The groups are computed and rendered (``render_groups``) once per feed version, grouping
    and rate: a large feed has thousands of groups, and rendering them is most of the work.
    """
    unknown = [name for name in grouped_by if name not in analysis.GROUPINGS]
    if unknown or not grouped_by or len(set(grouped_by)) != len(grouped_by):
        raise Invalid(
            "group by province, week or both",
            errors={"group": f"a comma-separated subset of {', '.join(analysis.GROUPINGS)}"},
        )
    grouped_by = tuple(name for name in analysis.GROUPINGS if name in grouped_by)
    snapshot = feeds().snapshot(source, url)
    rate = rates().current_rate(FEED_CURRENCY, DISPLAY_CURRENCY)
    prepared = snapshot.prepared
    memo_key = ("aggregate", grouped_by, rate.rate)
    memo = prepared.memo.get(memo_key)
    if memo is None:
        result = analysis.aggregate(prepared.cleaned.listings, rate.rate, grouped_by)
        memo = (result, render_groups(result.groups))
        if len(prepared.memo) >= MEMO_ENTRIES:
            prepared.memo.clear()
        prepared.memo[memo_key] = memo
    result, rendered = memo
    skipped = {**prepared.cleaned.skipped, **result.skipped}
    return AggregateReport(
        groups=rendered,
        grouped_by=grouped_by,
        skipped=dict(sorted(skipped.items())),
        report=FeedReport(snapshot, rate),
    )


def rate_in_use(base: str, quote: str) -> RateQuote:
    """The rate conversions use now for ``base`` -> ``quote``."""
    return rates().current_rate(base, quote)


def _matching(prepared: PreparedFeed, filters: CommodityFilter) -> np.ndarray | None:
    """Positions in ``prepared.ordered`` that pass ``filters``; None when nothing filters."""
    columns = None
    mask = None
    for name in ("province", "city", "commodity"):
        wanted = getattr(filters, name)
        if wanted is None:
            continue
        columns = columns or prepared.columns()
        value = normalise_name(wanted)
        # A blank name matches nothing, not every row that lacks one.
        test = columns[name] == value if value else np.zeros(len(prepared.ordered), dtype=bool)
        mask = test if mask is None else mask & test
    for bound, compare in ((filters.since, np.greater_equal), (filters.before, np.less)):
        if bound is None:
            continue
        columns = columns or prepared.columns()
        test = compare(columns["listed_at"], micros(bound))
        mask = test if mask is None else mask & test
    return None if mask is None else np.flatnonzero(mask)
