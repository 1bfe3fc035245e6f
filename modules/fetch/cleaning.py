"""Turn raw rows of the commodity feed into typed, de-duplicated ``Listing`` records.

Pure functions, no I/O: :func:`clean` takes the decoded JSON rows and returns the listings that
survived, the number of rows skipped per reason, and the number of duplicates dropped. It never
raises on a bad row; the feed is a third party's and any field may be anything.

Rules (each one is tested in ``tests/modules/fetch/test_cleaning.py``):

Names
    ``komoditas``, ``area_provinsi`` and ``area_kota`` are trimmed, inner whitespace collapsed to
    one space, and upper-cased, because upper case is what most of the feed uses
    (``" jawa  tengah"`` -> ``"JAWA TENGAH"``). Names are not aliased: ``"Ikan Tongkol"`` stays
    ``"IKAN TONGKOL"``, distinct from ``"TONGKOL"``; merging synonyms is a business decision, not
    cleaning. An empty province or city becomes ``None`` (the aggregate reports those rows); an
    empty commodity skips the row.

Ids
    A UUID (any case) is lower-cased; an all-digit id (the feed sometimes puts a millisecond
    timestamp there) is kept as that string. Anything else is ``invalid_uuid``. Duplicates are
    detected on the normalised id, so they are case-insensitive.

Numbers (price and size)
    Decimal only, never float. Surrounding spaces are ignored, then:

    * ``37000`` plain digits;
    * ``10.000`` / ``1.250.000`` a dot followed by groups of exactly three digits is a thousands
      separator (Indonesian style), so these are 10000 and 1250000;
    * ``12,5`` a comma is the decimal separator, also after thousands: ``1.250.000,50``;
    * ``37.5``, ``37000.00``, ``1,250,000`` are *ambiguous* (a dot that is not a thousands
      separator, or English separators) and are rejected rather than guessed: in an IDR feed a
      misread separator is a factor of a thousand;
    * anything else (``abc``, ``-``, ``12a``) is not a number and is rejected.

    A price must be > 0 (``non_positive_price`` otherwise). A size is optional: null, empty,
    ``-`` or ``0`` (the feed's "no size") give ``None``; a negative or unreadable size skips
    the row as ``invalid_size``.

Outliers
    Kept. A price of ``1`` or ``3000000`` is a real value of the feed and plausible for some
    product or unit; deciding what to exclude from statistics belongs to the aggregation, which
    can see the whole distribution. Only the test-row rule below removes rows by content.

Dates
    ``tgl_parsed`` in any ISO-8601 spelling the feed uses: ``2023-04-12T12:04:05Z``,
    ``2023-05-29T02:01:45.957Z``, ``2022-06-17 01:13:43.000+07:00`` and ``2022-06-30 18:37:08``.
    Offsets are converted to UTC. A date without a zone is UTC: on the fixture every naive
    ``tgl_parsed`` equals the millisecond ``timestamp`` read as UTC (read as Asia/Jakarta they
    would all be seven hours off). When ``tgl_parsed`` is null or unreadable the ``timestamp``
    (milliseconds since the Unix epoch) is used instead. No usable date at all skips the row:
    ``missing_date`` when both are null/empty, ``invalid_date`` when something was there but could
    not be read.

Test rows
    A row is a test row when its normalised commodity is ``TEST`` optionally followed by a
    number (``Test``, ``test123``, ``Test 2``), or ends in ``EDIT`` and a number
    (``Ikan Paus Edit 1``, left over by someone editing a listing). Counted as ``test_row``,
    checked before every other rule but the shape checks, so broken test rows count as test rows.

Province that is a commodity
    When the normalised province equals the row's commodity or one of :data:`KNOWN_COMMODITIES`,
    the columns were mixed up upstream; the row is skipped as ``province_is_a_commodity`` instead
    of inventing a province.

Duplicates
    Among rows with the same normalised id, the one with the latest ``listed_at`` wins, then the
    latest ``source_timestamp_ms`` (a missing one counts as earliest), then the later position in
    the feed. ``Cleaned.duplicates`` counts the rows dropped this way. Listings keep feed order.

Skip reasons, checked in this order (the first that applies is counted):
``not_an_object``, ``all_null``, ``test_row``, ``missing_uuid``, ``invalid_uuid``,
``missing_commodity``, ``province_is_a_commodity``, ``missing_price``, ``invalid_price``,
``non_positive_price``, ``invalid_size``, ``missing_date``, ``invalid_date``.
``Cleaned.skipped`` holds only the reasons that occurred.
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Final, TypeVar

NOT_AN_OBJECT: Final = "not_an_object"
ALL_NULL: Final = "all_null"
TEST_ROW: Final = "test_row"
MISSING_UUID: Final = "missing_uuid"
INVALID_UUID: Final = "invalid_uuid"
MISSING_COMMODITY: Final = "missing_commodity"
PROVINCE_IS_A_COMMODITY: Final = "province_is_a_commodity"
MISSING_PRICE: Final = "missing_price"
INVALID_PRICE: Final = "invalid_price"
NON_POSITIVE_PRICE: Final = "non_positive_price"
INVALID_SIZE: Final = "invalid_size"
MISSING_DATE: Final = "missing_date"
INVALID_DATE: Final = "invalid_date"

#: Every reason :func:`clean` can count, in the order the checks run.
SKIP_REASONS: Final = (
    NOT_AN_OBJECT,
    ALL_NULL,
    TEST_ROW,
    MISSING_UUID,
    INVALID_UUID,
    MISSING_COMMODITY,
    PROVINCE_IS_A_COMMODITY,
    MISSING_PRICE,
    INVALID_PRICE,
    NON_POSITIVE_PRICE,
    INVALID_SIZE,
    MISSING_DATE,
    INVALID_DATE,
)

#: Commodity names the feed is known to carry (normalised); used to spot a commodity written in
#: the province column.
KNOWN_COMMODITIES: Final = frozenset(
    {
        "BANDENG",
        "BAWAL",
        "BOBARA",
        "GURAME",
        "IKAN TONGKOL",
        "KAKAP",
        "LELE",
        "NILA",
        "PATIN",
        "PATIN ALBINO",
        "SARDEN",
        "TONGKOL",
        "UDANG VANAME",
    }
)

# Compiled once: the cleaner runs on 200k-row feeds.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_is_uuid = _UUID.fullmatch
# Optional sign, integer part either plain digits or 1-3 digits then dot-separated groups of
# exactly three, then an optional decimal comma. ``37.5`` and ``1,250,000`` do not match.
# ASCII only: ``\d`` would otherwise accept Arabic-Indic and other Unicode digits.
_NUMBER = re.compile(r"([+-]?)(\d+|\d{1,3}(?:\.\d{3})+)(?:,(\d+))?", re.ASCII)
_TEST_NAME = re.compile(r"TEST ?\d*|.+ EDIT \d+")
_EMPTY_NUMBERS: Final = frozenset({"", "-"})
_ZERO: Final = Decimal(0)  # comparing two Decimals is twice as fast as a Decimal and an int
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_T = TypeVar("_T")
_FIELDS: Final = (
    "uuid",
    "komoditas",
    "area_provinsi",
    "area_kota",
    "size",
    "price",
    "tgl_parsed",
    "timestamp",
)


@dataclass(frozen=True)
class Listing:
    """One cleaned price listing. Names are upper-case; ``listed_at`` is aware and in UTC."""

    # Slots, so a listing is one GC-tracked object instead of two (no __dict__): at 200k
    # listings that saves a tenth of clean()'s time. Written out rather than slots=True, which
    # in Python 3.11 rebuilds the class and leaves a frozen __setattr__ that raises TypeError,
    # not FrozenInstanceError, for a name that is not a field.
    __slots__ = (
        "city",
        "commodity",
        "listed_at",
        "price_idr",
        "province",
        "size",
        "source_timestamp_ms",
        "uuid",
    )

    uuid: str
    commodity: str
    province: str | None
    city: str | None
    size: Decimal | None
    price_idr: Decimal
    listed_at: datetime
    source_timestamp_ms: int | None

    def __reduce__(self) -> tuple[type[Listing], tuple[object, ...]]:
        # pickle and copy would restore the slots through setattr, which a frozen class refuses.
        return Listing, tuple(getattr(self, field.name) for field in fields(self))


@dataclass(frozen=True, slots=True)
class Cleaned:
    """The result of :func:`clean`: ``len(listings) + sum(skipped) + duplicates`` == rows in."""

    listings: list[Listing]
    skipped: dict[str, int]
    duplicates: int


# For clean_row, which fills listings through their slots (see there).
_new_listing = object.__new__
(
    _set_uuid,
    _set_commodity,
    _set_province,
    _set_city,
    _set_size,
    _set_price_idr,
    _set_listed_at,
    _set_source_timestamp_ms,
) = (getattr(Listing, field.name).__set__ for field in fields(Listing))


class _Skip(Exception):
    """Internal: a row is rejected for ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalise_name(value: object) -> str | None:
    """Trim, collapse inner whitespace and upper-case a name; ``None`` when empty or not text."""
    if not isinstance(value, str):
        return None
    name = " ".join(value.split()).upper()
    return name or None


def normalise_id(value: object) -> str | None:
    """Return the id lower-cased if it is a UUID or as-is if all digits.

    ``None`` means absent (null or blank); raises ``ValueError`` for any other shape.
    """
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError("id is not text")
    text = value.strip()
    if not text:
        return None
    if text.isdigit() and text.isascii():
        return text
    text = text.lower()
    if len(text) == 36 and _UUID.fullmatch(text):
        return text
    raise ValueError(f"not a uuid: {text!r}")


def parse_number(value: object) -> Decimal | None:
    """Read a feed number (see the module docstring for the separator rules) as a Decimal.

    ``None`` means absent (null, empty, ``-``); raises ``ValueError`` when it is not a number
    or is ambiguous. Never produces a float.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text in _EMPTY_NUMBERS:
            return None
        if text.isdigit() and text.isascii():  # the common case, kept cheap
            return Decimal(text)
        match = _NUMBER.fullmatch(text)
        if match is None:
            raise ValueError(f"not a number: {text!r}")
        sign, integer, fraction = match.groups()
        digits = integer.replace(".", "")
        return Decimal(f"{sign}{digits}.{fraction}" if fraction else f"{sign}{digits}")
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal | float):
        # A float came from a JSON number; its shortest repr is what the upstream wrote.
        number = value if isinstance(value, Decimal) else Decimal(repr(value))
        if not number.is_finite():
            raise ValueError("not a finite number")
        return number
    raise ValueError(f"not a number: {type(value).__name__}")


def parse_timestamp_ms(value: object) -> int | None:
    """Read the feed's millisecond epoch ``timestamp``; ``None`` when absent, else ValueError."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise ValueError("timestamp is not text")
    text = value.strip()
    if not text:
        return None
    if not (text.isdigit() and text.isascii()):
        raise ValueError(f"not a millisecond timestamp: {text!r}")
    return int(text)


def datetime_from_ms(milliseconds: int) -> datetime:
    """The aware UTC datetime of a millisecond epoch value (exact, no float rounding)."""
    try:
        return _EPOCH + timedelta(milliseconds=milliseconds)
    except OverflowError as error:
        raise ValueError(f"timestamp out of range: {milliseconds}") from error


def parse_listed_at(value: object) -> datetime | None:
    """Read ``tgl_parsed`` as an aware UTC datetime; naive values are UTC.

    ``None`` when absent; raises ``ValueError`` when unreadable.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("date is not text")
    text = value.strip()
    if not text:
        return None
    # Python 3.11's fromisoformat reads "Z", ".957Z", " " separators and "+07:00" in C.
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is UTC:  # "Z" and "+00:00"; astimezone(UTC) would return it unchanged
        return moment
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as error:  # e.g. 0001-01-01T00:00:00+07:00
        raise ValueError(f"date out of range: {text!r}") from error


def _is_test_name(commodity: str) -> bool:
    return _TEST_NAME.fullmatch(commodity) is not None


def _plain_number(text: str) -> Decimal | None:
    """The Decimal of plain ASCII digits (the feed's usual ``"60"``), else ``None``."""
    return Decimal(text) if text.isdigit() and text.isascii() else None


class _Memo(dict[str, _T]):
    """A dict that computes a missing value once with ``compute`` (lookups of hits stay in C)."""

    __slots__ = ("_compute",)

    def __init__(self, compute: Callable[[str], _T]) -> None:
        super().__init__()
        self._compute = compute

    def __missing__(self, key: str) -> _T:
        value = self[key] = self._compute(key)
        return value


def _row_cleaner() -> Callable[[object], Listing]:
    """A function that cleans one row, with memo tables for what a feed repeats.

    A 200k-row feed repeats a few dozen names and sizes, so names, test-name verdicts and sizes
    are worked out once per distinct string. Each field has an inline fast path for the
    spelling nearly every row uses; anything else goes through the general helpers, built on
    the public parsers above, which define the rules.
    """
    names = _Memo(normalise_name)
    is_test = _Memo(_is_test_name)
    sizes = _Memo(_plain_number)  # not prices: too varied, misses would cost more than hits save

    def clean_row(row: object) -> Listing:
        """The listing of ``row``; raises ``_Skip`` with the reason code when it is rejected."""
        if type(row) is not dict and not isinstance(row, Mapping):
            raise _Skip(NOT_AN_OBJECT)
        get = row.get

        # normalise_name gives None for anything but text, so only text needs the memo.
        raw = get("komoditas")
        commodity = names[raw] if type(raw) is str else None
        if commodity is not None and is_test[commodity]:
            raise _Skip(TEST_ROW)

        raw = get("uuid")
        # A plain UUID passes the same regex normalise_id applies; _uuid judges everything else.
        uuid = raw.lower() if type(raw) is str else ""
        if not _is_uuid(uuid):
            uuid = _uuid(raw, get)
        if commodity is None:
            raise _Skip(MISSING_COMMODITY)

        raw = get("area_provinsi")
        province = names[raw] if type(raw) is str else None
        if province is not None and (province == commodity or province in KNOWN_COMMODITIES):
            raise _Skip(PROVINCE_IS_A_COMMODITY)

        raw = get("price")
        if type(raw) is str and raw.isdigit() and raw.isascii():  # the usual "37000"
            price = Decimal(raw)
        else:
            price = _number(raw, INVALID_PRICE)
            if price is None:
                raise _Skip(MISSING_PRICE)
        if price <= _ZERO:
            raise _Skip(NON_POSITIVE_PRICE)

        raw = get("size")
        size = sizes[raw] if type(raw) is str else None
        if size is None:
            size = _number(raw, INVALID_SIZE)
        if size is not None:
            if size < _ZERO:
                raise _Skip(INVALID_SIZE)
            if size == _ZERO:
                size = None

        listed_at, source_ms = _listed_at(get("tgl_parsed"), get("timestamp"))
        raw = get("area_kota")
        city = names[raw] if type(raw) is str else None
        # The slots are set directly: a frozen dataclass's __init__ goes through
        # object.__setattr__ for each field, about three times slower. Every value is validated.
        listing = _new_listing(Listing)
        _set_uuid(listing, uuid)
        _set_commodity(listing, commodity)
        _set_province(listing, province)
        _set_city(listing, city)
        _set_size(listing, size)
        _set_price_idr(listing, price)
        _set_listed_at(listing, listed_at)
        _set_source_timestamp_ms(listing, source_ms)
        return listing

    return clean_row


def _uuid(raw: object, get: Callable[[str], object]) -> str:
    """The normalised id, or ``_Skip`` for ``all_null``, ``invalid_uuid``, ``missing_uuid``."""
    if raw is None and all(get(field) is None for field in _FIELDS):
        raise _Skip(ALL_NULL)
    try:
        uuid = normalise_id(raw)
    except ValueError:
        raise _Skip(INVALID_UUID) from None
    if uuid is None:
        raise _Skip(MISSING_UUID)
    return uuid


def _number(raw: object, invalid_reason: str) -> Decimal | None:
    """``parse_number``, raising ``_Skip(invalid_reason)`` instead of ``ValueError``."""
    try:
        return parse_number(raw)
    except (ValueError, InvalidOperation):
        raise _Skip(invalid_reason) from None


def _listed_at(tgl_parsed: object, timestamp: object) -> tuple[datetime, int | None]:
    """Pick the listing time: ``tgl_parsed`` first, the millisecond timestamp as fallback."""
    unreadable = False
    # Fast path for the usual 13 digits; longer strings go through the checked parser, since
    # int() refuses strings over 4300 digits with a ValueError.
    if (
        type(timestamp) is str
        and len(timestamp) <= 18
        and timestamp.isdigit()
        and timestamp.isascii()
    ):
        source_ms: int | None = int(timestamp)
    else:
        try:
            source_ms = parse_timestamp_ms(timestamp)
        except ValueError:
            source_ms, unreadable = None, True
    try:
        listed_at = parse_listed_at(tgl_parsed)
    except ValueError:
        listed_at, unreadable = None, True
    if listed_at is None and source_ms is not None:
        try:
            listed_at = datetime_from_ms(source_ms)
        except ValueError:
            raise _Skip(INVALID_DATE) from None
    if listed_at is None:
        raise _Skip(INVALID_DATE if unreadable else MISSING_DATE)
    return listed_at, source_ms


def clean(rows: Iterable[object]) -> Cleaned:
    """Clean a feed: typed listings in feed order, skip counts by reason, duplicates dropped.

    ``rows`` is normally the decoded JSON list of objects (``Iterable[Mapping[str, object]]``);
    anything else in it is counted as ``not_an_object``. Never raises on a bad row.
    """
    with _cycle_collection_paused():
        return _clean(rows)


@contextlib.contextmanager
def _cycle_collection_paused() -> Iterator[None]:
    """Hold the cycle collector while a feed is cleaned, and keep it off the result after.

    Cleaning allocates hundreds of thousands of objects that all survive and form no cycles;
    every allocation threshold crossed set off a collection walking them again (a quarter of
    the time at 200k rows), and after cleaning every collection of the process would walk
    them still. So they are frozen (:func:`gc.freeze`): reference counting frees them as usual
    when they are dropped; only the cycle collector ignores them. The price: cyclic garbage
    pending at that moment is frozen too, never collected; a few objects per cleaned feed.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def _clean(rows: Iterable[object]) -> Cleaned:
    skipped: dict[str, int] = {}
    clean_row = _row_cleaner()
    kept: list[Listing | None] = []
    # uuid -> index in ``kept`` of the current winner. A replaced winner leaves a None behind,
    # so the survivors stay in feed order (of the winning row) without a sort. Plain ints and no
    # per-row tuples: fewer GC-tracked allocations, which matters at 200k rows.
    winner_at: dict[str, int] = {}
    duplicates = 0
    for row in rows:
        try:
            listing = clean_row(row)
        except _Skip as skip:
            skipped[skip.reason] = skipped.get(skip.reason, 0) + 1
            continue
        uuid = listing.uuid
        index = winner_at.get(uuid)
        if index is not None:
            duplicates += 1
            current = kept[index]  # never None: winner_at only points at kept listings
            if current is not None and _outranks(current, listing):
                continue
            kept[index] = None
        winner_at[uuid] = len(kept)
        kept.append(listing)
    if duplicates:  # drop the None each replaced winner left behind
        kept = [listing for listing in kept if listing is not None]
    return Cleaned(listings=kept, skipped=skipped, duplicates=duplicates)


def _outranks(earlier: Listing, later: Listing) -> bool:
    """Whether ``earlier`` (seen first in the feed) beats ``later`` for the same uuid.

    Latest ``listed_at`` wins, then the latest source timestamp (missing = earliest); on a full
    tie the later row in the feed wins, so ``earlier`` never wins a tie.
    """
    if earlier.listed_at != later.listed_at:
        return earlier.listed_at > later.listed_at
    earlier_ms = -1 if earlier.source_timestamp_ms is None else earlier.source_timestamp_ms
    later_ms = -1 if later.source_timestamp_ms is None else later.source_timestamp_ms
    return earlier_ms > later_ms
