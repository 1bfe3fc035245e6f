"""The feed cleaner: every rule of ``modules.fetch.cleaning``, on the fixture and nasty rows."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

import pytest

from modules.fetch.cleaning import (
    KNOWN_COMMODITIES,
    SKIP_REASONS,
    Cleaned,
    Listing,
    clean,
    datetime_from_ms,
    normalise_id,
    normalise_name,
    parse_listed_at,
    parse_number,
    parse_timestamp_ms,
)

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "commodities.json"


def _row(**overrides: object) -> dict[str, object]:
    """A valid feed row; keyword arguments replace fields."""
    row: dict[str, object] = {
        "uuid": "ac9c09a4-930e-4152-8453-59d673642b5e",
        "komoditas": "TONGKOL",
        "area_provinsi": "SUMATERA BARAT",
        "area_kota": "BUKITTINGGI",
        "size": "60",
        "price": "37000",
        "tgl_parsed": "2023-04-12T12:04:05Z",
        "timestamp": "1681301045647",
    }
    row.update(overrides)
    return row


def _one(**overrides: object) -> Listing:
    result = clean([_row(**overrides)])
    assert result.skipped == {}, result.skipped
    assert len(result.listings) == 1
    return result.listings[0]


def _skip_reason(row: object) -> str:
    result = clean([row])
    assert result.listings == []
    assert sum(result.skipped.values()) == 1
    (reason,) = result.skipped
    return reason


# --- the shared fixture -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixture_result() -> Cleaned:
    return clean(json.loads(FIXTURE.read_text(encoding="utf-8")))


def test_fixture_every_row_is_accounted_for(fixture_result: Cleaned) -> None:
    total = (
        len(fixture_result.listings)
        + sum(fixture_result.skipped.values())
        + fixture_result.duplicates
    )
    assert total == 2500


def test_fixture_skip_counts_by_reason(fixture_result: Cleaned) -> None:
    assert fixture_result.skipped == {
        "all_null": 15,
        "test_row": 7,
        "province_is_a_commodity": 7,
        "missing_price": 19,
        "invalid_price": 9,
        "non_positive_price": 9,
        "invalid_size": 9,
    }
    assert fixture_result.duplicates == 10
    assert len(fixture_result.listings) == 2415
    assert set(fixture_result.skipped) <= set(SKIP_REASONS)


def test_fixture_listings_are_typed_and_unique(fixture_result: Cleaned) -> None:
    uuids = [listing.uuid for listing in fixture_result.listings]
    assert len(uuids) == len(set(uuids))
    for listing in fixture_result.listings:
        assert isinstance(listing.price_idr, Decimal)
        assert listing.price_idr > 0
        assert listing.size is None or (isinstance(listing.size, Decimal) and listing.size > 0)
        assert listing.listed_at.tzinfo is UTC
        assert listing.commodity == listing.commodity.strip().upper()
        assert listing.province is None or listing.province not in KNOWN_COMMODITIES
        assert listing.uuid == listing.uuid.lower()
    assert not any(listing.commodity.startswith("TEST") for listing in fixture_result.listings)


def _by_uuid(result: Cleaned, uuid: str) -> Listing:
    (listing,) = [listing for listing in result.listings if listing.uuid == uuid]
    return listing


def test_fixture_plain_row(fixture_result: Cleaned) -> None:
    listing = _by_uuid(fixture_result, "ac9c09a4-930e-4152-8453-59d673642b5e")
    assert listing == Listing(
        uuid="ac9c09a4-930e-4152-8453-59d673642b5e",
        commodity="TONGKOL",
        province="SUMATERA BARAT",
        city="BUKITTINGGI",
        size=Decimal("60"),
        price_idr=Decimal("37000"),
        listed_at=datetime(2023, 4, 12, 12, 4, 5, tzinfo=UTC),
        source_timestamp_ms=1681301045647,
    )


def test_fixture_thousands_dot_price_and_millisecond_date(fixture_result: Cleaned) -> None:
    listing = _by_uuid(fixture_result, "70e699d6-7863-453f-9b4e-0225f225acd1")
    assert listing.price_idr == Decimal("10000")
    assert listing.commodity == "IKAN TONGKOL"
    assert listing.listed_at == datetime(2023, 3, 14, 4, 0, 23, 480000, tzinfo=UTC)


def test_fixture_offset_date_is_converted_to_utc(fixture_result: Cleaned) -> None:
    # tgl_parsed "2022-06-17 01:13:43.000+07:00"
    listing = _by_uuid(fixture_result, "4425f6ca-2ceb-4a58-8bf5-2c8cb946dfcf")
    assert listing.listed_at == datetime(2022, 6, 16, 18, 13, 43, tzinfo=UTC)
    assert listing.price_idr == Decimal("34500")


def test_fixture_upper_case_uuid_and_naive_date(fixture_result: Cleaned) -> None:
    # uuid "09708CB9-...", tgl_parsed "2022-08-22 00:08:18" (naive = UTC, matches the timestamp)
    listing = _by_uuid(fixture_result, "09708cb9-5faf-4e69-bda8-9faddea04f5d")
    assert listing.listed_at == datetime(2022, 8, 22, 0, 8, 18, tzinfo=UTC)
    assert listing.price_idr == Decimal("74000")


def test_fixture_timestamp_uuid_is_kept(fixture_result: Cleaned) -> None:
    listing = _by_uuid(fixture_result, "1699502957920")
    assert listing.price_idr == Decimal("54000")
    assert listing.listed_at == datetime(2023, 11, 9, 4, 9, 17, tzinfo=UTC)


def test_fixture_null_date_falls_back_to_timestamp(fixture_result: Cleaned) -> None:
    listing = _by_uuid(fixture_result, "77859427-70c8-43ae-b601-7e27df07810a")
    assert listing.listed_at == datetime(2022, 11, 21, 4, 3, 48, 912000, tzinfo=UTC)
    assert listing.price_idr == Decimal("91000")


def test_fixture_outlier_price_is_kept(fixture_result: Cleaned) -> None:
    listing = _by_uuid(fixture_result, "966bc688-aeb5-4712-ad9a-7009918bc541")
    assert listing.price_idr == Decimal("3000000")


def test_fixture_stray_spaces_are_trimmed(fixture_result: Cleaned) -> None:
    listing = _by_uuid(fixture_result, "2e5105e9-f900-4006-9d2e-ca2344024a97")
    assert listing.province == "JAWA TENGAH"


def test_fixture_listings_agree_with_the_public_parsers(fixture_result: Cleaned) -> None:
    # The cleaner has fast paths for the usual spellings; they must give what the rules give.
    rows = json.loads(FIXTURE.read_text(encoding="utf-8"))
    by_uuid = {normalise_id(row["uuid"]): row for row in rows}
    for listing in fixture_result.listings:
        row = by_uuid[listing.uuid]
        size = parse_number(row["size"])
        source_ms = parse_timestamp_ms(row["timestamp"])
        listed_at = parse_listed_at(row["tgl_parsed"])
        assert listing == Listing(
            uuid=listing.uuid,
            commodity=normalise_name(row["komoditas"]),
            province=normalise_name(row["area_provinsi"]),
            city=normalise_name(row["area_kota"]),
            size=size or None,
            price_idr=parse_number(row["price"]),
            listed_at=listed_at if listed_at is not None else datetime_from_ms(source_ms),
            source_timestamp_ms=source_ms,
        ), row


def test_fixture_duplicate_with_equal_times_keeps_the_later_row(fixture_result: Cleaned) -> None:
    # Rows 46 (101500) and 60 (40000) share uuid, tgl_parsed and timestamp.
    listing = _by_uuid(fixture_result, "e2fb4345-bd66-4dc1-b3ac-eb46511cc16d")
    assert listing.price_idr == Decimal("40000")


# --- prices and sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("37000", Decimal("37000")),
        (" 37000 ", Decimal("37000")),
        ("10.000", Decimal("10000")),
        ("1.250.000", Decimal("1250000")),
        ("12,5", Decimal("12.5")),
        ("1.250.000,50", Decimal("1250000.50")),
        ("+500", Decimal("500")),
        (37000, Decimal("37000")),
        (Decimal("37000.5"), Decimal("37000.5")),
        (12.5, Decimal("12.5")),
    ],
)
def test_price_spellings_are_read_as_decimal(spelling: object, expected: Decimal) -> None:
    listing = _one(price=spelling)
    assert listing.price_idr == expected
    assert type(listing.price_idr) is Decimal


@pytest.mark.parametrize(
    "spelling",
    [
        "abc",
        "37.5",  # ambiguous: a dot that is not a thousands separator
        "37000.00",
        "10.00",
        "1.2345",
        "1,250,000",  # English thousands commas
        "1.250,000,5",
        "10.000.",
        ".5",
        "12a",
        "Rp 10.000",
        "١٢",  # non-ASCII digits
        "nan",
        "Infinity",
        True,
        float("nan"),
        [],
        {"amount": 1},
    ],
)
def test_invalid_or_ambiguous_prices_are_rejected(spelling: object) -> None:
    assert _skip_reason(_row(price=spelling)) == "invalid_price"


@pytest.mark.parametrize("spelling", [None, "", "  ", "-"])
def test_absent_prices_are_missing(spelling: object) -> None:
    assert _skip_reason(_row(price=spelling)) == "missing_price"


@pytest.mark.parametrize("spelling", ["0", "-5000", "0,0", "-10.000"])
def test_zero_and_negative_prices_are_rejected(spelling: str) -> None:
    assert _skip_reason(_row(price=spelling)) == "non_positive_price"


@pytest.mark.parametrize("spelling", ["1", "3000000", "0,5"])
def test_outlier_prices_are_kept(spelling: str) -> None:
    assert _one(price=spelling).price_idr == parse_number(spelling)


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("60", Decimal("60")),
        ("1.000", Decimal("1000")),
        ("2,5", Decimal("2.5")),
        (None, None),
        ("", None),
        ("-", None),
        ("0", None),  # the feed's "no size"
    ],
)
def test_sizes(spelling: object, expected: Decimal | None) -> None:
    assert _one(size=spelling).size == expected


@pytest.mark.parametrize("spelling", ["besar", "-20", "2.5", "1,000,000"])
def test_invalid_sizes_skip_the_row(spelling: str) -> None:
    assert _skip_reason(_row(size=spelling)) == "invalid_size"


def test_parse_number_returns_none_for_absent_values() -> None:
    assert parse_number(None) is None
    assert parse_number(" - ") is None
    with pytest.raises(ValueError, match="not a number"):
        parse_number("abc")


# --- dates --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("2023-04-12T12:04:05Z", datetime(2023, 4, 12, 12, 4, 5, tzinfo=UTC)),
        ("2023-05-29T02:01:45.957Z", datetime(2023, 5, 29, 2, 1, 45, 957000, tzinfo=UTC)),
        ("2022-06-17 01:13:43.000+07:00", datetime(2022, 6, 16, 18, 13, 43, tzinfo=UTC)),
        ("2022-06-17T01:13:43-05:30", datetime(2022, 6, 17, 6, 43, 43, tzinfo=UTC)),
        ("2022-06-30 18:37:08", datetime(2022, 6, 30, 18, 37, 8, tzinfo=UTC)),  # naive = UTC
        (" 2022-06-30T18:37:08 ", datetime(2022, 6, 30, 18, 37, 8, tzinfo=UTC)),
        ("2022-01-01 03:00:00+07:00", datetime(2021, 12, 31, 20, 0, 0, tzinfo=UTC)),
        ("2023-04-12T12:04:05+00:00", datetime(2023, 4, 12, 12, 4, 5, tzinfo=UTC)),
    ],
)
def test_date_formats_become_utc(spelling: str, expected: datetime) -> None:
    listing = _one(tgl_parsed=spelling)
    assert listing.listed_at == expected
    assert listing.listed_at.tzinfo is UTC


def test_naive_fixture_dates_agree_with_the_timestamp_as_utc() -> None:
    rows = json.loads(FIXTURE.read_text(encoding="utf-8"))
    naive = [
        row
        for row in rows
        if row["tgl_parsed"] and row["timestamp"] and len(row["tgl_parsed"]) == 19
    ]
    assert len(naive) > 100
    for row in naive:
        moment = parse_listed_at(row["tgl_parsed"])
        assert moment is not None
        assert int(moment.timestamp()) == int(row["timestamp"]) // 1000


@pytest.mark.parametrize("tgl_parsed", [None, "", "not a date", "2023-13-45T00:00:00Z", 20230412])
def test_timestamp_is_the_fallback_date(tgl_parsed: object) -> None:
    listing = _one(tgl_parsed=tgl_parsed, timestamp="1669003428912")
    assert listing.listed_at == datetime(2022, 11, 21, 4, 3, 48, 912000, tzinfo=UTC)
    assert listing.source_timestamp_ms == 1669003428912


def test_integer_timestamp_is_accepted() -> None:
    assert _one(tgl_parsed=None, timestamp=0).listed_at == datetime(1970, 1, 1, tzinfo=UTC)


def test_tgl_parsed_wins_over_a_disagreeing_timestamp() -> None:
    listing = _one(tgl_parsed="2020-01-01T00:00:00Z", timestamp="1669003428912")
    assert listing.listed_at == datetime(2020, 1, 1, tzinfo=UTC)
    assert listing.source_timestamp_ms == 1669003428912


def test_bad_timestamp_with_good_date_keeps_the_row() -> None:
    listing = _one(timestamp="soon")
    assert listing.listed_at == datetime(2023, 4, 12, 12, 4, 5, tzinfo=UTC)
    assert listing.source_timestamp_ms is None


@pytest.mark.parametrize(("tgl_parsed", "timestamp"), [(None, None), ("", " ")])
def test_no_date_at_all_is_missing_date(tgl_parsed: object, timestamp: object) -> None:
    assert _skip_reason(_row(tgl_parsed=tgl_parsed, timestamp=timestamp)) == "missing_date"


@pytest.mark.parametrize(
    ("tgl_parsed", "timestamp"),
    [
        ("yesterday", None),
        (None, "12:00"),
        ("yesterday", "-1"),
        (None, "99999999999999999999"),
        (None, "9" * 5000),  # longer than int() accepts from a string
        ("0001-01-01T00:00:00+07:00", None),
    ],
)
def test_unreadable_dates_are_invalid_date(tgl_parsed: object, timestamp: object) -> None:
    assert _skip_reason(_row(tgl_parsed=tgl_parsed, timestamp=timestamp)) == "invalid_date"


# --- names, ids, shapes -------------------------------------------------------------------------


def test_names_are_trimmed_collapsed_and_upper_cased() -> None:
    listing = _one(komoditas="  patin   albino ", area_provinsi=" jawa\ttengah", area_kota="x  ")
    assert (listing.commodity, listing.province, listing.city) == (
        "PATIN ALBINO",
        "JAWA TENGAH",
        "X",
    )


@pytest.mark.parametrize("empty", [None, "", "   "])
def test_missing_province_or_city_is_none_not_a_skip(empty: object) -> None:
    listing = _one(area_provinsi=empty, area_kota=empty)
    assert listing.province is None
    assert listing.city is None


@pytest.mark.parametrize("empty", [None, " "])
def test_missing_commodity_is_skipped(empty: object) -> None:
    assert _skip_reason(_row(komoditas=empty)) == "missing_commodity"


def test_normalise_name_on_non_text() -> None:
    assert normalise_name(42) is None
    assert normalise_name(" a  b ") == "A B"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("09708CB9-5FAF-4E69-BDA8-9FADDEA04F5D", "09708cb9-5faf-4e69-bda8-9faddea04f5d"),
        (" ac9c09a4-930e-4152-8453-59d673642b5e ", "ac9c09a4-930e-4152-8453-59d673642b5e"),
        ("1699502957920", "1699502957920"),
        (1699502957920, "1699502957920"),
    ],
)
def test_ids_are_normalised(raw: object, expected: str) -> None:
    assert normalise_id(raw) == expected
    assert _one(uuid=raw).uuid == expected


@pytest.mark.parametrize("raw", ["not-a-uuid", "ac9c09a4930e415284535 9d673642b5e", "12 34", 1.5])
def test_malformed_ids_are_invalid_uuid(raw: object) -> None:
    assert _skip_reason(_row(uuid=raw)) == "invalid_uuid"


@pytest.mark.parametrize("raw", [None, "", "  "])
def test_absent_ids_are_missing_uuid(raw: object) -> None:
    assert _skip_reason(_row(uuid=raw)) == "missing_uuid"


@pytest.mark.parametrize("row", [None, "a string", 42, ["uuid", "x"], ("a",)])
def test_non_objects_are_skipped(row: object) -> None:
    assert _skip_reason(row) == "not_an_object"


@pytest.mark.parametrize(
    "row",
    [
        dict.fromkeys(_row()),
        {},
        {"unexpected": "field"},
    ],
)
def test_all_null_rows_are_skipped(row: dict[str, object]) -> None:
    assert _skip_reason(row) == "all_null"


def test_a_row_with_only_a_price_is_missing_uuid_not_all_null() -> None:
    assert _skip_reason({"price": "5000"}) == "missing_uuid"


@pytest.mark.parametrize(
    "commodity",
    ["Test", "TEST", " test ", "test123", "Test 2", "Ikan Paus Edit 1", "lele edit 12"],
)
def test_test_rows_are_skipped(commodity: str) -> None:
    # Checked before anything else, so a test row is counted as such even when otherwise broken.
    assert _skip_reason(_row(komoditas=commodity, price="1")) == "test_row"
    assert _skip_reason(_row(komoditas=commodity, uuid=None, price="abc")) == "test_row"


@pytest.mark.parametrize("commodity", ["TESTUDO", "Ikan Edit", "EDIT 1", "Contest"])
def test_names_that_only_look_like_tests_are_kept(commodity: str) -> None:
    assert _one(komoditas=commodity).commodity == commodity.upper()


@pytest.mark.parametrize(
    ("commodity", "province"),
    [("Sarden", "Sarden"), ("LELE", " lele "), ("NILA", "KAKAP"), ("CUMI", "cumi")],
)
def test_commodity_in_province_column_is_skipped(commodity: str, province: str) -> None:
    row = _row(komoditas=commodity, area_provinsi=province)
    assert _skip_reason(row) == "province_is_a_commodity"


def test_bad_rows_never_raise() -> None:
    rows: list[object] = [
        _row(),
        None,
        {"uuid": object(), "price": object(), "tgl_parsed": object(), "timestamp": object()},
        {"uuid": "1", "komoditas": ["x"], "price": "5", "tgl_parsed": {}, "timestamp": []},
        _row(uuid="1", size=object()),
    ]
    result = clean(iter(rows))
    assert len(result.listings) == 1
    assert sum(result.skipped.values()) == 4


def test_huge_numbers_do_not_raise() -> None:
    listing = _one(price="9" * 5000, size="1" + ".000" * 1000, uuid="7" * 5000)
    assert listing.price_idr == Decimal("9" * 5000)
    assert listing.size == Decimal("1" + "000" * 1000)


# --- duplicates ---------------------------------------------------------------------------------


def test_duplicate_latest_listed_at_wins_regardless_of_order() -> None:
    early = _row(uuid="AC9C09A4-930E-4152-8453-59D673642B5E", price="1000")
    late = _row(tgl_parsed="2023-04-13T00:00:00Z", price="2000", timestamp="1")
    for rows in ([early, late], [late, early]):
        result = clean(rows)
        assert [listing.price_idr for listing in result.listings] == [Decimal("2000")]
        assert result.duplicates == 1


def test_duplicate_compares_utc_instants_not_strings() -> None:
    # 06:00+07:00 is 23:00 UTC the day before: earlier than 2023-04-12T01:00:00Z.
    offset = _row(tgl_parsed="2023-04-12 06:00:00+07:00", price="1000")
    utc = _row(tgl_parsed="2023-04-12T01:00:00Z", price="2000")
    assert clean([utc, offset]).listings[0].price_idr == Decimal("2000")


def test_duplicate_tie_on_date_is_broken_by_source_timestamp() -> None:
    newer = _row(price="2000", timestamp="1681301045999")
    older = _row(price="1000", timestamp="1681301045000")
    no_timestamp = _row(price="3000", timestamp=None)
    for rows in ([newer, older, no_timestamp], [no_timestamp, older, newer]):
        result = clean(rows)
        assert [listing.price_idr for listing in result.listings] == [Decimal("2000")]
        assert result.duplicates == 2


def test_duplicate_full_tie_keeps_the_later_row() -> None:
    result = clean([_row(price="1000"), _row(price="2000"), _row(price="3000")])
    assert [listing.price_idr for listing in result.listings] == [Decimal("3000")]
    assert result.duplicates == 2


def test_listings_keep_feed_order_of_the_winning_rows() -> None:
    rows = [
        _row(uuid="1", price="1"),
        _row(uuid="2", price="2"),
        _row(uuid="1", price="3"),
        _row(uuid="3", price="4"),
    ]
    result = clean(rows)
    assert [(listing.uuid, listing.price_idr) for listing in result.listings] == [
        ("2", Decimal("2")),
        ("1", Decimal("3")),
        ("3", Decimal("4")),
    ]
    assert result.duplicates == 1


def test_skipped_duplicates_are_counted_as_skipped_not_duplicates() -> None:
    result = clean([_row(), _row(price="abc")])
    assert len(result.listings) == 1
    assert result.skipped == {"invalid_price": 1}
    assert result.duplicates == 0


def test_listing_is_frozen() -> None:
    listing = _one()
    with pytest.raises(AttributeError):
        listing.price_idr = Decimal(1)  # type: ignore[misc]


@pytest.mark.parametrize("name", ["price_idr", "note"])
def test_listing_refuses_any_attribute_change(name: str) -> None:
    listing = _one()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(listing, name, Decimal(1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(listing, name)


def test_listing_is_a_value() -> None:
    listing = _one()
    assert pickle.loads(pickle.dumps(listing)) == listing  # noqa: S301 - our own bytes
    assert copy.copy(listing) == listing
    assert copy.deepcopy(listing) == listing
    assert hash(dataclasses.replace(listing)) == hash(listing)
    assert dataclasses.replace(listing, price_idr=Decimal(1)) != listing
    assert dataclasses.asdict(listing)["price_idr"] == Decimal("37000")
    assert repr(listing).startswith("Listing(uuid='ac9c09a4-930e-4152-8453-59d673642b5e', ")


# --- repeated values (the cleaner memoises names, test verdicts and sizes per feed) ----------


def test_repeated_values_give_the_same_results_every_time() -> None:
    rows = [
        _row(uuid=str(i), komoditas=commodity, area_provinsi=province, size=size)
        for i, (commodity, province, size) in enumerate(
            [("lele", " ", "0"), ("test", "BALI", "60"), ("lele", "lele", "60")] * 3
        )
    ]
    result = clean(rows)
    assert result.skipped == {"test_row": 3, "province_is_a_commodity": 3}
    assert [(listing.province, listing.size) for listing in result.listings] == [(None, None)] * 3
    assert clean(rows) == result


@pytest.mark.parametrize("size", ["", "-", "2,5", "besar", "-20"])
def test_repeated_unusual_sizes_get_the_full_rules_every_time(size: str) -> None:
    single = clean([_row(size=size)])
    repeated = clean([_row(uuid=str(i), size=size) for i in range(3)])
    assert repeated.skipped == {reason: 3 * count for reason, count in single.skipped.items()}
    assert [listing.size for listing in repeated.listings] == [
        listing.size for listing in single.listings
    ] * 3


def test_a_mapping_that_is_not_a_dict_is_a_row() -> None:
    result = clean([MappingProxyType(_row())])
    assert result.listings == clean([_row()]).listings
    assert result.skipped == {}
