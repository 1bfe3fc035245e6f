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
