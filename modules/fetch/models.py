"""Currency rates as recorded from a provider: Odoo's ``res.currency.rate``, one row a day."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import LargeBinary, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow

#: NUMERIC(24, 12): twelve decimals keep IDR->USD (~0.0000625) to eight significant digits.
RATE_PRECISION, RATE_SCALE = 24, 12


class CurrencyRate(Base):
    """One unit of ``base`` is worth ``rate`` units of ``quote`` on ``rate_date`` per ``source``.

    A provider's rate is recorded once per UTC day and pair: a later fetch the same day updates
    the row (its ``rate`` and ``fetched_at``) instead of adding one.
    """

    __tablename__ = "fetch_currency_rate"
    __table_args__ = (UniqueConstraint("base", "quote", "rate_date", "source"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: ISO 4217 code of the currency converted from (``IDR``).
    base: Mapped[str] = mapped_column(String(3))
    #: ISO 4217 code of the currency converted to (``USD``).
    quote: Mapped[str] = mapped_column(String(3))
    rate: Mapped[Decimal] = mapped_column(Numeric(RATE_PRECISION, RATE_SCALE))
    #: The UTC day the rate was fetched for.
    rate_date: Mapped[date] = mapped_column()
    #: The provider's name (``fixed``, or the rate API's host).
    source: Mapped[str] = mapped_column(String(50))
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)


class FeedSnapshot(Base):
    """The last good response of a feed, kept to serve (flagged stale) while the source is down.

    One row per feed key (a source name, or a source name and an ad-hoc URL's digest), replaced
    by each successful fetch. The body is the document exactly as received, zlib-compressed.
    """

    __tablename__ = "fetch_feed_snapshot"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    source: Mapped[str] = mapped_column(String(50))
    url: Mapped[str] = mapped_column(Text)
    fetched_at: Mapped[datetime] = mapped_column()
    #: SHA-256 of the uncompressed body: which version a process has already cleaned.
    digest: Mapped[str] = mapped_column(String(64))
    #: Size of the uncompressed body in bytes.
    size: Mapped[int] = mapped_column()
    body: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
