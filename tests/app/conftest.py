"""Fixtures of the core's tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from app.db import Base


@pytest.fixture(params=["postgresql", "sqlite"])
def either_app(
    request: pytest.FixtureRequest, app: Flask, make_embedded_app: Callable[..., Flask]
) -> Flask:
    """The harness's PostgreSQL app, then an embedded (SQLite) one with the sample notes
    module's tables."""
    if request.param == "postgresql":
        return app
    embedded = make_embedded_app()
    engine = embedded.extensions["lapak.db"].primary
    Base.metadata.create_all(
        engine, tables=[t for n, t in Base.metadata.tables.items() if n.startswith("notes_")]
    )
    return embedded
