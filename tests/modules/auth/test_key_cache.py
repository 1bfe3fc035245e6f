"""The API-key cache: a cached key costs one Redis round trip and no database statement, and a
warm cache never outlives a revoke, a roll, an expiry or a change of the owner, across Redis
outages too (real PostgreSQL, the test Redis and a Redis of the test's own)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from itertools import count
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from app import clock
from app.clock import travel
from app.security import Principal
from modules.auth import replay, services
from modules.auth.key_cache import TOMBSTONE, ApiKeyCache, KeyState
from modules.auth.signed_requests import ApiKeyRefused
from modules.user.services import deactivate_user
from tests.conftest import redis_outage_app
from tests.modules.auth.test_api_keys import (
    KEYS,
    ORDERS,
    Key,
    create_key,
    lapak_signed_headers,
    now_stamp,
    problem,
    signed,
)
from tests.modules.auth.test_signed_requests import embedded_seller
from tests.modules.conftest import Caller
from tests.servers import RedisServer

_queries = count()


def fresh(path: str = ORDERS) -> str:
    """Another query each time: two requests signed in the same second differ."""
    return f"{path}?n={next(_queries)}"


@contextmanager
def database_statements(app: Flask) -> Iterator[list[str]]:
    """Every statement sent to the primary or a replica meanwhile."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engines = app.extensions["lapak.db"].engines()
    for engine in engines:
        event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", before)


@contextmanager
def redis_round_trips(app: Flask) -> Iterator[list[str]]:
    """Each round trip on the app's Redis client meanwhile: a command, or a whole pipeline
    (observed by wrapping the client's own methods; every call still goes to Redis)."""
    client = app.extensions["lapak.jobs"].redis
    sent: list[str] = []
    execute_command, pipeline = client.execute_command, client.pipeline

    def counted_command(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]))
        return execute_command(*args, **options)

    def counted_pipeline(*args: Any, **options: Any) -> Any:
        pipe = pipeline(*args, **options)
        execute = pipe.execute

        def counted_execute(*a: Any, **k: Any) -> Any:
            sent.append("pipeline: " + " ".join(str(c[0][0]) for c in pipe.command_stack))
            return execute(*a, **k)

        pipe.execute = counted_execute
        return pipe

    client.execute_command, client.pipeline = counted_command, counted_pipeline
    try:
        yield sent
    finally:
        del client.execute_command, client.pipeline


def authenticate(app: Flask, key: Key, path: str | None = None) -> Principal:
    """The authenticator alone, on one signed GET (no view, no audit of the request)."""
    path = path or fresh()
    headers = lapak_signed_headers(key.id, key.secret, "GET", path, b"", now_stamp())
    with app.test_request_context(path, headers=headers):
        return services.authenticate_request()


def refusal(app: Flask, key: Key, path: str | None = None) -> str:
    with pytest.raises(ApiKeyRefused) as refused:
        authenticate(app, key, path)
    return refused.value.code


def cached(app: Flask, key: Key) -> bytes | None:
    return app.extensions["lapak.jobs"].redis.get(ApiKeyCache.key(key.id))


# --- the cost of a cached key ----------------------------------------------------------------


def test_a_cached_key_costs_one_redis_round_trip_and_no_database_statement(
    app: Flask, client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    seller = log_in_as("seller")
    key = create_key(client, seller, ["orders:read"])
    with database_statements(app) as statements:
        assert authenticate(app, key).api_key_id == key.id  # a miss: read and cached
    assert any("auth_api_key" in s for s in statements)
    entry = cached(app, key)
    assert entry is not None
    assert key.secret.encode() not in entry  # the secret is cached sealed, as stored
    assert KeyState.loads(entry).secret_token.encode() in entry

    with database_statements(app) as statements, redis_round_trips(app) as trips:
        principal = authenticate(app, key)
    assert (principal.user_uuid, principal.role, principal.scopes) == (
        seller.uuid, "seller", frozenset({"orders:read"}),
    )  # fmt: skip
    assert statements == []
    assert len(trips) == 1
    assert trips[0].startswith("pipeline: GET SET EXISTS")


def test_the_cached_state_decides_last_used_at_and_is_refreshed_when_it_is_written(
    app: Flask, client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    seller = log_in_as("seller")
    key = create_key(client, seller, ["orders:read"])

    def last_used() -> str | None:
        return client.get(f"{KEYS}/{key.id}", headers=seller.headers).get_json()["last_used_at"]

    authenticate(app, key)
    first = last_used()
    assert first is not None
    entry = cached(app, key)
    assert entry is not None
    assert KeyState.loads(entry).last_used_at is not None
    with travel(timedelta(seconds=61)):
        with database_statements(app) as statements:
            authenticate(app, key)  # a hit, past the minute: one UPDATE, no read
        assert [s.split()[0] for s in statements if "auth_api_key" in s] == ["UPDATE"]
        later = last_used()
        refreshed = KeyState.loads(cached(app, key) or b"")
        assert refreshed.last_used_at is not None
        assert later is not None
        assert abs(refreshed.last_used_at - datetime.fromisoformat(later)) < timedelta(seconds=1)
        with database_statements(app) as statements:
            authenticate(app, key)  # within the minute of the refreshed entry: nothing
        assert statements == []
    assert later != first


def test_the_cache_can_be_turned_off(
    make_app: Callable[..., Flask], config: dict[str, Any], log_in_as: Callable[..., Caller]
) -> None:
    app = make_app(module_env={**config["module_env"], "api_key_cache_seconds": "0"})
    key = create_key(app.test_client(), log_in_as("seller"), ["orders:read"])
    authenticate(app, key)
    with database_statements(app) as statements:
        authenticate(app, key)
    assert any("auth_api_key" in s for s in statements)
    assert cached(app, key) is None


# --- changes take effect on the very next request, with a warm cache -------------------------


def warm(app: Flask, key: Key) -> None:
    authenticate(app, key)
    authenticate(app, key)
    entry = cached(app, key)
    assert entry is not None
    assert entry != TOMBSTONE


def test_a_revoke_holds_on_the_next_request_despite_a_warm_cache(
    app: Flask, client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    seller = log_in_as("seller")
    key = create_key(client, seller, ["orders:read"])
    warm(app, key)
    assert client.post(f"{KEYS}/{key.id}/revoke", headers=seller.headers).status_code == 200
    assert cached(app, key) == TOMBSTONE
    assert refusal(app, key) == "api-key-revoked"
    assert refusal(app, key) == "api-key-revoked"  # and the tombstone is not overwritten
    assert cached(app, key) == TOMBSTONE


def test_a_roll_holds_on_the_next_request_despite_a_warm_cache(
    app: Flask, client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    seller = log_in_as("seller")
    old = create_key(client, seller, ["orders:read"])
    warm(app, old)
    rolled = client.post(f"{KEYS}/{old.id}/roll", json={"grace_hours": 0}, headers=seller.headers)
    assert rolled.status_code == 200
    new = Key(old.id, rolled.get_json()["secret"])
    assert refusal(app, old) == "api-signature-invalid"
    assert authenticate(app, new).api_key_id == old.id

    # With a grace period: the old secret until the deadline, from the cache, then no more.
    graced = client.post(f"{KEYS}/{old.id}/roll", json={"grace_hours": 1}, headers=seller.headers)
    newest = Key(old.id, graced.get_json()["secret"])
    # The roll's tombstone keeps the state out of the cache for a while; drop it to see the
    # grace deadline decided from a warm entry.
    app.extensions["lapak.jobs"].redis.delete(ApiKeyCache.key(old.id))
    warm(app, new)
    assert authenticate(app, newest).api_key_id == old.id
    with travel(timedelta(hours=1, seconds=1)):
        assert refusal(app, new) == "api-signature-invalid"
        assert authenticate(app, newest).api_key_id == old.id


def test_an_expiry_holds_on_the_next_request_despite_a_warm_cache(
    app: Flask, client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    soon = (clock.now() + timedelta(minutes=10)).isoformat()
    key = create_key(client, log_in_as("seller"), ["orders:read"], expires_at=soon)
    warm(app, key)
    with travel(timedelta(minutes=10, seconds=1)):
        assert refusal(app, key) == "api-key-expired"


def test_deactivating_the_owner_holds_on_the_next_request_despite_a_warm_cache(
    app: Flask, client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    seller = log_in_as("seller")
    key = create_key(client, seller, ["orders:read"])
    warm(app, key)
    with app.app_context():
        deactivate_user(seller.uuid)
    assert refusal(app, key) == "api-key-owner-inactive"
    response = signed(client, key, "GET", fresh())
    assert (response.status_code, problem(response)) == (401, "api-key-owner-inactive")


def test_a_role_change_holds_on_the_next_request_despite_a_warm_cache(
    app: Flask, client: FlaskClient, admin: Caller, log_in_as: Callable[..., Caller]
) -> None:
    other_admin = log_in_as("admin")
    key = create_key(client, other_admin, ["orders:read", "orders:write"])
    warm(app, key)
    assert authenticate(app, key).scopes == frozenset({"orders:read", "orders:write"})
    demoted = client.patch(f"/api/v1/users/{other_admin.uuid}", json={"role": "seller"},
                           headers=admin.headers)  # fmt: skip
    assert demoted.status_code == 200, demoted.get_json()
    principal = authenticate(app, key)
    assert (principal.role, principal.scopes) == ("seller", frozenset({"orders:read"}))
    customer = client.patch(f"/api/v1/users/{other_admin.uuid}", json={"role": "customer"},
                            headers=admin.headers)  # fmt: skip
    assert customer.status_code == 200
    assert refusal(app, key) == "api-key-owner-inactive"


def test_a_refused_request_does_not_use_up_its_signature(
    app: Flask, client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    seller = log_in_as("seller")
    key = create_key(client, seller, ["orders:read"])
    warm(app, key)
    with app.app_context():
        deactivate_user(seller.uuid)
    path = fresh()
    headers = lapak_signed_headers(key.id, key.secret, "GET", path, b"", now_stamp())
    digest = replay.digest(key.id, headers["X-Signature"])
    with app.test_request_context(path, headers=headers), pytest.raises(ApiKeyRefused):
        services.authenticate_request()
    assert app.extensions["lapak.jobs"].redis.exists(replay.ReplayStore.key(digest)) == 0


# --- Redis outages ---------------------------------------------------------------------------


@pytest.fixture
def outage_app(
    make_app: Callable[..., Flask], config: dict[str, Any], own_redis: RedisServer
) -> Callable[[], Flask]:
    """Apps (processes) on the test's own Redis, caching keys for 10 minutes."""

    def build() -> Flask:
        env = {**config["module_env"], "api_key_cache_seconds": "600"}
        return redis_outage_app(make_app, own_redis, module_env=env)

    return build


def test_with_redis_down_keys_are_read_from_the_database_and_a_revoke_meanwhile_holds_after(
    outage_app: Callable[[], Flask],
    own_redis: RedisServer,
    admin: Caller,
    log_in_as: Callable[..., Caller],
) -> None:
    app = outage_app()
    client = app.test_client()
    kept = create_key(client, log_in_as("seller"), ["orders:read"])
    revoked = create_key(client, log_in_as("seller"), ["orders:read"])
    warm(app, kept)
    warm(app, revoked)
    raw = redis.Redis.from_url(own_redis.url)
    raw.save()  # Redis comes back with the states cached before the outage
    own_redis.stop()

    assert refusal(app, kept) == "api-request-signed-before-outage"
    with travel(timedelta(seconds=2)):
        assert authenticate(app, kept).api_key_id == kept.id  # the database path
        assert client.post(f"{KEYS}/{revoked.id}/revoke", headers=admin.headers).status_code == 200
        assert refusal(app, revoked) == "api-key-revoked"

        own_redis.start()
        stale = raw.get(ApiKeyCache.key(revoked.id))
        assert stale is not None
        assert KeyState.loads(stale).revoked is False
        assert refusal(app, revoked) == "api-key-revoked"
        assert raw.get(ApiKeyCache.key(revoked.id)) == TOMBSTONE
        assert authenticate(app, kept).api_key_id == kept.id


def test_a_request_accepted_during_an_outage_is_refused_after_it_even_from_the_cache(
    outage_app: Callable[[], Flask], own_redis: RedisServer, log_in_as: Callable[..., Caller]
) -> None:
    one, two = outage_app(), outage_app()  # two processes on one Redis and one database
    key = create_key(one.test_client(), log_in_as("seller"), ["orders:read"])
    warm(two, key)
    raw = redis.Redis.from_url(own_redis.url)
    raw.save()
    own_redis.stop()

    assert refusal(one, key) == "api-request-signed-before-outage"
    with travel(timedelta(seconds=2)):
        path = fresh()
        during = lapak_signed_headers(key.id, key.secret, "GET", path, b"", now_stamp())
        with one.test_request_context(path, headers=during):
            assert services.authenticate_request().api_key_id == key.id  # through the database

        own_redis.start()
        # The process that fell back writes the marker as soon as Redis answers (here from its
        # timer: it gets no request).
        deadline = time.monotonic() + 10
        while not raw.exists(replay.OUTAGE_MARKER) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert raw.exists(replay.OUTAGE_MARKER)
        assert 0 < raw.ttl(replay.OUTAGE_MARKER) <= 2 * 300 + 1
        assert KeyState.loads(raw.get(ApiKeyCache.key(key.id)) or b"").key_id == key.id
        # The other process finds the key cached; the marker sends it to the database as well.
        with (
            database_statements(two) as statements,
            two.test_request_context(path, headers=during),
            pytest.raises(ApiKeyRefused) as refused,
        ):
            services.authenticate_request()
        assert refused.value.code == "api-request-replayed"
        assert any("auth_api_replay" in s for s in statements)
        assert authenticate(two, key).api_key_id == key.id


def test_a_process_that_saw_the_outage_refuses_a_replay_of_it_from_a_warm_cache(
    outage_app: Callable[[], Flask], own_redis: RedisServer, log_in_as: Callable[..., Caller]
) -> None:
    app = outage_app()
    key = create_key(app.test_client(), log_in_as("seller"), ["orders:read"])
    warm(app, key)
    raw = redis.Redis.from_url(own_redis.url)
    raw.save()
    own_redis.stop()
    assert refusal(app, key) == "api-request-signed-before-outage"
    with travel(timedelta(seconds=2)):
        path = fresh()
        during = lapak_signed_headers(key.id, key.secret, "GET", path, b"", now_stamp())
        with app.test_request_context(path, headers=during):
            assert services.authenticate_request().api_key_id == key.id  # through the database
        own_redis.start()
        assert raw.get(ApiKeyCache.key(key.id)) not in (None, TOMBSTONE)  # a warm cache again
        with (
            app.test_request_context(path, headers=during),
            pytest.raises(ApiKeyRefused) as refused,
        ):
            services.authenticate_request()
        assert refused.value.code == "api-request-replayed"
        assert raw.exists(replay.OUTAGE_MARKER)


def test_signed_requests_on_the_embedded_default_are_unchanged(
    make_embedded_app: Callable[..., Flask],
) -> None:
    app = make_embedded_app()
    assert not app.extensions["auth"].key_cache.enabled
    client = app.test_client()
    key = create_key(client, embedded_seller(app, "toko@example.test"), ["orders:read"])
    headers = lapak_signed_headers(key.id, key.secret, "GET", ORDERS, b"", now_stamp())
    assert client.get(ORDERS, headers=headers).status_code == 200
    replayed = client.get(ORDERS, headers=headers)
    assert (replayed.status_code, problem(replayed)) == (401, "api-request-replayed")
