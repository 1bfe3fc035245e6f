"""Statistics of a cleaned feed per province and ISO week, computed with pandas, exactly.

Prices are money, so no statistic goes through a float that could round it. Each measure is
turned into whole numbers at its own decimal scale (IDR prices ``37000`` -> ``37000``, a price
of ``12,5`` puts the whole column at one decimal: ``125``); pandas then computes count, min, max
and sum on ``int64`` exactly, and the median as the mean of at most two middle integers, which a
float holds exactly while the integers stay below 2**52. The mean is the exact sum divided by the
count in :class:`~decimal.Decimal`. Only the final figure is rounded, half-up, to :data:`PLACES`
(sizes: to the size column's own scale if that is finer). Integers too large for these
guarantees switch the measure to Python integers, exact at any size, just slower.

USD prices are each row's IDR price converted as the listing shows it (half-up to the cent),
then aggregated: a week's USD mean is the mean of the USD prices a client sees, not a converted
IDR mean.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

import numpy as np
import pandas as pd

from .cleaning import Listing
from .models import RATE_SCALE

GROUPINGS = ("province", "week")
#: Decimal places of every reported price statistic (the ISO 4217 minor unit of IDR and USD).
PLACES = 2
#: Finer decimals than this in the feed are rounded (half-up) before the statistics.
MAX_SCALE = 6
MISSING_PROVINCE = "missing_province"

_EXACT_FLOAT = 2**52
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Stats:
    count: int
    min: Decimal | None
    max: Decimal | None
    median: Decimal | None
    mean: Decimal | None


@dataclass(frozen=True)
class Group:
    province: str | None
    #: ISO year and week, ``2023-W15``; None when not grouped by week.
    week: str | None
    count: int
    price_idr: Stats
    price_usd: Stats
    size: Stats


@dataclass(frozen=True)
class Aggregate:
    groups: list[Group]
    #: Rows left out of the groups, by reason (only ``missing_province`` so far).
    skipped: dict[str, int]


def aggregate(listings: Sequence[Listing], rate: Decimal, by: Sequence[str]) -> Aggregate:
    """Group ``listings`` by ``by`` (a subset of :data:`GROUPINGS`, in that order of keys)."""
    unknown = set(by) - set(GROUPINGS)
    if unknown or not by:
        raise ValueError(f"group by some of {GROUPINGS}, not {tuple(by)}")
    skipped: dict[str, int] = {}
    if "province" in by:
        kept = [listing for listing in listings if listing.province is not None]
        if len(kept) != len(listings):
            skipped[MISSING_PROVINCE] = len(listings) - len(kept)
        listings = kept
    if not listings:
        return Aggregate([], skipped)

    price, price_scale = _scaled([listing.price_idr for listing in listings])
    size, size_scale = _scaled([listing.size for listing in listings])
    usd = _converted(price, price_scale, rate)
    frame = pd.DataFrame({"price": price, "usd": usd, "size": size})
    keys = []
    if "province" in by:
        frame["province"] = [listing.province for listing in listings]
        keys.append("province")
    if "week" in by:
        when = pd.to_datetime([listing.listed_at for listing in listings], utc=True)
        iso = when.isocalendar()
        frame["iso_year"] = iso["year"].to_numpy()
        frame["iso_week"] = iso["week"].to_numpy()
        keys += ["iso_year", "iso_week"]

    grouped = frame.groupby(keys, sort=True)
    price_stats = _column_stats(grouped, "price", price_scale, PLACES)
    usd_stats = _column_stats(grouped, "usd", PLACES, PLACES)
    size_stats = _column_stats(grouped, "size", size_scale, max(PLACES, size_scale))
    groups = []
    for position, key in enumerate(grouped.size().index):
        named = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        groups.append(
            Group(
                province=named.get("province"),
                week=f"{named['iso_year']}-W{named['iso_week']:02d}" if "week" in by else None,
                count=price_stats[position].count,
                price_idr=price_stats[position],
                price_usd=usd_stats[position],
                size=size_stats[position],
            )
        )
    return Aggregate(groups, skipped)


# -- exact numbers ----------------------------------------------------------------------------


def _scaled(values: Sequence[Decimal | None]) -> tuple[Any, int]:
    """``values`` as whole numbers at the smallest common decimal scale (None stays missing)."""
    present = [value for value in values if value is not None]
    truncated = [int(value) for value in present]
    fractional = [value for value, whole in zip(present, truncated, strict=True) if value != whole]
    if not fractional:  # the usual feed: whole rupiah, whole sizes; no Decimal arithmetic
        scale = 0
        whole_numbers = iter(truncated)
        scaled = [None if value is None else next(whole_numbers) for value in values]
    else:
        scale = min(MAX_SCALE, max(-value.as_tuple().exponent for value in fractional))
        with localcontext() as context:
            context.prec = 80
            context.rounding = ROUND_HALF_UP
            scaled = [
                None if value is None else int(value.scaleb(scale).to_integral_value())
                for value in values
            ]
    largest = (max(max(truncated, default=0), -min(truncated, default=0)) + 1) * 10**scale
    if largest * max(len(scaled), 1) > _INT64_MAX or largest >= _EXACT_FLOAT:
        return pd.array(scaled, dtype=object), scale  # Python ints: exact at any size
    if len(present) == len(values):
        return np.array(scaled, dtype=np.int64), scale
    return pd.array(scaled, dtype="Int64"), scale


def _converted(price: Any, scale: int, rate: Decimal) -> Any:
    """Each price times ``rate``, half-up to the cent, at scale :data:`PLACES`."""
    rate_whole = int(rate.scaleb(RATE_SCALE))
    divisor = 10 ** (scale + RATE_SCALE - PLACES)
    half = divisor // 2
    if isinstance(price, np.ndarray):
        largest = int(price.max()) if len(price) else 0
        if largest * rate_whole + half <= _INT64_MAX:
            return (price * rate_whole + half) // divisor
    return pd.array([(int(p) * rate_whole + half) // divisor for p in price], dtype=object)


def _column_stats(grouped: Any, column: str, scale: int, places: int) -> list[Stats]:
    """Per group, in group order: the column's statistics as Decimals."""
    series = grouped[column]
    exact = grouped.obj[column].dtype == object
    medians = series.agg(_exact_median) if exact else series.median()
    # .tolist() gives Python ints for int64 columns: a row of mixed dtypes would turn to floats.
    columns = zip(
        series.count().tolist(),
        series.min().tolist(),
        series.max().tolist(),
        series.sum(min_count=1).tolist(),
        medians.tolist(),
        strict=True,
    )
    return [_stats(*values, scale=scale, places=places) for values in columns]


def _exact_median(values: pd.Series) -> Any:
    present = [int(value) for value in values if value is not None and not pd.isna(value)]
    if not present:
        return None
    return Decimal(statistics.median_low(present) + statistics.median_high(present)) / 2


def _stats(
    count: int, low: Any, high: Any, total: Any, median: Any, *, scale: int, places: int
) -> Stats:
    if count == 0:
        return Stats(0, None, None, None, None)
    quantum = Decimal(1).scaleb(-places)
    with localcontext() as context:
        context.prec = 80
        context.rounding = ROUND_HALF_UP

        def decimal(value: Any) -> Decimal:
            # Whole numbers are exact; a float median is a whole number or a half, also exact.
            number = value if isinstance(value, Decimal) else Decimal(value)
            return number.scaleb(-scale).quantize(quantum)

        return Stats(
            count=count,
            min=decimal(low),
            max=decimal(high),
            median=decimal(median),
            mean=(decimal_sum(total) / count).scaleb(-scale).quantize(quantum),
        )


def decimal_sum(total: Any) -> Decimal:
    return total if isinstance(total, Decimal) else Decimal(int(total))
