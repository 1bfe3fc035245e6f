"""Currency rates: providers, a Redis-cached and recorded current rate, and Decimal conversion.

:meth:`RateService.current_rate` promises a rate for a pair, in this order:

1. Redis (``lapak:fetch:rate:<BASE>:<QUOTE>``, a JSON string whose rate is a decimal string,
   never a float), kept ``LAPAK_RATE_CACHE_SECONDS``;
2. without a Redis hit, a row this provider recorded within that same window (so the embedded
   mode without Redis does not call the provider on every request either);
3. the provider; its answer is recorded in ``fetch_currency_rate`` (one row per pair, source and
   UTC day, updated by later fetches that day) and cached;
4. if the provider fails, the last rate ever recorded for the pair (any source, latest day and
   fetch first), flagged ``stale`` with its date;
5. if none was ever recorded, :class:`RateUnavailable` (a 503 with ``Retry-After``).

Only the pairs Lapak converts (:data:`REFRESHED_PAIRS`, IDR/USD) have a rate: another pair of
well-formed codes is :class:`RatePairUnknown` (a 404, not an outage), and a code that is not
three capital letters (ISO 4217) is :class:`~app.errors.Invalid` (a 422).

Rates are quantized to the column's 12 decimal places before they are used, so the value in
Redis, in the table and in a computation is always the same number.

Settings (``LAPAK_*``, read through :attr:`Settings.module_env`):

| Variable | Meaning |
|---|---|
| ``LAPAK_RATE_PROVIDER`` | ``http`` or ``fixed``; ``http`` when a URL is set, else ``fixed`` |
| ``LAPAK_RATE_PROVIDER_URL`` | a Frankfurter-style API: ``GET {url}?from=IDR&to=USD`` |
| ``LAPAK_RATE_FIXED_IDR_USD`` | the offline IDR->USD rate, default ``0.0000625`` (16,000 IDR/USD) |
| ``LAPAK_RATE_CACHE_SECONDS`` | how long a fetched rate is used before asking again, ``3600`` |
| ``LAPAK_RATE_RETRY_SECONDS`` | after a provider failure, use the stale rate this long, ``30`` |

HTTP goes through :func:`modules.fetch.client.fetch_json`, so ``LAPAK_FETCH_*`` limits (timeouts,
retries, loopback) apply to the rate API too.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from flask import Flask, current_app
from redis import Redis
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.config import Settings, SettingsError, module_int
from app.db import Session, get_database, utcnow
from app.errors import Invalid, NotFound, ServiceUnavailable, UpstreamFailed, UpstreamTimeout
from app.jobs import RedisOutage
from modules.fetch.client import FetchPolicy, SourceFailed, fetch_json
from modules.fetch.models import RATE_SCALE, CurrencyRate

log = logging.getLogger(__name__)

#: Pairs the scheduled job refreshes.
REFRESHED_PAIRS: tuple[tuple[str, str], ...] = (("IDR", "USD"),)
#: 16,000 IDR to the dollar: a round figure near the 2025-26 market, for offline use only.
DEFAULT_FIXED_IDR_USD = "0.0000625"
DEFAULT_CACHE_SECONDS = 3600
DEFAULT_RETRY_SECONDS = 30
#: USD prices are shown to the cent (ISO 4217 minor units of USD).
DEFAULT_PLACES = 2

_RATE_QUANTUM = Decimal(1).scaleb(-RATE_SCALE)
#: What rates do while Redis is down (logged now and then by the app's RedisOutage).
_NO_RATE_CACHE = "rates are read from and recorded in the database only"
#: ISO 4217: three capital letters. The OpenAPI path parameters declare the same pattern.
CURRENCY_PATTERN = r"^[A-Z]{3}$"
_CURRENCY = re.compile(CURRENCY_PATTERN)


class RateUnavailable(ServiceUnavailable):
    """No rate for the pair: the provider failed and none was ever recorded."""

    code = "rate-unavailable"
    title = "No exchange rate is available"


class RatePairUnknown(NotFound):
    """A pair of currency codes Lapak keeps no rate for: no provider is asked."""

    code = "rate-pair-unknown"
    title = "No rate is kept for this currency pair"


@dataclass(frozen=True)
class RateQuote:
    """The rate in use for a pair, where it came from and when it was fetched."""

    rate: Decimal
    source: str
    #: When the provider gave this rate (UTC).
    as_of: datetime
    #: True when the provider failed and this is the last recorded rate.
    stale: bool
    base: str
    quote: str

    @property
    def age_seconds(self) -> int:
        """Seconds since the provider gave this rate."""
        return max(0, int((utcnow() - self.as_of).total_seconds()))

    @property
    def rate_date(self) -> date:
        """The UTC day the rate was fetched for."""
        return self.as_of.date()


class RateProvider(Protocol):
    """Something that knows how many ``quote`` units one ``base`` unit is worth right now."""

    #: Recorded as ``CurrencyRate.source`` (at most 50 characters).
    name: str

    def fetch(self, base: str, quote: str) -> Decimal:
        """The current rate; raises SourceFailed/SourceTimeout (or UnsafeUrl) on failure."""
        ...


class HttpRateProvider:
    """A Frankfurter-style API: ``GET {url}?from=IDR&to=USD`` -> ``{"base", "rates": {...}}``.

    :func:`fetch_json` hands back floats. The rate is read with ``Decimal(str(value))``: Python's
    float ``repr`` is the shortest decimal string that maps back to the same double, so any JSON
    number with up to 15 significant digits (every real rate API's output, and every 12-decimal
    IDR/USD rate) comes back exactly as written, not as the double's binary expansion
    (``Decimal(0.0000625)`` would be ``0.00006250000000000000130...``). Integers are exact anyway.
    """

    def __init__(self, url: str, policy: FetchPolicy, name: str | None = None) -> None:
        self.url = url
        self.policy = policy
        self.name = (name or urlsplit(url).hostname or "http")[:50]

    def fetch(self, base: str, quote: str) -> Decimal:
        separator = "&" if urlsplit(self.url).query else "?"
        url = f"{self.url}{separator}{urlencode({'from': base, 'to': quote})}"
        document = fetch_json(self.name, url, self.policy).data
        if not isinstance(document, dict):
            raise self._malformed("the answer is not a JSON object")
        if document.get("base") != base:
            raise self._malformed(f"base is {document.get('base')!r}, not {base!r}")
        rates = document.get("rates")
        if not isinstance(rates, dict) or quote not in rates:
            raise self._malformed(f"no {quote} rate in the answer")
        return _checked_rate(rates[quote], lambda why: self._malformed(f"{quote} rate {why}"))

    def _malformed(self, reason: str) -> SourceFailed:
        return SourceFailed(f"rate source {self.name!r}: {reason}", source=self.name)


class FixedRateProvider:
    """Configured rates for offline use: ``{("IDR", "USD"): Decimal("0.0000625")}``."""

    name = "fixed"

    def __init__(self, rates: Mapping[tuple[str, str], Decimal]) -> None:
        self.rates = {
            (base, quote): _checked_rate(
                rate, lambda why, b=base, q=quote: ValueError(f"fixed {b}/{q} rate {why}")
            )
            for (base, quote), rate in rates.items()
        }

    def fetch(self, base: str, quote: str) -> Decimal:
        try:
            return self.rates[(base, quote)]
        except KeyError:
            raise SourceFailed(
                f"rate source 'fixed' has no {base}/{quote} rate", source=self.name
            ) from None


@dataclass(frozen=True)
class RateSettings:
    """The currency settings, validated; see the module docstring for the variables."""

    provider: str
    provider_url: str | None
    fixed_idr_usd: Decimal
    cache_seconds: int
    retry_seconds: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RateSettings:
        env = settings.module_env
        url = env.get("rate_provider_url", "").strip() or None
        provider = env.get("rate_provider", "").strip().lower() or ("http" if url else "fixed")
        if provider not in ("http", "fixed"):
            raise SettingsError(f"LAPAK_RATE_PROVIDER must be http or fixed, not {provider!r}")
        if provider == "http" and url is None:
            raise SettingsError("LAPAK_RATE_PROVIDER=http needs LAPAK_RATE_PROVIDER_URL")
        text = env.get("rate_fixed_idr_usd", DEFAULT_FIXED_IDR_USD).strip()
        try:
            fixed = _checked_rate(Decimal(text), _setting_error)
        except InvalidOperation:
            raise SettingsError(
                f"LAPAK_RATE_FIXED_IDR_USD must be a decimal number, not {text!r}"
            ) from None
        return cls(
            provider=provider,
            provider_url=url,
            fixed_idr_usd=fixed,
            cache_seconds=module_int(env, "rate_cache_seconds", DEFAULT_CACHE_SECONDS),
            retry_seconds=module_int(env, "rate_retry_seconds", DEFAULT_RETRY_SECONDS, 0),
        )


class RateService:
    """Current rates for pairs: cached, recorded, and stale-but-usable when the provider fails."""

    def __init__(
        self,
        provider: RateProvider,
        redis: Redis | None,
        cache_seconds: int = DEFAULT_CACHE_SECONDS,
        pairs: tuple[tuple[str, str], ...] = REFRESHED_PAIRS,
        retry_seconds: int = DEFAULT_RETRY_SECONDS,
        outage: RedisOutage | None = None,
    ) -> None:
        self.provider = provider
        self.redis = redis
        self.outage = outage or RedisOutage()
        self.cache_seconds = cache_seconds
        self.pairs = pairs
        self.retry_seconds = retry_seconds
        #: Without Redis: pair -> (monotonic deadline, stale quote) after a provider failure.
        self._stale_until: dict[tuple[str, str], tuple[float, RateQuote]] = {}

    @staticmethod
    def cache_key(base: str, quote: str) -> str:
        return f"lapak:fetch:rate:{base}:{quote}"

    def current_rate(self, base: str, quote: str) -> RateQuote:
        """The rate to use now for ``base`` -> ``quote`` (see the module docstring for the order).

        Raises :class:`Invalid` for a code that is not three capital letters,
        :class:`RatePairUnknown` for a pair not in ``pairs``, :class:`RateUnavailable` when the
        provider fails and no rate was ever recorded.
        """
        self._check_pair(base, quote)
        cached = self._cached(base, quote) or self._recent(base, quote)
        if cached is not None:
            return cached
        return self.refresh(base, quote, remember_failure=True)

    def refresh(self, base: str, quote: str, remember_failure: bool = False) -> RateQuote:
        """Ask the provider now, record and cache its rate; fall back as current_rate does.

        With ``remember_failure``, a stale answer is cached for ``retry_seconds``, so an outage
        costs one request the provider's timeout, not every request.
        """
        self._check_pair(base, quote)
        try:
            rate = _checked_rate(
                self.provider.fetch(base, quote),
                lambda why: SourceFailed(f"rate source {self.provider.name!r}: rate {why}"),
            )
        except (UpstreamFailed, UpstreamTimeout, Invalid) as failure:
            # Invalid covers UnsafeUrl: a misconfigured URL is still "the provider failed".
            log.warning("rate %s/%s: provider failed (%s)", base, quote, failure)
            stale = self._last_known(base, quote, failure)
            if remember_failure and self.retry_seconds > 0:
                self._cache(base, quote, stale, seconds=self.retry_seconds)
            return stale
        quote_now = RateQuote(rate, self.provider.name, utcnow(), False, base, quote)
        self._record(base, quote, quote_now)
        self._cache(base, quote, quote_now)
        return quote_now

    def refresh_all(self) -> list[RateQuote]:
        """Refresh every configured pair; a pair that fails is logged and left stale."""
        refreshed = []
        for base, quote in self.pairs:
            try:
                refreshed.append(self.refresh(base, quote))
            except RateUnavailable as unavailable:
                log.error("rate %s/%s: %s", base, quote, unavailable.detail)
        return refreshed

    def _check_pair(self, base: str, quote: str) -> None:
        _check_codes(base=base, quote=quote)
        if (base, quote) not in self.pairs:
            known = ", ".join(f"{b}/{q}" for b, q in self.pairs)
            raise RatePairUnknown(
                f"Lapak keeps no {base}/{quote} rate; it converts {known} only",
                base=base,
                quote=quote,
            )

    # -- storage ------------------------------------------------------------------------------

    def _cached(self, base: str, quote: str) -> RateQuote | None:
        redis = self.redis
        if redis is None:
            deadline, stale = self._stale_until.get((base, quote), (0.0, None))
            return stale if stale is not None and time.monotonic() < deadline else None
        value = self.outage.guarded(
            _NO_RATE_CACHE, lambda: redis.get(self.cache_key(base, quote)), lambda: None
        )
        if value is None:
            return None
        try:
            raw = json.loads(value)
            return RateQuote(
                Decimal(raw["rate"]),
                raw["source"],
                datetime.fromisoformat(raw["as_of"]),
                bool(raw.get("stale", False)),
                base,
                quote,
            )
        except (ValueError, KeyError, TypeError, InvalidOperation):
            return None  # an entry from another version: ask again

    def _cache(self, base: str, quote: str, rate: RateQuote, seconds: int | None = None) -> None:
        seconds = seconds or self.cache_seconds
        redis = self.redis
        if redis is None:
            if rate.stale:
                self._stale_until[(base, quote)] = (time.monotonic() + seconds, rate)
            else:
                self._stale_until.pop((base, quote), None)
            return
        value = json.dumps(
            {
                "rate": str(rate.rate),
                "source": rate.source,
                "as_of": rate.as_of.isoformat(),
                "stale": rate.stale,
            }
        )
        self.outage.guarded(
            _NO_RATE_CACHE,
            lambda: redis.set(self.cache_key(base, quote), value, ex=seconds),
            lambda: None,
        )

    def _recent(self, base: str, quote: str) -> RateQuote | None:
        """A rate this provider recorded within the cache window (Redis missing or flushed)."""
        since = utcnow() - timedelta(seconds=self.cache_seconds)
        row = (
            Session()
            .scalars(
                _latest(base, quote)
                .where(CurrencyRate.source == self.provider.name)
                .where(CurrencyRate.fetched_at >= since)
            )
            .first()
        )
        if row is None:
            return None
        recent = RateQuote(row.rate, row.source, row.fetched_at, False, base, quote)
        self._cache(base, quote, recent)
        return recent

    def _last_known(self, base: str, quote: str, failure: Exception) -> RateQuote:
        row = Session().scalars(_latest(base, quote)).first()
        if row is None:
            raise RateUnavailable(
                f"no {base}/{quote} rate is known: the rate provider "
                f"{self.provider.name!r} failed ({failure}) and no rate was recorded before",
                headers={"Retry-After": str(max(1, self.retry_seconds))},
                base=base,
                quote=quote,
            )
        return RateQuote(row.rate, row.source, row.fetched_at, True, base, quote)

    def _record(self, base: str, quote: str, rate: RateQuote) -> None:
        """Insert the day's row for this pair and source, or update it (one row per day)."""
        dialect = get_database().primary.dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        statement = insert(CurrencyRate).values(
            base=base,
            quote=quote,
            rate=rate.rate,
            rate_date=rate.rate_date,
            source=rate.source,
            fetched_at=rate.as_of,
        )
        statement = statement.on_conflict_do_update(
            index_elements=["base", "quote", "rate_date", "source"],
            set_={"rate": statement.excluded.rate, "fetched_at": statement.excluded.fetched_at},
        )
        session = Session()
        if session.info.get("transaction_depth"):
            session.execute(statement)  # part of the caller's unit of work
        else:
            # Its own short transaction on the primary: the rate is a fact whatever the caller
            # does next, and this also works from a read_only() view, whose session must not
            # write. (Inside a caller's transaction we join it instead: on SQLite a second
            # connection would wait for the lock that transaction holds.)
            with get_database().primary.begin() as connection:
                connection.execute(statement)


def _latest(base: str, quote: str) -> Any:
    return (
        select(CurrencyRate)
        .where(CurrencyRate.base == base, CurrencyRate.quote == quote)
        .order_by(CurrencyRate.rate_date.desc(), CurrencyRate.fetched_at.desc())
        .limit(1)
    )


def convert(amount: Decimal, rate: Decimal, places: int = DEFAULT_PLACES) -> Decimal:
    """``amount * rate`` rounded half-up to ``places`` decimals (USD: 2, to the cent).

    Half-up, as people and invoices round: ``0.005`` -> ``0.01``, ``0.625`` -> ``0.63`` (not the
    banker's ``0.62``). The product is computed exactly before the single rounding. Floats are
    refused (``TypeError``): a float has already lost the amount's decimal value.
    """
    for name, value in (("amount", amount), ("rate", rate)):
        if isinstance(value, bool) or not isinstance(value, Decimal | int):
            raise TypeError(f"convert() takes Decimal {name}s, not {type(value).__name__}")
        if not Decimal(value).is_finite():
            raise ValueError(f"convert() {name} must be finite, not {value}")
    if places < 0:
        raise ValueError("places must be 0 or more")
    with localcontext() as context:
        context.prec = 80  # exact for any amount and 12-decimal rate we store
        product = Decimal(amount) * Decimal(rate)
        return product.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def install(app: Flask, settings: Settings) -> RateService:
    """Build the rate service from settings into ``app.extensions["fetch.rates"]``."""
    rate_settings = RateSettings.from_settings(settings)
    provider: RateProvider
    if rate_settings.provider == "http" and rate_settings.provider_url:
        provider = HttpRateProvider(rate_settings.provider_url, FetchPolicy.from_settings(settings))
    else:
        provider = FixedRateProvider({("IDR", "USD"): rate_settings.fixed_idr_usd})
    service = RateService(
        provider,
        app.extensions["lapak.jobs"].redis,
        rate_settings.cache_seconds,
        retry_seconds=rate_settings.retry_seconds,
        outage=app.extensions["lapak.jobs"].outage,
    )
    app.extensions["fetch.rates"] = service
    return service


def rates() -> RateService:
    """The current app's rate service."""
    return current_app.extensions["fetch.rates"]


def refresh_rates() -> int:
    """Job: refresh and record every configured pair; returns how many were refreshed."""
    return len(rates().refresh_all())


# -- checks -----------------------------------------------------------------------------------


def _check_codes(**codes: str) -> None:
    """Refuse, naming each field, codes that are not three capital letters (``usd`` included:
    the API declares the pattern, and one spelling keeps cache keys and rows one per pair)."""
    errors = {
        field: f"{code!r} is not a currency code: three capital letters (ISO 4217), like USD"
        for field, code in codes.items()
        if not isinstance(code, str) or not _CURRENCY.fullmatch(code)
    }
    if errors:
        raise Invalid("a currency is a three-letter ISO 4217 code, like IDR or USD", errors=errors)


def _checked_rate(value: Any, failure: Any) -> Decimal:
    """A positive, finite rate at the stored scale; ``failure(reason)`` builds the error."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise failure(f"is not a number ({type(value).__name__})")
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite():
        raise failure(f"is not finite ({number})")
    if number <= 0:
        raise failure(f"is not positive ({number})")
    with localcontext() as context:
        context.prec = 80
        stored = number.quantize(_RATE_QUANTUM, rounding=ROUND_HALF_UP)
    if stored == 0:
        raise failure(f"is too small for {RATE_SCALE} decimal places ({number})")
    if stored.adjusted() >= 12:  # NUMERIC(24, 12) holds 12 integer digits
        raise failure(f"is too large ({number})")
    return stored


def _setting_error(reason: str) -> SettingsError:
    return SettingsError(f"LAPAK_RATE_FIXED_IDR_USD {reason}")
