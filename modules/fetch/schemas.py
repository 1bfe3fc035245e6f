"""What crosses the HTTP boundary for the feed. Money is a string, never a JSON number."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import marshmallow as ma

from app.http import PageArgs, ProblemSchema, page_schema

from .analysis import GROUPINGS, PLACES

_SOURCE = ma.fields.String(
    load_default=None,
    validate=ma.validate.Length(min=1, max=50),
    metadata={"description": "A configured source name; omit for the default source"},
)
_URL = ma.fields.String(
    load_default=None,
    validate=ma.validate.Length(min=1, max=2048),
    metadata={
        "description": "Read this URL (same shape) as the source; it and every redirect "
        "must be on a host of the LAPAK_FETCH_URL_HOSTS allow-list"
    },
)


#: A currency code as the rate endpoints take it.
CURRENCY_CODE = {"type": "string", "pattern": "^[A-Z]{3}$", "example": "USD"}


class FetchProblemSchema(ProblemSchema):
    """A feed or rate problem: which source failed, or which pair has no rate."""

    source = ma.fields.String(metadata={"description": "The feed source that failed"})
    upstream_status = ma.fields.Integer(metadata={"description": "The HTTP status it answered"})
    base = ma.fields.String(metadata=CURRENCY_CODE)
    quote = ma.fields.String(metadata=CURRENCY_CODE)


class Amount(ma.fields.Field):
    """A Decimal as a plain string with ``places`` decimals, rounded half-up (``"37000.00"``);
    with ``places=None``, the number's own digits without trailing zeros."""

    def __init__(self, places: int | None = PLACES, **kwargs: Any) -> None:
        kwargs.setdefault("dump_only", True)
        kwargs.setdefault("allow_none", True)
        kwargs.setdefault("metadata", {}).setdefault("type", "string")
        super().__init__(**kwargs)
        self.places = places

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        if self.places is None:
            return format(value.normalize(), "f")  # "0.0000625", not "0.000062500000"
        return format(value.quantize(Decimal(1).scaleb(-self.places), rounding=ROUND_HALF_UP), "f")


_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
#: A date, or an RFC 3339 date-time whose offset may be left out (then it is UTC): what
#: :class:`Moment` reads, and the pattern the OpenAPI document declares for it.
MOMENT_PATTERN = (
    rf"^{_DATE}(?:[Tt][0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}(?:\.[0-9]{{1,6}})?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?)?$"
)
_MOMENT = re.compile(MOMENT_PATTERN)
_MOMENT_RANGE = "a moment from 0001-01-01 to before 9999-12-31 (UTC)"
#: A "to" bound is used as the moment just after it (the next day, or microsecond), which must
#: exist too: the last day of the calendar is left out.
_END = datetime(9999, 12, 31, tzinfo=UTC)
_MOMENT_HELP = "a date (YYYY-MM-DD) or an RFC 3339 date-time, like 2023-04-10T08:00:00+07:00"


class Moment(ma.fields.Field):
    """A date (``2023-04-10``, a whole UTC day) or an RFC 3339 time; naive times are UTC.

    Loads to ``(datetime, whole_day)``. Only :data:`MOMENT_PATTERN` is read: Python's
    ``fromisoformat`` also takes week dates and basic forms the contract does not declare.
    """

    def __init__(self, **kwargs: Any) -> None:
        metadata = kwargs.setdefault("metadata", {})
        metadata.setdefault("type", "string")
        metadata.setdefault("pattern", MOMENT_PATTERN)
        metadata.setdefault("anyOf", [{"format": "date"}, {"format": "date-time"}])
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or not _MOMENT.fullmatch(value):
            raise ma.ValidationError(_MOMENT_HELP)
        try:
            if len(value) == 10:
                start, whole_day = datetime.combine(date.fromisoformat(value), time(), UTC), True
            else:
                text = value.replace("Z", "+00:00").replace("z", "+00:00")
                moment = datetime.fromisoformat(text)
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
                start, whole_day = moment.astimezone(UTC), False
        except ValueError:
            raise ma.ValidationError(_MOMENT_HELP) from None
        except OverflowError:  # an offset that moves it out of years 1 to 9999
            raise ma.ValidationError(_MOMENT_RANGE) from None
        if start >= _END:
            raise ma.ValidationError(_MOMENT_RANGE)
        return start, whole_day


class CommodityQuerySchema(PageArgs):
    source = _SOURCE
    url = _URL
    province = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=200),
        metadata={"description": "Exact province, any letter case or spacing", "example": "Aceh"},
    )
    city = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=200),
        metadata={"description": "Exact city, any letter case or spacing", "example": "Aceh Kota"},
    )
    commodity = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=200),
        metadata={"description": "Exact commodity, any letter case", "example": "bandeng"},
    )
    since = Moment(
        data_key="from",
        load_default=None,
        metadata={"description": "Listed on or after this date or time", "type": "string"},
    )
    until = Moment(
        data_key="to",
        load_default=None,
        metadata={
            "description": "Listed on or before this date (the whole day) or time",
            "type": "string",
        },
    )

    @ma.post_load
    def _bounds(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        since = data.pop("since")
        until = data.pop("until")
        data["since"] = since[0] if since else None
        if until is None:
            data["before"] = None
        else:
            moment, whole_day = until
            step = timedelta(days=1) if whole_day else timedelta(microseconds=1)
            data["before"] = moment + step
        return data


class AggregateQuerySchema(ma.Schema):
    source = _SOURCE
    url = _URL
    group = ma.fields.String(
        load_default=",".join(GROUPINGS),
        metadata={
            "description": "What to group by: province, week, or both (comma-separated)",
            "example": "province,week",
        },
    )

    @ma.post_load
    def _split(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data["group"] = tuple(part.strip().lower() for part in data["group"].split(","))
        return data


class RateSchema(ma.Schema):
    base = ma.fields.String(metadata={"example": "IDR"})
    quote = ma.fields.String(metadata={"example": "USD"})
    rate = Amount(
        places=None,
        metadata={"description": "One base unit in quote units", "example": "0.0000625"},
    )
    source = ma.fields.String(metadata={"description": "The rate provider", "example": "fixed"})
    as_of = ma.fields.DateTime(metadata={"description": "When the provider gave it (RFC 3339)"})
    age_seconds = ma.fields.Integer()
    stale = ma.fields.Boolean(
        metadata={"description": "True when the provider failed and this is the last known rate"}
    )


class RowCountsSchema(ma.Schema):
    received = ma.fields.Integer(metadata={"description": "Rows in the source's document"})
    kept = ma.fields.Integer(metadata={"description": "Clean, de-duplicated listings"})
    duplicates = ma.fields.Integer(
        metadata={"description": "Rows dropped for a repeated uuid (latest timestamp wins)"}
    )
    skipped = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Integer(),
        metadata={
            "description": "Rows rejected by cleaning, by reason",
            "example": {"test_row": 3},
        },
    )


class FeedMetaSchema(ma.Schema):
    source = ma.fields.String(metadata={"example": "efishery"})
    fetched_at = ma.fields.DateTime(metadata={"description": "When the source gave this data"})
    age_seconds = ma.fields.Integer()
    stale = ma.fields.Boolean(
        metadata={"description": "True when the source failed and this is its last good answer"}
    )
    stale_reason = ma.fields.String(allow_none=True)
    rate = ma.fields.Nested(RateSchema)
    rows = ma.fields.Nested(RowCountsSchema)


class CommoditySchema(ma.Schema):
    uuid = ma.fields.String(attribute="listing.uuid")
    commodity = ma.fields.String(attribute="listing.commodity", metadata={"example": "BANDENG"})
    province = ma.fields.String(attribute="listing.province", allow_none=True)
    city = ma.fields.String(attribute="listing.city", allow_none=True)
    size = Amount(places=None, attribute="listing.size")
    price_idr = Amount(attribute="listing.price_idr", metadata={"example": "37000.00"})
    price_usd = Amount(
        metadata={"description": "price_idr x rate, half-up to the cent", "example": "2.31"}
    )
    listed_at = ma.fields.DateTime(attribute="listing.listed_at")


class CommodityPageSchema(page_schema(CommoditySchema)):  # type: ignore[misc]
    matched = ma.fields.Integer(metadata={"description": "Listings matching the filters"})
    meta = ma.fields.Nested(FeedMetaSchema, attribute="report")


class StatsSchema(ma.Schema):
    count = ma.fields.Integer()
    min = Amount()
    max = Amount()
    median = Amount()
    mean = Amount()


class SizeStatsSchema(StatsSchema):
    """Sizes keep their own digits, without trailing zeros."""

    min = Amount(places=None)
    max = Amount(places=None)
    median = Amount(places=None)
    mean = Amount(places=None)


class GroupSchema(ma.Schema):
    province = ma.fields.String(allow_none=True)
    week = ma.fields.String(
        allow_none=True, metadata={"description": "ISO year and week", "example": "2023-W15"}
    )
    count = ma.fields.Integer()
    price_idr = ma.fields.Nested(StatsSchema)
    price_usd = ma.fields.Nested(StatsSchema)
    size = ma.fields.Nested(
        SizeStatsSchema, metadata={"description": "Over the listings that have a size"}
    )


class AggregateSchema(ma.Schema):
    grouped_by = ma.fields.List(ma.fields.String())
    groups = ma.fields.List(ma.fields.Nested(GroupSchema))
    skipped = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Integer(),
        metadata={"description": "Rows left out, by reason (cleaning and missing_province)"},
    )
    meta = ma.fields.Nested(FeedMetaSchema, attribute="report")
