"""The API-key scope catalogue as the loaded modules declare it, and the replay store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Flask
from redis import Redis
from sqlalchemy import func, select

from app.db import get_database
from app.jobs import RedisOutage
from app.security import scope_catalogue
from modules.auth.models import ApiReplay
from modules.auth.replay import (
    BEFORE_OUTAGE,
    FIRST,
    OUTAGE_MARKER,
    REPLAYED,
    ReplayStore,
    digest,
    forget_expired,
)

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def view_scopes(app: Flask) -> Iterator[tuple[str, str, str | None]]:
    """(endpoint, method, scope) of every guarded view."""
    for endpoint, function in app.view_functions.items():
        view_class = getattr(function, "view_class", None)
        for method in HTTP_METHODS:
            handler = getattr(view_class, method, None) if view_class else None
            if handler is not None and hasattr(handler, "_lapak_scope"):
                yield endpoint, method, handler._lapak_scope


def test_every_scope_a_view_names_is_in_the_catalogue(app: Flask) -> None:
    with app.app_context():
        catalogue = scope_catalogue()
    named = {scope for _, _, scope in view_scopes(app) if scope is not None}
    assert named <= set(catalogue), named - set(catalogue)
    # ...and every declared scope opens at least one view.
    assert set(catalogue) <= named, set(catalogue) - named
    assert {"orders:read", "orders:write", "payments:read", "payments:write", "ledger:read",
            "settlements:read", "payouts:write"} <= named  # fmt: skip


def test_people_only_views_stay_people_only(app: Flask) -> None:
    scopes = {(endpoint, method): scope for endpoint, method, scope in view_scopes(app)}
    people_only = [
        (endpoint, method)
        for endpoint, method in scopes
        if endpoint.startswith(("user.", "auth.")) or "Sync" in endpoint or "Provider" in endpoint
    ]
    assert len(people_only) > 20
    for endpoint, method in people_only:
        assert scopes[(endpoint, method)] is None, (endpoint, method)


def test_the_openapi_document_names_the_scope_and_the_signature_scheme(app: Flask) -> None:
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    assert spec["components"]["securitySchemes"]["apiKeySignature"]["name"] == "X-API-Key"
    orders = spec["paths"]["/api/v1/marketplace/orders"]["get"]
    assert orders["x-lapak-scope"] == "orders:read"
    assert {"apiKeySignature": []} in orders["security"]
    assert "orders:read" in orders["responses"]["403"]["description"]
    users = spec["paths"]["/api/v1/users"]["get"]
    assert users["security"] == [{"bearerAuth": []}]


# --- the replay store ------------------------------------------------------------------------


def replay_rows() -> int:
    with get_database().primary.connect() as connection:
        return connection.scalar(select(func.count()).select_from(ApiReplay)) or 0


def test_without_redis_the_database_refuses_a_second_use_and_expired_rows_are_purged(
    app: Flask,
) -> None:
    store = ReplayStore(None)
    with app.app_context():
        assert store.first_use(digest("lpk_a", "ab" * 32), 1000, until=1300, now=1000) == FIRST
        # The signature's case does not make another request.
        again = store.first_use(digest("lpk_a", "AB" * 32), 1000, until=1300, now=1100)
        assert again == REPLAYED
        # Another key's identical signature is its own request.
        assert store.first_use(digest("lpk_b", "ab" * 32), 1000, until=1300, now=1100) == FIRST
        # Another store (another process) sees the use.
        other = ReplayStore(None).first_use(digest("lpk_b", "ab" * 32), 1000, 1300, 1101)
        assert other == REPLAYED
        assert replay_rows() == 2
        # Their window ended in 1970: the periodic purge deletes them.
        assert forget_expired() == 2
        assert replay_rows() == 0


def test_with_redis_set_nx_and_across_an_outage_no_replay_opens(app: Flask, own_redis: Any) -> None:
    redis = Redis.from_url(own_redis.url)
    outage = RedisOutage(retry_seconds=0)
    store = ReplayStore(redis, outage)
    before, ahead, during = digest("lpk_a", "s1"), digest("lpk_a", "s2"), digest("lpk_a", "s3")
    with app.app_context():
        assert store.first_use(before, 1000, until=1300, now=1000) == FIRST
        assert 0 < redis.ttl(ReplayStore.key(before)) <= 301
        # Another process (another store on the same Redis) sees the use.
        assert ReplayStore(redis, outage).first_use(before, 1000, 1300, 1001) == REPLAYED
        assert replay_rows() == 0, "Redis alone keeps a request signed in the past"
        # A forward-dated request is kept by the database too.
        assert store.first_use(ahead, 1100, until=1400, now=1001) == FIRST
        assert replay_rows() == 1

        own_redis.stop()
        # Signed before the outage was noticed: Redis may have seen it, so it is refused...
        assert store.first_use(before, 1000, until=1300, now=1002) == BEFORE_OUTAGE
        # ... and the forward-dated one is known to the database.
        assert store.first_use(ahead, 1100, until=1400, now=1003) == REPLAYED
        # Signed during the outage: once, through the database.
        assert store.first_use(during, 1004, until=1304, now=1004) == FIRST
        assert store.first_use(during, 1004, until=1304, now=1005) == REPLAYED

        own_redis.start()
        # Back on Redis, requests signed before the outage pass again (Redis refuses replays);
        # the ones the database accepted are refused by the signed request's check (it reads
        # the digest with the key: tests/modules/auth/test_api_keys.py).
        assert store.first_use(digest("lpk_a", "s4"), 1001, until=1301, now=1006) == FIRST
        assert store._down_since is None


def test_a_store_that_fell_back_owes_redis_the_outage_marker(app: Flask, own_redis: Any) -> None:
    redis = Redis.from_url(own_redis.url)
    store = ReplayStore(redis, RedisOutage(retry_seconds=0), window_seconds=300)
    try:
        with app.app_context():
            assert store.first_use(digest("lpk_a", "s1"), 1000, until=1300, now=1000) == FIRST
            assert not redis.exists(OUTAGE_MARKER)  # no outage, no marker
            own_redis.stop()
            assert store.first_use(digest("lpk_a", "s2"), 1002, until=1302, now=1001) == FIRST
            own_redis.start()
            # Written by the next use at the latest (or by the store's timer before it).
            assert store.first_use(digest("lpk_a", "s3"), 1003, until=1303, now=1003) == FIRST
            assert redis.exists(OUTAGE_MARKER)
            assert 0 < redis.ttl(OUTAGE_MARKER) <= 2 * 300 + 1
    finally:
        store.close()
