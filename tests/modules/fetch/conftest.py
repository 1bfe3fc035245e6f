"""Fixtures shared by the fetch tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Extra ``module_env`` for this test (``@with_env(...)``); ``{port}`` is the feed port."""
    return getattr(request, "param", {})
