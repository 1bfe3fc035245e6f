"""Feeds and rates while the app's Redis is stopped: served from the database, then Redis again."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from redis.exceptions import RedisError

from app import clock
from modules.fetch.snapshots import SnapshotStore
from tests.conftest import redis_outage_app
from tests.modules.conftest import Caller
from tests.modules.fetch.feedserver import FIXTURE, FeedServer, fail, fetch_env, running, serve
from tests.modules.fetch.test_feeds import AGED, FRESH_SECONDS, get, ok
from tests.servers import RedisServer


@pytest.fixture
def feed() -> Iterator[FeedServer]:
    with running(FeedServer()) as server:
        server.routes["/list"] = serve(FIXTURE.read_bytes())
        yield server


@pytest.fixture
def app(
    make_app: Callable[..., Flask], config: dict[str, Any], own_redis: RedisServer, feed: FeedServer
) -> Flask:
    env = {**config["module_env"], **fetch_env(feed, {"fetch_fresh_seconds": FRESH_SECONDS})}
    return redis_outage_app(make_app, own_redis, module_env=env)


def test_feeds_and_rates_are_served_while_redis_is_stopped(
    app: Flask,
    own_redis: RedisServer,
    feed: FeedServer,
    customer: Caller,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = app.test_client()
    fresh = ok(get(client, customer, limit=5))
    own_redis.stop()
    caplog.set_level(logging.WARNING)

    again = ok(get(client, customer, limit=5))  # the kept copy, from the database
    assert again["items"] == fresh["items"]
    assert feed.hits["/list"] == 1
    feed.routes["/list"] = fail(500)
    with clock.travel(AGED):
        stale = ok(get(client, customer, limit=5))
    assert stale["meta"]["stale"] is True
    assert stale["items"] == fresh["items"]
    for _ in range(3):
        rate = client.get("/api/v1/fetch/rates/IDR/USD", headers=customer.headers)
        assert rate.status_code == 200, rate.get_json()
    warnings = [r for r in caplog.records if "feeds are read from the database" in r.getMessage()]
    assert len(warnings) == 1  # not one per request
    rate_warnings = [r for r in caplog.records if "rate" in r.getMessage().lower()]
    assert len(rate_warnings) == 1, [r.getMessage() for r in rate_warnings]  # nor for rates

    own_redis.start()
    feed.routes["/list"] = serve(FIXTURE.read_bytes())
    with clock.travel(AGED * 2):
        assert ok(get(client, customer, limit=5))["meta"]["stale"] is False
    kept = redis.Redis.from_url(own_redis.url).hget(SnapshotStore.redis_key("feed"), "digest")
    assert kept is not None, "back on Redis, the feed is kept there again"


def test_while_redis_is_waited_out_a_source_outage_is_remembered_in_the_process(
    app: Flask, own_redis: RedisServer, feed: FeedServer, customer: Caller
) -> None:
    client = app.test_client()
    ok(get(client, customer, limit=5))
    outage = app.extensions["lapak.jobs"].outage
    outage.retry_seconds = 3600  # Redis answers, but the app is waiting out an earlier failure
    outage.failed("a test", RedisError("no answer"))
    feed.routes["/list"] = fail(500)

    with clock.travel(AGED):
        assert ok(get(client, customer, limit=5))["meta"]["stale"] is True
        assert ok(get(client, customer, limit=5))["meta"]["stale"] is True

    assert feed.hits["/list"] == 2  # the failure was remembered: the source was not asked again
    assert redis.Redis.from_url(own_redis.url).keys("lapak:fetch:down:*") == []
