"""The pool pings a connection only when in doubt: the server wrote to it, or it sat idle long."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy import Engine

import app.db
from tests.servers import Services


@pytest.fixture
def primary(app: Flask) -> Engine:
    return app.extensions["lapak.db"].primary


@pytest.fixture
def pings(primary: Engine, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each ping the pool sends, with its outcome (the dialect's own ping, counted)."""
    seen: list[bool] = []
    ping = primary.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        try:
            alive = ping(dbapi_connection)
        except Exception:
            seen.append(False)
            raise
        seen.append(alive)
        return alive

    monkeypatch.setattr(primary.dialect, "do_ping", counted)
    return seen


def backend_pid(primary: Engine) -> int:
    with primary.connect() as connection:
        return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()


def test_a_connection_used_again_at_once_is_not_pinged(primary: Engine, pings: list[bool]) -> None:
    first = backend_pid(primary)
    assert [backend_pid(primary) for _ in range(5)] == [first] * 5
    assert pings == []


def test_a_connection_idle_for_long_is_pinged_and_kept(
    primary: Engine, pings: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = backend_pid(primary)
    monkeypatch.setattr(app.db, "PING_AFTER_IDLE_SECONDS", 0.0)
    assert backend_pid(primary) == first
    assert pings == [True]


def test_a_connection_the_server_ended_while_idle_is_replaced_without_an_error(
    primary: Engine, pings: list[bool], services: Services
) -> None:
    first = backend_pid(primary)
    with psycopg.connect(services.admin_dsn, autocommit=True) as admin:
        ended = admin.execute("SELECT pg_terminate_backend(%s, 5000)", (first,)).fetchone()
    assert ended == (True,)
    replacement = backend_pid(primary)  # no error: the checkout saw the socket had news
    assert replacement != first
    assert pings == [False]
    assert backend_pid(primary) == replacement
    assert pings == [False]
