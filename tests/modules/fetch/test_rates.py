"""Currency rates against a real fake rate API on 127.0.0.1, PostgreSQL and Redis."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from redis import Redis
from sqlalchemy import create_engine, func, select

from app import clock
from app.config import Settings, SettingsError
from app.db import Base, Session, transaction
from app.errors import Invalid, ServiceUnavailable
from modules.fetch.client import FetchPolicy, SourceFailed
from modules.fetch.models import CurrencyRate
from modules.fetch.rates import (
    DEFAULT_FIXED_IDR_USD,
    FixedRateProvider,
    HttpRateProvider,
    RatePairUnknown,
    RateService,
    RateSettings,
    RateUnavailable,
    convert,
    install,
    refresh_rates,
)
from tests.modules.fetch.feedserver import RateServer, running
from tests.servers import Services

POLICY = FetchPolicy(allow_loopback=True, retries=0, total_timeout=3.0, connect_timeout=1.0)


@pytest.fixture(scope="module", autouse=True)
def rate_table(services: Services) -> None:
    """The table comes from migration 0005; create it if this database predates it."""
    engine = create_engine(services.database_url)
    try:
        Base.metadata.create_all(engine, tables=[CurrencyRate.__table__])
    finally:
        engine.dispose()


@pytest.fixture
def rate_api() -> Iterator[RateServer]:
    with running(RateServer()) as server:
        yield server


@pytest.fixture
def http_service(app: Flask, rate_api: RateServer) -> Iterator[RateService]:
    with app.app_context():
        yield RateService(
            HttpRateProvider(rate_api.url, POLICY), app.extensions["lapak.jobs"].redis, 3600
        )


def rows() -> list[CurrencyRate]:
    Session().rollback()  # a fresh snapshot: the service records on its own connection
    return list(Session().scalars(select(CurrencyRate).order_by(CurrencyRate.id)))


# -- the HTTP provider ------------------------------------------------------------------------


def test_http_rate_is_the_exact_decimal_and_recorded(
    http_service: RateService, rate_api: RateServer
) -> None:
    quote = http_service.current_rate("IDR", "USD")

    assert quote.rate == Decimal("0.0000625")
    assert str(quote.rate) == "0.000062500000"
    assert quote.source == "127.0.0.1"
    assert quote.stale is False
    assert rate_api.requests == ["/latest?from=IDR&to=USD"]
    [row] = rows()
    assert (row.base, row.quote, row.rate, row.source) == (
        "IDR",
        "USD",
        Decimal("0.0000625"),
        "127.0.0.1",
    )
    assert row.rate_date == quote.as_of.date()
    assert row.fetched_at == quote.as_of


def test_a_twelve_decimal_rate_keeps_every_digit(
    http_service: RateService, rate_api: RateServer
) -> None:
    rate_api.answer = (200, {"base": "IDR", "rates": {"USD": 0.000062512345}})

    quote = http_service.current_rate("IDR", "USD")

    assert quote.rate == Decimal("0.000062512345")
    assert rows()[0].rate == Decimal("0.000062512345")


def test_two_fetches_on_one_day_update_one_row(
    http_service: RateService, rate_api: RateServer
) -> None:
    first = http_service.refresh("IDR", "USD")
    rate_api.answer = (200, {"base": "IDR", "rates": {"USD": 0.0000630}})
    second = http_service.refresh("IDR", "USD")

    [row] = rows()
    assert row.rate == Decimal("0.000063") == second.rate
    assert row.fetched_at == second.as_of > first.as_of
    assert len(rate_api.requests) == 2


def test_a_new_day_adds_a_row(http_service: RateService, rate_api: RateServer) -> None:
    http_service.refresh("IDR", "USD")
    with clock.travel(timedelta(days=1)):
        http_service.refresh("IDR", "USD")

    recorded = rows()
    assert len(recorded) == 2
    assert recorded[1].rate_date == recorded[0].rate_date + timedelta(days=1)


def test_the_rate_is_cached_in_redis_as_a_string(
    app: Flask, http_service: RateService, rate_api: RateServer
) -> None:
    first = http_service.current_rate("IDR", "USD")
    second = http_service.current_rate("IDR", "USD")

    assert second == first
    assert len(rate_api.requests) == 1
    redis = app.extensions["lapak.jobs"].redis
    cached = json.loads(redis.get(RateService.cache_key("IDR", "USD")))
    assert cached["rate"] == "0.000062500000"
    assert 3500 < redis.ttl(RateService.cache_key("IDR", "USD")) <= 3600


def test_a_flushed_cache_is_refilled_from_a_recent_row(
    app: Flask, http_service: RateService, rate_api: RateServer
) -> None:
    first = http_service.current_rate("IDR", "USD")
    app.extensions["lapak.jobs"].redis.flushdb()

    assert http_service.current_rate("IDR", "USD") == first
    assert len(rate_api.requests) == 1


@pytest.mark.parametrize("failure", ["500", "stopped"])
def test_provider_down_serves_the_last_known_rate_as_stale(
    app: Flask, http_service: RateService, rate_api: RateServer, failure: str
) -> None:
    recorded = http_service.current_rate("IDR", "USD")
    if failure == "500":
        rate_api.answer = (500, {"error": "down"})
    else:
        rate_api.stop()
    app.extensions["lapak.jobs"].redis.flushdb()

    with clock.travel(timedelta(days=2)):
        quote = http_service.current_rate("IDR", "USD")

    assert quote.stale is True
    assert quote.rate == Decimal("0.0000625")
    assert quote.as_of == recorded.as_of
    assert quote.rate_date == recorded.as_of.date()
    assert len(rows()) == 1


def test_the_latest_recorded_day_wins_when_stale(
    app: Flask, http_service: RateService, rate_api: RateServer
) -> None:
    http_service.refresh("IDR", "USD")
    rate_api.answer = (200, {"base": "IDR", "rates": {"USD": 0.0000640}})
    with clock.travel(timedelta(days=1)):
        newer = http_service.refresh("IDR", "USD")
    rate_api.answer = (500, b"")
    with clock.travel(timedelta(days=3)):
        quote = http_service.refresh("IDR", "USD")

    assert (quote.rate, quote.as_of, quote.stale) == (Decimal("0.000064"), newer.as_of, True)


def test_no_rate_ever_is_rate_unavailable(http_service: RateService, rate_api: RateServer) -> None:
    rate_api.stop()

    with pytest.raises(RateUnavailable) as raised:
        http_service.current_rate("IDR", "USD")

    assert isinstance(raised.value, ServiceUnavailable)
    assert raised.value.code == "rate-unavailable"
    assert "IDR/USD" in raised.value.detail
    assert "127.0.0.1" in raised.value.detail
    assert rows() == []


@pytest.mark.parametrize(
    "answer",
    [
        {"base": "EUR", "rates": {"USD": 1.08}},
        {"base": "IDR", "rates": {"EUR": 0.00006}},
        {"base": "IDR", "rates": {"USD": -0.0000625}},
        {"base": "IDR", "rates": {"USD": 0}},
        {"base": "IDR", "rates": {"USD": "0.0000625x"}},
        {"base": "IDR", "rates": {"USD": None}},
        {"base": "IDR", "rates": {"USD": True}},
        {"base": "IDR", "rates": "USD"},
        {"base": "IDR"},
        ["IDR", 0.0000625],
        b'{"base": "IDR", "rates": {"USD": NaN}}',
        b'{"base": "IDR", "rates": {"USD": Infinity}}',
        b"not json",
    ],
)
def test_a_malformed_answer_is_a_provider_failure(rate_api: RateServer, answer: Any) -> None:
    rate_api.answer = (200, answer)
    provider = HttpRateProvider(rate_api.url, POLICY)

    with pytest.raises(SourceFailed, match=r"127\.0\.0\.1"):
        provider.fetch("IDR", "USD")


def test_a_malformed_answer_falls_back_to_the_last_known_rate(
    app: Flask, http_service: RateService, rate_api: RateServer
) -> None:
    http_service.refresh("IDR", "USD")
    rate_api.answer = (200, {"base": "EUR", "rates": {"USD": 1.08}})

    quote = http_service.refresh("IDR", "USD")

    assert (quote.rate, quote.stale) == (Decimal("0.0000625"), True)


# -- the fixed provider, settings, the job -----------------------------------------------------


def test_fixed_provider_works_offline(app: Flask) -> None:
    with app.app_context():
        provider = FixedRateProvider({("IDR", "USD"): Decimal("0.00006")})
        service = RateService(provider, None, 3600, pairs=(("IDR", "USD"), ("USD", "IDR")))
        quote = service.current_rate("IDR", "USD")
        assert (quote.rate, quote.source, quote.stale) == (Decimal("0.00006"), "fixed", False)
        with pytest.raises(RateUnavailable):  # a pair it should know, and does not
            service.current_rate("USD", "IDR")
        with pytest.raises(RatePairUnknown):  # a pair Lapak does not convert
            service.current_rate("IDR", "EUR")
        for base, quote_code in (("IDR", "US"), ("idr", "USD")):
            with pytest.raises(Invalid):
                service.current_rate(base, quote_code)
        assert [(r.base, r.quote, r.source) for r in rows()] == [("IDR", "USD", "fixed")]


def test_install_defaults_to_the_fixed_rate_and_the_job_records_it(app: Flask) -> None:
    with app.app_context():
        service = install(app, app.extensions["lapak.settings"])
        assert app.extensions["fetch.rates"] is service
        assert service.provider.name == "fixed"
        assert service.cache_seconds == 3600

        assert refresh_rates() == 1

        [row] = rows()
        assert row.rate == Decimal(DEFAULT_FIXED_IDR_USD)


def test_install_uses_the_http_provider_when_a_url_is_set(
    make_app: Callable[..., Flask], config: dict[str, Any], rate_api: RateServer
) -> None:
    env = {
        **config["module_env"],
        "rate_provider_url": rate_api.url,
        "rate_cache_seconds": "60",
        "fetch_allow_loopback": "true",
    }
    app = make_app(module_env=env)
    with app.app_context():
        service = install(app, app.extensions["lapak.settings"])
        assert isinstance(service.provider, HttpRateProvider)
        assert service.current_rate("IDR", "USD").rate == Decimal("0.0000625")
        assert app.extensions["lapak.jobs"].redis.ttl(RateService.cache_key("IDR", "USD")) <= 60


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"rate_provider": "carrier-pigeon"}, "LAPAK_RATE_PROVIDER"),
        ({"rate_provider": "http"}, "LAPAK_RATE_PROVIDER_URL"),
        ({"rate_fixed_idr_usd": "abc"}, "LAPAK_RATE_FIXED_IDR_USD"),
        ({"rate_fixed_idr_usd": "-1"}, "LAPAK_RATE_FIXED_IDR_USD"),
        ({"rate_cache_seconds": "0"}, "LAPAK_RATE_CACHE_SECONDS"),
    ],
)
def test_bad_rate_settings_are_refused(env: dict[str, str], message: str) -> None:
    settings = Settings.from_env(environ={}, overrides={"secret_key": "s" * 40, "module_env": env})
    with pytest.raises(SettingsError, match=message):
        RateSettings.from_settings(settings)


def test_without_redis_the_database_is_the_cache(
    make_app: Callable[..., Flask], rate_api: RateServer
) -> None:
    app = make_app(redis_url=None)
    with app.app_context():
        assert app.extensions["lapak.jobs"].redis is None
        service = RateService(HttpRateProvider(rate_api.url, POLICY), None, 3600)
        first = service.current_rate("IDR", "USD")
        assert service.current_rate("IDR", "USD") == first
        assert len(rate_api.requests) == 1

        rate_api.stop()
        with clock.travel(timedelta(hours=2)):
            stale = service.current_rate("IDR", "USD")
        assert (stale.rate, stale.stale, stale.as_of) == (first.rate, True, first.as_of)
        assert Session().scalar(select(func.count()).select_from(CurrencyRate)) == 1


# -- convert ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "rate", "places", "expected"),
    [
        ("0.005", "1", 2, "0.01"),
        ("2.675", "1", 2, "2.68"),
        ("-2.675", "1", 2, "-2.68"),
        ("10000", "0.0000625", 2, "0.63"),  # 0.625: half-up, not the banker's 0.62
        ("20000", "0.0000625", 2, "1.25"),
        ("123456789012.34", "0.000062512345", 2, "7717573.39"),
        ("1", "0.000062512345", 12, "0.000062512345"),
        ("15000", "0.0000625", 0, "1"),
    ],
)
def test_convert_rounds_half_up(amount: str, rate: str, places: int, expected: str) -> None:
    result = convert(Decimal(amount), Decimal(rate), places)
    assert result == Decimal(expected)
    assert str(result) == expected


def test_convert_refuses_floats() -> None:
    with pytest.raises(TypeError, match="float"):
        convert(2.675, Decimal(1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="float"):
        convert(Decimal("2.675"), 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        convert(Decimal("NaN"), Decimal(1))


def test_on_embedded_sqlite_the_migration_and_the_daily_upsert_work(
    make_embedded_app: Callable[..., Flask],
) -> None:
    app = make_embedded_app()
    with app.app_context():
        service = RateService(FixedRateProvider({("IDR", "USD"): Decimal("0.0000625")}), None)
        service.refresh("IDR", "USD")
        service.provider = FixedRateProvider({("IDR", "USD"): Decimal("0.000062512345")})
        service.refresh("IDR", "USD")

        [row] = rows()
        assert row.rate == Decimal("0.000062512345")
        assert service.current_rate("IDR", "USD").rate == Decimal("0.000062512345")


def test_the_job_refreshes_what_it_can_and_logs_the_rest(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    with app.app_context():
        provider = FixedRateProvider({("IDR", "USD"): Decimal("0.0000625")})
        service = RateService(provider, None, pairs=(("IDR", "USD"), ("IDR", "EUR")))

        refreshed = service.refresh_all()

        assert [q.rate for q in refreshed] == [Decimal("0.0000625")]
        assert "IDR/EUR" in caplog.text
        assert [(r.base, r.quote) for r in rows()] == [("IDR", "USD")]


def test_redis_down_or_a_corrupt_entry_falls_through_to_the_database(app: Flask) -> None:
    provider = FixedRateProvider({("IDR", "USD"): Decimal("0.0000625")})
    with app.app_context():
        down = RateService(provider, Redis.from_url("redis://127.0.0.1:1/0"))
        assert down.current_rate("IDR", "USD").rate == Decimal("0.0000625")

        redis = app.extensions["lapak.jobs"].redis
        redis.set(RateService.cache_key("IDR", "USD"), "not json")
        service = RateService(provider, redis)
        assert service.current_rate("IDR", "USD").rate == Decimal("0.0000625")
        assert len(rows()) == 1


def test_recording_inside_a_transaction_joins_it(app: Flask) -> None:
    provider = FixedRateProvider({("IDR", "USD"): Decimal("0.0000625")})
    with app.app_context():
        service = RateService(provider, None)
        with pytest.raises(RuntimeError), transaction():
            service.refresh("IDR", "USD")
            raise RuntimeError("the caller fails")
        assert rows() == []


@pytest.mark.parametrize("rate", [Decimal("0.0000000000001"), Decimal("1e12")])
def test_a_rate_the_column_cannot_hold_is_refused(rate: Decimal) -> None:
    with pytest.raises(ValueError, match="too"):
        FixedRateProvider({("IDR", "USD"): rate})


def test_convert_refuses_negative_places() -> None:
    with pytest.raises(ValueError, match="places"):
        convert(Decimal(1), Decimal(1), -1)
