"""``modules.fetch.analysis.aggregate`` on hand-made listings: exact statistics, rounded half-up."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from modules.fetch.analysis import MISSING_PROVINCE, Aggregate, Stats, aggregate
from modules.fetch.cleaning import Listing
from modules.fetch.rates import convert

RATE = Decimal("0.0000625")
BOTH = ("province", "week")
#: A Wednesday in ISO week 2023-W15.
WEDNESDAY = datetime(2023, 4, 12, 12, 0, tzinfo=UTC)
_ids = itertools.count(1)


def listing(
    price: str | int | Decimal,
    *,
    province: str | None = "BALI",
    size: str | int | None = None,
    at: datetime = WEDNESDAY,
) -> Listing:
    return Listing(
        uuid=str(next(_ids)),
        commodity="BANDENG",
        province=province,
        city="DENPASAR",
        size=None if size is None else Decimal(size),
        price_idr=Decimal(price),
        listed_at=at,
        source_timestamp_ms=None,
    )


def one_group(result: Aggregate) -> object:
    assert len(result.groups) == 1, result.groups
    return result.groups[0]


def stats(*values: str | None) -> Stats:
    """``Stats`` from strings: count, min, max, median, mean."""
    count, *rest = values
    return Stats(int(count), *(None if value is None else Decimal(value) for value in rest))  # type: ignore[arg-type]


def test_the_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    group = one_group(aggregate([listing(1), listing(2)], RATE, BOTH))

    assert group.price_idr == stats("2", "1.00", "2.00", "1.50", "1.50")
    assert str(group.price_idr.median) == "1.50"


def test_the_median_of_an_odd_count_is_the_middle_value() -> None:
    group = one_group(aggregate([listing(p) for p in (90, 10, 30)], RATE, BOTH))

    assert group.price_idr == stats("3", "10.00", "90.00", "30.00", "43.33")


def test_means_and_medians_round_half_up() -> None:
    # 0.02 and 0.03: mean and median 0.025 -> 0.03 (banker's rounding would give 0.02).
    group = one_group(aggregate([listing("0.02"), listing("0.03")], RATE, BOTH))
    assert (group.price_idr.mean, group.price_idr.median) == (Decimal("0.03"), Decimal("0.03"))

    # 1, 2, 2: mean 1.6666... -> 1.67; and 1, 1, 2, 2, 2, 2, 2, 2: mean 1.75 stays 1.75.
    group = one_group(aggregate([listing(p) for p in (1, 2, 2)], RATE, BOTH))
    assert group.price_idr.mean == Decimal("1.67")
    group = one_group(aggregate([listing(p) for p in (1, 1, 2, 2, 2, 2, 2, 2)], RATE, BOTH))
    assert group.price_idr.mean == Decimal("1.75")


def test_decimal_prices_put_the_column_at_their_scale() -> None:
    rate = Decimal("0.1")
    listings = [listing("12.5"), listing(10), listing("10.25")]

    group = one_group(aggregate(listings, rate, BOTH))

    # 10, 10.25, 12.5: mean 32.75 / 3 = 10.91666... -> 10.92.
    assert group.price_idr == stats("3", "10.00", "12.50", "10.25", "10.92")
    # USD per row as the listing shows it (half-up to the cent), then the statistics.
    usd = sorted(convert(item.price_idr, rate) for item in listings)
    assert usd == [Decimal("1.00"), Decimal("1.03"), Decimal("1.25")]
    assert group.price_usd == stats("3", "1.00", "1.25", "1.03", "1.09")


def test_usd_statistics_are_of_the_converted_prices() -> None:
    # 8 IDR is 0.0005 USD -> 0.00 shown; 88 IDR is 0.0055 -> 0.01. The mean of what a client
    # sees is 0.005 -> 0.01, not the converted IDR mean (48 IDR = 0.003 -> 0.00).
    group = one_group(aggregate([listing(8), listing(88)], RATE, BOTH))

    assert group.price_usd == stats("2", "0.00", "0.01", "0.01", "0.01")


def test_prices_beyond_two_to_the_52_are_exact() -> None:
    big = 2**53 + 1  # a float cannot hold it, nor the mean of it and its neighbour
    group = one_group(aggregate([listing(big), listing(big + 2)], Decimal("0.5"), BOTH))

    assert group.price_idr == stats(
        "2", f"{big}.00", f"{big + 2}.00", f"{big + 1}.00", f"{big + 1}.00"
    )
    assert group.price_usd.min == convert(Decimal(big), Decimal("0.5"))
    assert group.price_usd.mean == Decimal(big + 1) / 2


def test_prices_beyond_int64_are_exact() -> None:
    huge = 10**20 + 1
    listings = [listing(huge), listing(huge + 1), listing(1)]

    group = one_group(aggregate(listings, RATE, BOTH))

    assert group.price_idr.max == Decimal(f"{huge + 1}.00")
    assert group.price_idr.median == Decimal(f"{huge}.00")
    total = Decimal(2 * huge + 2)
    assert group.price_idr.mean == (total / 3).quantize(Decimal("0.01"))
    assert group.price_usd.max == convert(Decimal(huge + 1), RATE)


def test_a_huge_price_with_decimals_is_exact() -> None:
    big = Decimal(2**52) + Decimal("0.5")
    group = one_group(aggregate([listing(big), listing(big + 1)], RATE, BOTH))

    assert group.price_idr.median == big + Decimal("0.5")
    assert group.price_idr.mean == big + Decimal("0.5")
    assert group.price_idr.min == big


def test_listings_without_a_size_are_left_out_of_the_size_statistics() -> None:
    listings = [listing(10, size=None), listing(20, size=10), listing(30, size=20)]

    group = one_group(aggregate(listings, RATE, BOTH))

    assert group.count == 3
    assert group.price_idr.count == 3
    assert group.size == stats("2", "10", "20", "15", "15")


def test_a_group_without_any_size_has_empty_size_statistics() -> None:
    group = one_group(aggregate([listing(10), listing(20)], RATE, BOTH))

    assert group.size == Stats(0, None, None, None, None)


def test_sizes_finer_than_cents_keep_their_scale() -> None:
    listings = [listing(1, size="0.125"), listing(1, size="0.5")]

    group = one_group(aggregate(listings, RATE, BOTH))

    # mean and median 0.3125 -> 0.313 at the size's own three decimals, half-up.
    assert group.size == stats("2", "0.125", "0.500", "0.313", "0.313")


def test_huge_sizes_with_missing_ones_are_exact() -> None:
    big = 2**53 + 1
    listings = [listing(1, size=big), listing(2, size=None), listing(3, size=big + 2)]

    group = one_group(aggregate(listings, RATE, BOTH))

    assert group.size == stats("2", str(big), str(big + 2), str(big + 1), str(big + 1))


def test_listings_without_a_province_are_skipped_and_counted() -> None:
    listings = [listing(10), listing(20, province=None), listing(30, province=None)]

    result = aggregate(listings, RATE, BOTH)

    assert result.skipped == {MISSING_PROVINCE: 2}
    assert [(group.province, group.count) for group in result.groups] == [("BALI", 1)]
    assert all(group.province is not None for group in result.groups)


def test_without_grouping_by_province_no_listing_is_missing_one() -> None:
    listings = [listing(10), listing(20, province=None)]

    result = aggregate(listings, RATE, ("week",))

    assert result.skipped == {}
    group = one_group(result)
    assert (group.province, group.week, group.count) == (None, "2023-W15", 2)


def test_only_listings_without_a_province_give_no_groups() -> None:
    result = aggregate([listing(10, province=None)], RATE, BOTH)

    assert result == Aggregate([], {MISSING_PROVINCE: 1})


def test_empty_input_gives_no_groups() -> None:
    for by in (BOTH, ("week",), ("province",)):
        assert aggregate([], RATE, by) == Aggregate([], {})


def test_groups_are_per_province_and_iso_week_in_order() -> None:
    listings = [
        listing(1, province="JAWA", at=datetime(2021, 1, 3, 23, 59, tzinfo=UTC)),  # 2020-W53
        listing(2, province="BALI", at=datetime(2024, 12, 30, tzinfo=UTC)),  # 2025-W01
        listing(3, province="BALI", at=datetime(2023, 4, 16, 23, 59, tzinfo=UTC)),  # a Sunday
        listing(4, province="BALI", at=WEDNESDAY),
        listing(5, province="BALI", at=datetime(2023, 4, 17, tzinfo=UTC)),  # Monday: W16
    ]

    result = aggregate(listings, RATE, BOTH)

    assert [(group.province, group.week, group.count) for group in result.groups] == [
        ("BALI", "2023-W15", 2),
        ("BALI", "2023-W16", 1),
        ("BALI", "2025-W01", 1),
        ("JAWA", "2020-W53", 1),
    ]
    assert result.groups[0].price_idr == stats("2", "3.00", "4.00", "3.50", "3.50")


def test_grouping_by_province_alone_spans_weeks() -> None:
    listings = [
        listing(1, at=datetime(2022, 1, 1, tzinfo=UTC)),
        listing(3, at=WEDNESDAY),
        listing(5, province="ACEH"),
    ]

    result = aggregate(listings, RATE, ("province",))

    assert [(group.province, group.week, group.count) for group in result.groups] == [
        ("ACEH", None, 1),
        ("BALI", None, 2),
    ]
    assert result.groups[1].price_idr.median == Decimal("2.00")


@pytest.mark.parametrize("by", [(), ("city",), ("province", "day")])
def test_an_unknown_grouping_is_refused(by: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="group by"):
        aggregate([listing(1)], RATE, by)
