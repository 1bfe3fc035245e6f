"""Currency rates as recorded from a provider: Odoo's ``res.currency.rate``, one row a day."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Numeric, String, UniqueConstraint
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
