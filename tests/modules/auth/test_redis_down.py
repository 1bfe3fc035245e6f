"""Login and the session check while Redis is down: a real Redis of the test's own, stopped."""

from __future__ import annotations

import logging
import signal
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask import Flask

from modules.auth.services import SessionCache
from tests.conftest import redis_outage_app
from tests.modules.conftest import PASSWORD, bearer, login
from tests.servers import RedisServer

SESSION = "/api/v1/auth/session"
OUTAGE = "Redis unavailable"


def outage_warnings(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and OUTAGE in r.getMessage() and words in r.getMessage()
    ]


@pytest.fixture
def app_on(
    make_app: Callable[..., Flask], config: dict[str, Any], own_redis: RedisServer
) -> Callable[..., Flask]:
    def build(**module_env: str) -> Flask:
        env = {**config["module_env"], **module_env}
        return redis_outage_app(make_app, own_redis, module_env=env)

    return build


def test_login_goes_on_with_redis_down_and_failures_are_counted_in_the_process(
    app_on: Callable[..., Flask],
    own_redis: RedisServer,
    make_user: Callable,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = app_on(login_max_account_failures="3", login_lockout_seconds="30")
    client = app.test_client()
    _, _, email = make_user()
    _, _, other = make_user()
    caplog.set_level(logging.INFO)
    own_redis.stop()

    assert login(client, email).status_code == 200
    for _ in range(3):
        wrong = login(client, other, "not the password")
        assert wrong.status_code == 401, wrong.get_json()
    locked = login(client, other)
    assert locked.status_code == 429
    assert locked.content_type == "application/problem+json"
    assert int(locked.headers["Retry-After"]) > 0
    # One warning for the outage, not one per request.
    assert len(outage_warnings(caplog, "login failures are counted in each process")) == 1

    own_redis.start()
    assert login(client, email).status_code == 200
    assert login(client, email, "not the password").status_code == 401
    counted = redis.Redis.from_url(own_redis.url).keys("lapak:auth:throttle:*")
    assert counted, "back on Redis, failures are counted there again"
    assert any("Redis answers again" in r.getMessage() for r in caplog.records)


def test_session_check_reads_the_database_while_redis_is_down(
    app_on: Callable[..., Flask], own_redis: RedisServer, make_user: Callable
) -> None:
    app = app_on()
    client = app.test_client()
    _, _, email = make_user()
    token = login(client, email).get_json()["access_token"]
    assert client.get(SESSION, headers=bearer(token)).status_code == 200
    own_redis.stop()

    assert client.get(SESSION, headers=bearer(token)).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=bearer(token)).status_code == 204
    refused = client.get(SESSION, headers=bearer(token))
    assert refused.status_code == 401
    assert refused.get_json()["type"] == "urn:lapak:problem:session-revoked"


def test_a_session_ended_while_redis_was_down_stays_ended_when_it_comes_back(
    app_on: Callable[..., Flask], own_redis: RedisServer, make_user: Callable
) -> None:
    """Redis comes back from its dump with the state cached before the outage: the logout that
    could not leave its tombstone must still win over that stale entry."""
    app = app_on(session_cache_seconds="600")
    client = app.test_client()
    _, _, email = make_user()
    answer = login(client, email).get_json()
    token, sid = answer["access_token"], answer["session"]["id"]
    assert client.get(SESSION, headers=bearer(token)).status_code == 200  # cached now
    raw = redis.Redis.from_url(own_redis.url)
    raw.save()
    own_redis.stop()

    assert client.post("/api/v1/auth/logout", headers=bearer(token)).status_code == 204

    own_redis.start()
    stale = raw.get(SessionCache.key(uuid.UUID(sid)))
    assert stale is not None  # the state cached before the outage is back ...
    assert b'"revoked": false' in stale  # ... and says the session is live
    refused = client.get(SESSION, headers=bearer(token))
    assert refused.status_code == 401
    assert refused.get_json()["type"] == "urn:lapak:problem:session-revoked"
    assert raw.get(SessionCache.key(uuid.UUID(sid))) == b"revoked"


def test_a_new_login_still_works_for_the_user_after_the_outage(
    app_on: Callable[..., Flask], own_redis: RedisServer, make_user: Callable
) -> None:
    app = app_on()
    client = app.test_client()
    _, _, email = make_user()
    own_redis.stop()
    first = login(client, email, PASSWORD).get_json()["access_token"]
    own_redis.start()
    second = login(client, email).get_json()["access_token"]
    assert client.get(SESSION, headers=bearer(first)).status_code == 401
    assert client.get(SESSION, headers=bearer(second)).status_code == 200


def test_login_goes_on_while_redis_hangs(
    make_app: Callable[..., Flask], own_redis: RedisServer, make_user: Callable
) -> None:
    """A frozen Redis (a network partition): the connection opens, no answer ever comes."""
    app = make_app(redis_url=own_redis.url)  # the production wait before trying Redis again
    client = app.test_client()
    _, _, email = make_user()
    assert own_redis.process is not None
    own_redis.process.send_signal(signal.SIGSTOP)
    try:
        answers = [login(client, email).status_code for _ in range(3)]
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
    assert answers == [200, 200, 200]
