"""Reading feeds through the API: upstream failures, SSRF refusals, the kept copy and stale serving.

A real feed server on 127.0.0.1 (``feedserver.py``) plays the source: it serves the fixture,
fails, hangs, redirects to forbidden addresses, sends oversized or invalid bodies, and counts how
often it was asked. PostgreSQL and Redis are real; the app's clock is moved to age the kept copy.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy import create_engine, text
from werkzeug.test import TestResponse

from app import clock
from app.config import Settings, SettingsError
from modules.fetch.cleaning import clean
from modules.fetch.feeds import refresh_feeds
from modules.fetch.sources import SourceSettings
from tests.modules.conftest import Caller
from tests.modules.fetch.feedserver import (
    FIXTURE,
    FeedServer,
    fail,
    fetch_env,
    redirect_to,
    running,
    serve,
    slow,
    with_env,
)
from tests.servers import Services

API = "/api/v1/fetch"
PROBLEM = "application/problem+json"
FIXTURE_BYTES = FIXTURE.read_bytes()
KEPT = len(clean(json.loads(FIXTURE_BYTES)).listings)
#: A fresh copy is one minute old at most; travelling two minutes makes it due.
FRESH_SECONDS = "60"
AGED = timedelta(seconds=120)


@pytest.fixture(autouse=True)
def feed(config: dict[str, Any], env: dict[str, str]) -> Iterator[FeedServer]:
    """The feed server, configured as sources ``feed`` (``/list``, the fixture) and ``other``."""
    with running(FeedServer()) as server:
        server.routes["/list"] = serve(FIXTURE_BYTES)
        server.routes["/other"] = serve([])
        config["module_env"] = {
            **config["module_env"],
            **fetch_env(server, {"fetch_fresh_seconds": FRESH_SECONDS, **env}),
        }
        yield server


def get(client: FlaskClient, caller: Caller, path: str = "", **params: Any) -> TestResponse:
    params.setdefault("source", "feed")
    return client.get(f"{API}/commodities{path}", query_string=params, headers=caller.headers)


def ok(response: TestResponse) -> dict[str, Any]:
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def problem(response: TestResponse, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status
    return body


def uuids(page: dict[str, Any]) -> list[str]:
    return [item["uuid"] for item in page["items"]]


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- failures without a kept copy -------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "path"), [(500, ""), (503, "/aggregate"), (404, "")], ids=["500", "503", "404"]
)
def test_an_error_status_is_a_502_naming_the_source_and_the_status(
    client: FlaskClient, admin: Caller, feed: FeedServer, status: int, path: str
) -> None:
    feed.routes["/list"] = fail(status)

    body = problem(get(client, admin, path), 502)

    assert body["type"] == "urn:lapak:problem:source-failed"
    assert "'feed'" in body["detail"]
    assert f"HTTP {status}" in body["detail"]
    assert body["source"] == "feed"
    assert "upstream broke" not in json.dumps(body)  # never the upstream's body


@with_env(fetch_total_timeout="0.5")
def test_a_slow_source_is_a_504_naming_the_source(
    client: FlaskClient, customer: Caller, feed: FeedServer
) -> None:
    feed.routes["/list"] = slow()

    body = problem(get(client, customer), 504)

    assert body["type"] == "urn:lapak:problem:source-timeout"
    assert "'feed'" in body["detail"]


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        (serve(b'[{"uuid": "1", '), "invalid JSON"),
        (serve(b"<html>maintenance</html>"), "invalid JSON"),
        (serve({"data": []}), "not a list"),
    ],
    ids=["truncated", "html", "object"],
)
def test_an_unusable_body_is_a_502(
    client: FlaskClient, customer: Caller, feed: FeedServer, route: Any, reason: str
) -> None:
    feed.routes["/list"] = route

    body = problem(get(client, customer), 502)

    assert "'feed'" in body["detail"]
    assert reason in body["detail"]


@with_env(fetch_max_bytes="1000")
def test_a_body_over_the_size_cap_is_a_502(
    client: FlaskClient, customer: Caller, feed: FeedServer
) -> None:
    body = problem(get(client, customer), 502)

    assert "larger than 1000 bytes" in body["detail"]


@with_env(fetch_sources=json.dumps({"feed": f"http://127.0.0.1:{closed_port()}/list"}))
def test_an_unreachable_source_is_a_502(client: FlaskClient, customer: Caller) -> None:
    body = problem(get(client, customer), 502)

    assert "'feed'" in body["detail"]
    assert "connection refused" in body["detail"]


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "not a public address"),
        ("http://10.0.0.1/", "not a public address"),
        ("http://0.0.0.0:{port}/secret", "not a public address"),  # would reach this very server
        ("http://[::ffff:169.254.169.254]/", "not a public address"),
        ("file:///etc/passwd", "scheme"),
    ],
    ids=["metadata", "private", "unspecified", "mapped-metadata", "file"],
)
def test_a_source_redirecting_to_a_forbidden_address_is_a_502_and_never_followed(
    client: FlaskClient, customer: Caller, feed: FeedServer, target: str, reason: str
) -> None:
    feed.routes["/list"] = redirect_to(target.replace("{port}", str(feed.port)))
    feed.routes["/secret"] = serve([])

    body = problem(get(client, customer), 502)

    assert "'feed'" in body["detail"]
    assert reason in body["detail"]
    assert feed.hits["/secret"] == 0


def test_a_redirect_to_an_allowed_address_is_followed(
    client: FlaskClient, customer: Caller, feed: FeedServer
) -> None:
    feed.routes["/list"] = redirect_to("/moved")
    feed.routes["/moved"] = serve(FIXTURE_BYTES)

    page = ok(get(client, customer))

    assert page["matched"] == KEPT
    assert (feed.hits["/list"], feed.hits["/moved"]) == (1, 1)


def test_endless_redirects_are_a_502(
    client: FlaskClient, customer: Caller, feed: FeedServer
) -> None:
    feed.routes["/list"] = redirect_to("/list")

    body = problem(get(client, customer), 502)

    assert "too many redirects" in body["detail"]


def test_a_configured_source_must_be_http(
    make_app: Callable[..., Flask], config: dict[str, Any]
) -> None:
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/list", "gopher://127.0.0.1:70/", "x/y"):
        module_env = {**config["module_env"], "fetch_sources": json.dumps({"feed": url})}

        with pytest.raises(SettingsError, match="http"):
            make_app(module_env=module_env)
        settings = Settings.from_env(
            environ={}, overrides={"secret_key": "s" * 40, "module_env": module_env}
        )
        with pytest.raises(SettingsError, match="LAPAK_FETCH_SOURCES"):
            SourceSettings.from_settings(settings)


PRIVATE_SPELLINGS = [
    "http://0x7f000001:{port}/list",
    "http://2130706433:{port}/list",
    "http://127.1:{port}/list",
    "http://0177.0.0.1:{port}/list",
    "http://[::ffff:127.0.0.1]:{port}/list",
    "http://10.0.0.1/list",
    "http://169.254.169.254/latest/meta-data/",
]
SPELLED_HOSTS = "0x7f000001,2130706433,127.1,0177.0.0.1,::ffff:127.0.0.1,10.0.0.1,169.254.169.254"


@with_env(fetch_allow_loopback="false", fetch_url_hosts=SPELLED_HOSTS)
@pytest.mark.parametrize("url", PRIVATE_SPELLINGS)
def test_an_adhoc_url_to_a_private_address_in_any_spelling_is_refused(
    client: FlaskClient, customer: Caller, feed: FeedServer, url: str
) -> None:
    response = get(client, customer, url=url.replace("{port}", str(feed.port)))

    body = problem(response, 422)
    assert body["type"] == "urn:lapak:problem:unsafe-url"
    assert "refused" in body["detail"]
    assert feed.total_hits == 0


@with_env(fetch_url_hosts="10.0.0.1,169.254.169.254")
@pytest.mark.parametrize("url", ["http://10.0.0.1/list", "http://169.254.169.254/"])
def test_allowing_loopback_never_allows_private_or_metadata_addresses(
    client: FlaskClient, customer: Caller, url: str
) -> None:
    body = problem(get(client, customer, url=url), 422)

    assert body["type"] == "urn:lapak:problem:unsafe-url"


# -- the kept copy and stale serving ----------------------------------------------------------


def test_within_fresh_seconds_the_source_is_asked_once(
    client: FlaskClient, customer: Caller, admin: Caller, feed: FeedServer
) -> None:
    first = ok(get(client, customer, limit=10))
    second = ok(get(client, customer, limit=10))
    ok(get(client, admin, "/aggregate"))

    assert feed.hits["/list"] == 1
    assert uuids(first) == uuids(second)
    assert first["meta"]["fetched_at"] == second["meta"]["fetched_at"]
    assert second["meta"]["stale"] is False


def test_a_copy_past_fresh_seconds_is_fetched_again(
    client: FlaskClient, customer: Caller, feed: FeedServer
) -> None:
    first = ok(get(client, customer, limit=1))
    with clock.travel(AGED):
        second = ok(get(client, customer, limit=1))

    assert feed.hits["/list"] == 2
    assert second["meta"]["stale"] is False
    assert second["meta"]["fetched_at"] > first["meta"]["fetched_at"]


def test_a_down_source_is_served_from_the_kept_copy_flagged_stale(
    client: FlaskClient, customer: Caller, admin: Caller, feed: FeedServer
) -> None:
    fresh = ok(get(client, customer, limit=20))
    feed.routes["/list"] = fail(500)

    with clock.travel(AGED):
        stale = ok(get(client, customer, limit=20))
        aggregate = ok(get(client, admin, "/aggregate"))

    assert stale["meta"]["stale"] is True
    assert "HTTP 500" in stale["meta"]["stale_reason"]
    assert stale["meta"]["age_seconds"] >= AGED.total_seconds()
    assert stale["meta"]["fetched_at"] == fresh["meta"]["fetched_at"]
    assert stale["items"] == fresh["items"]
    assert stale["meta"]["rows"] == fresh["meta"]["rows"]
    assert aggregate["meta"]["stale"] is True
    # Failed once; then left alone for fetch_retry_seconds (30).
    assert feed.hits["/list"] == 2


def test_a_down_source_is_not_asked_again_within_retry_seconds(
    client: FlaskClient, customer: Caller, feed: FeedServer
) -> None:
    ok(get(client, customer, limit=1))
    feed.routes["/list"] = fail(500)

    with clock.travel(AGED):
        reasons = [ok(get(client, customer, limit=1))["meta"]["stale_reason"] for _ in range(4)]

    assert feed.hits["/list"] == 2
    assert all("HTTP 500" in reason for reason in reasons)


@with_env(fetch_total_timeout="0.5")
def test_a_hanging_source_is_served_stale_with_the_timeout_as_reason(
    client: FlaskClient, customer: Caller, feed: FeedServer
) -> None:
    ok(get(client, customer, limit=1))
    feed.routes["/list"] = slow()

    with clock.travel(AGED):
        meta = ok(get(client, customer, limit=1))["meta"]

    assert meta["stale"] is True
    assert "did not answer in time" in meta["stale_reason"]


@pytest.mark.parametrize(
    "route",
    [
        redirect_to("http://169.254.169.254/latest/meta-data/"),
        serve({"error": "maintenance"}),
        serve(b"not json"),
    ],
    ids=["redirect-to-metadata", "object", "invalid-json"],
)
def test_a_source_that_turns_bad_is_served_stale(
    client: FlaskClient, customer: Caller, feed: FeedServer, route: Any
) -> None:
    fresh = ok(get(client, customer, limit=5))
    feed.routes["/list"] = route

    with clock.travel(AGED):
        stale = ok(get(client, customer, limit=5))

    assert stale["meta"]["stale"] is True
    assert "'feed'" in stale["meta"]["stale_reason"]
    assert uuids(stale) == uuids(fresh)


@with_env(fetch_retry_seconds="1")
def test_a_recovered_source_is_read_again_after_retry_seconds(
    client: FlaskClient, customer: Caller, feed: FeedServer
) -> None:
    ok(get(client, customer, limit=1))
    feed.routes["/list"] = fail(500)
    with clock.travel(AGED):
        assert ok(get(client, customer, limit=1))["meta"]["stale"] is True
        assert ok(get(client, customer, limit=1))["meta"]["stale"] is True
        assert feed.hits["/list"] == 2  # the second request did not ask

        feed.routes["/list"] = serve(FIXTURE_BYTES)
        time.sleep(1.2)  # the outage mark lives in Redis with a real one-second TTL
        meta = ok(get(client, customer, limit=1))["meta"]

    assert meta["stale"] is False
    assert meta["stale_reason"] is None
    assert meta["age_seconds"] < AGED.total_seconds()
    assert feed.hits["/list"] == 3


def test_a_second_app_instance_serves_the_same_kept_copy(
    make_app: Callable[..., Flask], client: FlaskClient, customer: Caller, feed: FeedServer
) -> None:
    first = ok(get(client, customer, limit=30))
    other = make_app().test_client()  # its own process memory, the same Redis and database

    second = ok(get(other, customer, limit=30))

    assert feed.hits["/list"] == 1
    assert second["items"] == first["items"]
    assert second["meta"]["fetched_at"] == first["meta"]["fetched_at"]
    assert second["meta"]["stale"] is False


def test_with_redis_flushed_the_kept_copy_comes_from_the_database(
    make_app: Callable[..., Flask],
    client: FlaskClient,
    customer: Caller,
    feed: FeedServer,
    services: Services,
) -> None:
    fresh = ok(get(client, customer, limit=30))
    redis = Redis.from_url(services.redis_url)
    redis.flushdb()

    # Still fresh: read from the table, without asking the source.
    again = ok(get(make_app().test_client(), customer, limit=30))
    assert again["items"] == fresh["items"]
    assert again["meta"]["stale"] is False
    assert feed.hits["/list"] == 1
    assert redis.exists("lapak:fetch:feed:feed")  # and put back in Redis

    # Down, and Redis flushed again: a new instance serves the table's copy, stale.
    feed.routes["/list"] = fail(500)
    redis.flushdb()
    with clock.travel(AGED):
        stale = ok(get(make_app().test_client(), customer, limit=30))

    assert stale["meta"]["stale"] is True
    assert "HTTP 500" in stale["meta"]["stale_reason"]
    assert stale["items"] == fresh["items"]
    assert stale["meta"]["fetched_at"] == fresh["meta"]["fetched_at"]
    assert stale["meta"]["rows"]["kept"] == KEPT
    assert feed.hits["/list"] == 2


def test_a_good_answer_is_kept_in_the_database(
    client: FlaskClient, customer: Caller, services: Services
) -> None:
    meta = ok(get(client, customer, limit=1))["meta"]

    engine = create_engine(services.database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT key, source, size FROM fetch_feed_snapshot")
            ).all()
    finally:
        engine.dispose()
    assert [(row.key, row.source, row.size) for row in rows] == [
        ("feed", "feed", len(FIXTURE_BYTES))
    ]
    assert meta["source"] == "feed"


def test_the_refresh_job_fetches_only_read_sources_that_are_due(
    app: Flask, client: FlaskClient, customer: Caller, feed: FeedServer
) -> None:
    with app.app_context():
        assert refresh_feeds() == 0  # nothing read yet: nothing polled
    first = ok(get(client, customer, limit=1))
    with app.app_context():
        assert refresh_feeds() == 0  # read, and still fresh

    with clock.travel(AGED):
        with app.app_context():
            assert refresh_feeds() == 1  # "feed" is due; "other" was never read
        meta = ok(get(client, customer, limit=1))["meta"]

    assert (feed.hits["/list"], feed.hits["/other"]) == (2, 0)
    assert meta["fetched_at"] > first["meta"]["fetched_at"]  # the refreshed copy, no new fetch
    assert meta["stale"] is False
