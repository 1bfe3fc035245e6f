"""The API-key scope catalogue as the loaded modules declare it, and the replay cache."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Flask
from redis import Redis

from app.jobs import RedisOutage
from app.security import scope_catalogue
from modules.auth.replay import ReplayCache

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


# --- the replay cache ------------------------------------------------------------------------


def test_the_in_process_replay_cache_refuses_a_second_use_until_the_window_ends() -> None:
    cache = ReplayCache(None)
    assert cache.first_use("lpk_a", "ab" * 32, 1000, until=1300, now=1000)
    assert not cache.first_use("lpk_a", "AB" * 32, 1000, until=1300, now=1100)
    # Another key's identical signature is its own request.
    assert cache.first_use("lpk_b", "ab" * 32, 1000, until=1300, now=1100)
    # Past the window the timestamp check refuses it anyway; the entry may be forgotten.
    assert cache.first_use("lpk_a", "ab" * 32, 1000, until=1300, now=1301)


def test_a_full_replay_cache_stays_bounded_and_never_reopens_a_replay() -> None:
    cache = ReplayCache(None, max_entries=10)
    for n in range(11):
        assert cache.first_use("lpk_a", f"sig{n}", 1000 + n, until=2000, now=1000)
    assert len(cache._seen) <= 10
    # Every signature ever accepted is still refused: dropped ones by the raised floor.
    for n in range(11):
        assert not cache.first_use("lpk_a", f"sig{n}", 1000 + n, until=2000, now=1001)
    # Requests signed after the dropped ones still pass.
    assert cache.first_use("lpk_a", "fresh", 1020, until=2000, now=1001)


def test_the_replay_cache_uses_redis_set_nx_and_falls_back_while_it_is_down(
    own_redis: Any,
) -> None:
    redis = Redis.from_url(own_redis.url)
    outage = RedisOutage(retry_seconds=0)
    cache = ReplayCache(redis, outage)
    assert cache.first_use("lpk_a", "s1", 1000, until=1300, now=1000)
    stored = redis.ttl(ReplayCache.key("lpk_a", "s1"))
    assert 0 < stored <= 301
    # Another process (another cache on the same Redis) sees the use.
    assert not ReplayCache(redis, outage).first_use("lpk_a", "s1", 1000, until=1300, now=1001)
    own_redis.stop()
    assert cache.first_use("lpk_a", "s2", 1000, until=1300, now=1002)
    assert not cache.first_use("lpk_a", "s2", 1000, until=1300, now=1003)
