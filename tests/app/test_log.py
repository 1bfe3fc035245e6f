"""WarningsEvery: a warning that every request would give is logged once per interval."""

from __future__ import annotations

import logging
import math

import pytest

from app.log import WarningsEvery

log = logging.getLogger("tests.warnings_every")


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == log.name]


def test_each_kind_is_logged_once_within_the_interval(caplog: pytest.LogCaptureFixture) -> None:
    warnings = WarningsEvery(log, math.inf)

    for _ in range(3):
        warnings.warn("redis", "Redis unavailable: %s", "caches skipped")
        warnings.warn("database", "database unavailable")

    assert messages(caplog) == ["Redis unavailable: caches skipped", "database unavailable"]


def test_after_forget_the_next_warning_is_logged_again(caplog: pytest.LogCaptureFixture) -> None:
    warnings = WarningsEvery(log, math.inf)
    warnings.warn("redis", "down")
    warnings.warn("redis", "down")

    warnings.forget()
    warnings.warn("redis", "down again")

    assert messages(caplog) == ["down", "down again"]


def test_a_warning_after_held_back_ones_says_how_many(caplog: pytest.LogCaptureFixture) -> None:
    warnings = WarningsEvery(log, 0.0)  # no interval: every warning is logged
    warnings.warn("redis", "down")

    assert messages(caplog) == ["down"]
    warnings.seconds = math.inf
    warnings.warn("redis", "held back")
    warnings.warn("redis", "held back")
    warnings.seconds = 0.0
    warnings.warn("redis", "down %s", "still")

    assert messages(caplog) == ["down", "down still (2 more since the last warning)"]


def test_a_hidden_prefix_is_masked_whatever_matched() -> None:
    from app.log import HiddenPaths, masked_path

    hidden = [HiddenPaths("/pay/", "/pay/<token>", ("/pay/demo/",))]
    token = "s3cr3t-token-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    assert masked_path(f"/pay/{token}", "/pay/<token>/", hidden) == "/pay/<token>/"
    assert masked_path(f"/pay/{token}/x/y", None, hidden) == "/pay/<token>"
    assert masked_path(f"//pay//{token}", None, hidden) == "/pay/<token>"  # merged by routing
    assert masked_path(f"/PAY/{token}", None, hidden) == "/pay/<token>"
    assert masked_path("/pay/demo/1234", "/pay/demo/<uuid:tx_id>", hidden) == "/pay/demo/1234"
    assert masked_path("/api/v1/orders", None, hidden) == "/api/v1/orders"


def test_the_development_servers_request_lines_hide_the_paths(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``lapak serve --dev`` (werkzeug) logs each request line as the client sent it."""
    from flask import Flask

    from app.log import hide_paths

    hide_paths(Flask("masked"), "/pay/", "/pay/<token>", keep=("/pay/demo/",))
    token = "s3cr3t-token-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
    werkzeug = logging.getLogger("werkzeug")
    caplog.set_level(logging.INFO, logger="werkzeug")
    # As werkzeug's WSGIRequestHandler.log_request writes it (the line may be coloured).
    werkzeug.info('"%s" %s %s', f"\x1b[33mGET /pay/{token}/status?x={token} HTTP/1.1\x1b[0m",
                  "200", "-")  # fmt: skip
    werkzeug.info('"%s" %s %s', "GET /pay/demo/0f2c HTTP/1.1", "200", "-")
    werkzeug.info(f"127.0.0.1 - - GET /pay/{token} HTTP/1.1")

    assert token not in caplog.text
    assert "GET /pay/<token> HTTP/1.1" in caplog.text
    assert "GET /pay/demo/0f2c HTTP/1.1" in caplog.text
