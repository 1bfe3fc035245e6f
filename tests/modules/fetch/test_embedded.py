"""The feed on the embedded default (SQLite, no Redis): the database keeps the last good copy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Flask

from app import clock
from app.db import transaction
from modules.user.services import create_user
from tests.modules.conftest import PASSWORD, bearer, login

from .feedserver import FIXTURE, FeedServer, fail, fetch_env, running, serve


def test_without_redis_the_feed_is_kept_in_sqlite_and_served_stale_when_the_source_fails(
    make_embedded_app: Callable[..., Flask], config: dict[str, Any]
) -> None:
    with running(FeedServer()) as server:
        server.routes["/list"] = serve(FIXTURE.read_bytes())
        app = make_embedded_app(module_env={**config["module_env"], **fetch_env(server)})
        with app.app_context(), transaction():
            create_user("reader@example.test", role="customer", password=PASSWORD)
        client = app.test_client()
        reader = bearer(login(client, "reader@example.test").get_json()["access_token"])

        fresh = client.get("/api/v1/fetch/commodities?source=feed&limit=5", headers=reader)
        assert fresh.status_code == 200, fresh.get_json()
        assert fresh.get_json()["meta"]["stale"] is False
        assert fresh.get_json()["matched"] == 2415

        server.routes["/list"] = fail(500)
        with clock.travel(timedelta(minutes=10)):
            kept = client.get("/api/v1/fetch/commodities?source=feed&limit=5", headers=reader)
        assert kept.status_code == 200, kept.get_json()
        meta = kept.get_json()["meta"]
        assert meta["stale"] is True
        assert "HTTP 500" in meta["stale_reason"]
        assert meta["age_seconds"] >= 600
        assert kept.get_json()["items"] == fresh.get_json()["items"]
        assert server.hits["/list"] == 2
