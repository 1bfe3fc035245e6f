"""The bundled demo feed: read from the package without network, the default of a first run in
development, and the hint a failing source's 502 gives."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app.config import Settings, SettingsError
from app.db import transaction
from modules.fetch import demo
from modules.fetch.cleaning import clean
from modules.fetch.sources import DEFAULT_SOURCES, SourceSettings
from modules.user.services import create_user
from tests.modules.conftest import PASSWORD, bearer, login

from .feedserver import FeedServer, fail, fetch_env, running, slow

API = "/api/v1/fetch"
PROBLEM = "application/problem+json"
ROOT = Path(__file__).resolve().parents[3]
DEMO_ROWS = json.loads((ROOT / "modules" / "fetch" / "demo_feed.json").read_bytes())
DEMO_CLEANED = clean(DEMO_ROWS)


def no_network(*args: Any) -> Any:
    raise AssertionError(f"the demo feed looked up a host: {args!r}")


# -- the file ---------------------------------------------------------------------------------


def test_the_demo_feed_has_the_real_feeds_quirks() -> None:
    spellings = {row["tgl_parsed"] for row in DEMO_ROWS if row.get("tgl_parsed")}
    uuids = [row["uuid"].lower() for row in DEMO_ROWS if row.get("uuid")]

    assert len(DEMO_ROWS) >= 150
    assert all(set(row) == set(DEMO_ROWS[0]) for row in DEMO_ROWS)  # the feed's shape
    assert all(
        value is None or isinstance(value, str) for row in DEMO_ROWS for value in row.values()
    )
    assert set(DEMO_CLEANED.skipped) >= {
        "all_null",
        "test_row",
        "province_is_a_commodity",
        "missing_price",
        "invalid_price",
        "non_positive_price",
        "invalid_size",
    }
    assert DEMO_CLEANED.duplicates > 0
    assert len(uuids) > len(set(uuids))
    assert any(row["price"] and "." in row["price"] for row in DEMO_ROWS)  # "10.000"
    assert any(text.endswith("Z") and "." not in text for text in spellings)
    assert any(text.endswith("Z") and "." in text for text in spellings)
    assert any(text.endswith("+07:00") for text in spellings)
    assert any(len(text) == 19 for text in spellings)  # no zone
    assert any(row["tgl_parsed"] is None and row["timestamp"] for row in DEMO_ROWS)
    assert len(DEMO_CLEANED.listings) > 100


def test_installs_carry_the_demo_feed() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())

    assert "demo_feed.json" in pyproject["tool"]["setuptools"]["package-data"]["modules.fetch"]


# -- settings ---------------------------------------------------------------------------------


def source_settings(env: str, **module_env: str) -> SourceSettings:
    return SourceSettings.from_settings(Settings(env=env, module_env=module_env))


def test_in_development_the_demo_feed_is_the_default_source() -> None:
    development = source_settings("development")

    assert development.default_source == demo.DEMO_SOURCE
    assert development.sources == {demo.DEMO_SOURCE: demo.DEMO_URL, **DEFAULT_SOURCES}


@pytest.mark.parametrize("env", ["production", "test"])
def test_elsewhere_the_live_feed_is_the_default_source(env: str) -> None:
    assert source_settings(env).sources == DEFAULT_SOURCES
    assert source_settings(env).default_source == "efishery"


def test_configured_sources_replace_the_defaults_in_development_too() -> None:
    configured = source_settings("development", fetch_sources='{"live": "https://feeds.example/"}')

    assert configured.sources == {"live": "https://feeds.example/"}
    assert configured.default_source == "live"


def test_any_source_may_be_the_demo_feed_but_no_other_scheme() -> None:
    assert source_settings("production", fetch_sources='{"offline": "demo:"}').sources == {
        "offline": "demo:"
    }
    for url in ("demo:other", "demo://x", "file:///etc/passwd"):
        with pytest.raises(SettingsError, match="demo:"):
            source_settings("production", fetch_sources=json.dumps({"x": url}))


def test_a_shown_url_keeps_no_credentials_path_or_query() -> None:
    sources = {
        "a": "https://user:secret@feeds.example:8443/v1/storages/abc?token=t0k3n#x",
        "b": "http://[::1]/list",
        "c": "demo:",
        "d": "http://feeds.example:port/list?key=k",
    }
    settings = source_settings("production", fetch_sources=json.dumps(sources))

    assert settings.shown_url("a") == "https://feeds.example:8443"
    assert settings.shown_url("b") == "http://[::1]"
    assert settings.shown_url("c") == "demo:"
    assert settings.shown_url("d") == "http://feeds.example:port"


# -- through the API --------------------------------------------------------------------------


@pytest.fixture
def embedded(make_embedded_app: Callable[..., Flask], config: dict[str, Any]) -> Flask:
    """A first run: development, SQLite, no Redis, no LAPAK_FETCH_* setting at all."""
    app = make_embedded_app(env="development", module_env=config["module_env"])
    app.extensions["fetch.feeds"].resolve = no_network
    return app


def user(app: Flask, role: str) -> dict[str, str]:
    """Authorization headers of a new user with ``role``."""
    email = f"{role}@example.test"
    with app.app_context(), transaction():
        create_user(email, role=role, password=PASSWORD)
    return bearer(login(app.test_client(), email).get_json()["access_token"])


def test_a_first_run_reads_the_demo_feed_with_no_network(embedded: Flask) -> None:
    client = embedded.test_client()
    customer, admin = user(embedded, "customer"), user(embedded, "admin")

    page = client.get(f"{API}/commodities?limit=5", headers=customer)
    report = client.get(f"{API}/commodities/aggregate", headers=admin)

    assert page.status_code == 200, page.get_json()
    meta = page.get_json()["meta"]
    assert meta["source"] == demo.DEMO_SOURCE
    assert meta["stale"] is False
    assert meta["rows"] == {
        "received": len(DEMO_ROWS),
        "kept": len(DEMO_CLEANED.listings),
        "duplicates": DEMO_CLEANED.duplicates,
        "skipped": DEMO_CLEANED.skipped,
    }
    assert page.get_json()["items"][0]["price_usd"]
    assert report.status_code == 200, report.get_json()
    assert report.get_json()["groups"]


def test_lapak_demo_says_which_feed_is_read(embedded: Flask) -> None:
    with embedded.app_context():
        lines = demo.load_demo()

    assert len(lines) == 1
    assert repr(demo.DEMO_SOURCE) in lines[0]
    assert "LAPAK_FETCH_SOURCES" in lines[0]


# -- a failing source's hint ------------------------------------------------------------------


@pytest.fixture
def feed() -> Iterator[FeedServer]:
    with running(FeedServer()) as server:
        server.routes["/list"] = fail(500)
        server.routes["/slow"] = slow()
        yield server


def failing_app(
    make_app: Callable[..., Flask], config: dict[str, Any], feed: FeedServer, sources: Any
) -> Flask:
    module_env = {**config["module_env"], **fetch_env(feed), "fetch_sources": json.dumps(sources)}
    return make_app(module_env=module_env)


def test_a_failing_source_names_the_setting_to_change_and_no_secret(
    make_app: Callable[..., Flask], config: dict[str, Any], feed: FeedServer
) -> None:
    url = feed.url("/list?token=s3cret-t0ken")
    app = failing_app(make_app, config, feed, {"live": url, "slow": feed.url("/slow")})
    headers = user(app, "customer")

    for source, status in (("live", 502), ("slow", 504)):
        response = app.test_client().get(f"{API}/commodities?source={source}", headers=headers)

        assert response.status_code == status, response.get_json()
        assert response.mimetype == PROBLEM
        detail = response.get_json()["detail"]
        assert f"the source {source!r} is http://127.0.0.1:{feed.port}," in detail
        assert "set LAPAK_FETCH_SOURCES to a feed this server can reach" in detail
        assert """LAPAK_FETCH_SOURCES='{"demo-feed": "demo:"}'""" in detail
        assert "s3cret" not in detail
        assert "/list" not in detail
        assert "/slow" not in detail
    assert feed.hits["/list"] == 1


def test_with_the_demo_feed_configured_the_hint_names_it(
    make_app: Callable[..., Flask], config: dict[str, Any], feed: FeedServer
) -> None:
    app = failing_app(make_app, config, feed, {"live": feed.url("/list"), "offline": "demo:"})

    response = app.test_client().get(
        f"{API}/commodities?source=live", headers=user(app, "customer")
    )

    assert response.status_code == 502, response.get_json()
    assert "or read the bundled demo feed with ?source=offline" in response.get_json()["detail"]


def test_an_adhoc_url_may_not_read_the_demo_feed(
    make_app: Callable[..., Flask], config: dict[str, Any], feed: FeedServer
) -> None:
    app = failing_app(make_app, config, feed, {"live": feed.url("/list"), "offline": "demo:"})

    response = app.test_client().get(
        f"{API}/commodities?source=live&url=demo:", headers=user(app, "customer")
    )

    assert response.status_code == 422, response.get_json()
    assert "url" in response.get_json()["errors"]
