"""Read/write routing against a real primary and streaming replica, and the transaction helper."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select, text

from app.db import LSN_HEADER, ReadOnlyViolation, Session, after_commit, read_only, transaction
from tests.conftest import wait_for_replica
from tests.sample_modules.notes.models import Note
from tests.servers import Services, free_port


def in_recovery() -> bool:
    return Session().execute(text("SELECT pg_is_in_recovery()")).scalar()


def test_reads_inside_read_only_are_served_by_the_replica(app: Flask) -> None:
    with app.app_context():
        assert in_recovery() is False
        with read_only():
            assert in_recovery() is True
        Session.remove()
        assert in_recovery() is False


def test_read_only_as_a_decorator_keeps_its_arguments(app: Flask, services: Services) -> None:
    with app.app_context():
        database = app.extensions["lapak.db"]
        replayed = database.primary_lsn()
        wait_for_replica(services)
        beyond = replayed + 10**9  # a position no replica has replayed

        assert read_only()(in_recovery)() is True
        Session.remove()
        assert read_only(use_replica=False)(in_recovery)() is False
        Session.remove()
        assert read_only(min_lsn=beyond)(in_recovery)() is False
        Session.remove()
        with read_only(min_lsn=replayed):  # the replica has it: it serves the reads
            assert in_recovery() is True


@contextmanager
def replica_checkouts(app: Flask) -> Iterator[list[int]]:
    """The backend pid of every connection checked out of the replica's pool in the block."""
    engine = app.extensions["lapak.db"].replicas[0].engine
    pids: list[int] = []

    def checkout(dbapi_connection: Any, *_: Any) -> None:
        pids.append(dbapi_connection.info.backend_pid)

    event.listen(engine, "checkout", checkout)
    try:
        yield pids
    finally:
        event.remove(engine, "checkout", checkout)


def test_the_replica_is_chosen_on_the_connection_its_reads_then_use(app: Flask) -> None:
    engine = app.extensions["lapak.db"].replicas[0].engine
    statements: list[tuple[int, str]] = []

    def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements.append((conn.connection.driver_connection.info.backend_pid, statement))

    with app.app_context(), read_only():  # the engine's first connection: it learns the isolation
        assert in_recovery() is True
    event.listen(engine, "before_cursor_execute", before)
    try:
        with app.app_context(), replica_checkouts(app) as checkouts:
            with read_only() as session:
                pid, own_transaction = session.execute(
                    text("SELECT pg_backend_pid(), transaction_timestamp() = statement_timestamp()")
                ).one()
                assert in_recovery() is True
            Session.remove()
    finally:
        event.remove(engine, "before_cursor_execute", before)
    # One checkout: the state query first, then the reads, on that one backend ...
    assert checkouts == [pid]
    assert [p for p, _ in statements] == [pid, pid, pid]
    assert "pg_is_in_recovery(), pg_last_wal_replay_lsn()" in statements[0][1]
    # ... each read a statement of its own (autocommit: no BEGIN, no ROLLBACK round trips).
    assert own_transaction is True


def test_a_session_already_reading_the_primary_still_reads_the_replica(app: Flask) -> None:
    with app.app_context():
        assert in_recovery() is False  # the session's transaction is on the primary
        with replica_checkouts(app) as checkouts, read_only():
            assert in_recovery() is True
        assert in_recovery() is False
        Session.remove()
    assert len(checkouts) == 2  # the choice's own, and the read's


def test_a_replica_behind_the_client_gives_back_the_connection_it_was_asked_on(
    app: Flask, paused_replica: object
) -> None:
    engine = app.extensions["lapak.db"].replicas[0].engine
    client = app.test_client()
    lsn = client.post("/api/v1/notes/notes", json={"title": "ahead"}).headers[LSN_HEADER]
    with app.test_request_context(headers={LSN_HEADER: lsn}):
        app.preprocess_request()
        with replica_checkouts(app) as checkouts, read_only() as session:
            assert in_recovery() is False  # the primary, which has the write
            assert engine.pool.checkedout() == 0  # the replica's connection is back
            assert session.scalar(select(func.count()).select_from(Note)) == 1
        Session.remove()
    assert len(checkouts) == 1


def test_a_read_only_view_asks_the_replica_on_the_connection_it_reads_with(app: Flask) -> None:
    engine = app.extensions["lapak.db"].replicas[0].engine
    client = app.test_client()
    assert client.get("/api/v1/notes/where").get_json() == {"in_recovery": True}  # warm
    statements: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        with replica_checkouts(app) as checkouts:
            assert client.get("/api/v1/notes/where").get_json() == {"in_recovery": True}
    finally:
        event.remove(engine, "before_cursor_execute", before)
    # One checkout, in autocommit: the state, then the view's statement; no BEGIN, no ROLLBACK.
    assert len(checkouts) == 1
    assert len(statements) == 2
    assert "pg_last_wal_replay_lsn()" in statements[0]
    assert statements[1] == "SELECT pg_is_in_recovery()"
    assert engine.pool.checkedout() == 0


def test_a_read_only_view_on_a_replica_behind_the_client_runs_on_the_primary(
    app: Flask, paused_replica: object
) -> None:
    engine = app.extensions["lapak.db"].replicas[0].engine
    writer = app.test_client()
    assert writer.post("/api/v1/notes/notes", json={"title": "mine"}).status_code == 201
    with replica_checkouts(app) as checkouts:
        listed = writer.get("/api/v1/notes/notes")  # its lapak_lsn cookie: the replica lags
    assert [n["title"] for n in listed.get_json()["items"]] == ["mine"]
    assert engine.pool.checkedout() == 0
    assert len(checkouts) == 1  # asked, refused, given back
    stranger = app.test_client()
    assert stranger.get("/api/v1/notes/where").get_json() == {"in_recovery": True}


def test_read_only_endpoint_reads_from_the_replica(client: FlaskClient) -> None:
    assert client.get("/api/v1/notes/where").get_json() == {"in_recovery": True}


def test_write_inside_read_only_is_refused(app: Flask) -> None:
    with app.app_context(), read_only() as session:
        session.add(Note(title="nope"))
        with pytest.raises(ReadOnlyViolation):
            session.flush()
    with app.app_context(), read_only(), pytest.raises(ReadOnlyViolation), transaction():
        pass


def test_transaction_commits_at_the_outermost_block_and_rolls_back_on_error(app: Flask) -> None:
    with app.app_context():
        with transaction() as session:
            session.add(Note(title="kept"))
            with transaction():
                session.add(Note(title="inner"))
            assert session.in_transaction()  # the inner block did not commit
        with pytest.raises(ZeroDivisionError), transaction() as session:
            session.add(Note(title="lost"))
            session.flush()
            _ = 1 / 0
        Session.remove()
        titles = set(Session().scalars(select(Note.title)))
    assert titles == {"kept", "inner"}


def test_after_commit_runs_only_when_the_transaction_commits(app: Flask) -> None:
    calls: list[str] = []
    with app.app_context():
        with pytest.raises(RuntimeError), transaction():
            after_commit(lambda: calls.append("rolled back"))
            raise RuntimeError
        with transaction():
            after_commit(lambda: calls.append("committed"))
    assert calls == ["committed"]


def test_a_client_reads_its_own_write_while_the_replica_lags(
    app: Flask, paused_replica: object
) -> None:
    writer = app.test_client()
    created = writer.post("/api/v1/notes/notes", json={"title": "fresh"})
    assert created.status_code == 201
    assert created.headers[LSN_HEADER]

    # The writer (its cookie carries the LSN) is sent to the primary and sees its note ...
    assert [n["title"] for n in writer.get("/api/v1/notes/notes").get_json()["items"]] == ["fresh"]
    # ... and so is any client that sends the LSN header it was given.
    other = app.test_client()
    echoed = other.get("/api/v1/notes/notes", headers={LSN_HEADER: created.headers[LSN_HEADER]})
    assert [n["title"] for n in echoed.get_json()["items"]] == ["fresh"]
    # A client that has not seen the write still reads the (paused, stale) replica.
    stranger = app.test_client()
    assert stranger.get("/api/v1/notes/notes").get_json()["items"] == []
    assert stranger.get("/api/v1/notes/where").get_json() == {"in_recovery": True}


def test_the_replica_serves_the_write_once_it_has_replayed_it(app: Flask, services: object) -> None:
    writer = app.test_client()
    writer.post("/api/v1/notes/notes", json={"title": "replayed"})
    wait_for_replica(services)
    assert writer.get("/api/v1/notes/where").get_json() == {"in_recovery": True}
    assert [n["title"] for n in writer.get("/api/v1/notes/notes").get_json()["items"]] == [
        "replayed"
    ]


def test_reads_fall_back_to_the_primary_when_the_replica_is_down(
    app: Flask, stopped_replica: object
) -> None:
    client = app.test_client()
    client.post("/api/v1/notes/notes", json={"title": "still readable"})
    fresh = app.test_client()
    listed = fresh.get("/api/v1/notes/notes")
    assert listed.status_code == 200
    assert [n["title"] for n in listed.get_json()["items"]] == ["still readable"]
    assert fresh.get("/api/v1/notes/where").get_json() == {"in_recovery": False}

    # Reads still work, so the service is ready, but degraded, naming the replica.
    ready = fresh.get("/health/ready")
    assert ready.status_code == 200
    body = ready.get_json()
    assert body["status"] == "degraded"
    assert body["checks"]["replica-0"] == {"ok": False, "error": "unreachable"}
    assert body["checks"]["primary"]["ok"] is True
    assert "replica-0" in body["detail"]
    assert "127.0.0.1" not in ready.get_data(as_text=True)  # anyone may ask: no hosts or ports


def test_readiness_reports_every_dependency(client: FlaskClient) -> None:
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert set(ready.get_json()["checks"]) == {"primary", "replica-0", "redis"}
    assert all(check["ok"] for check in ready.get_json()["checks"].values())


def test_readiness_shows_how_far_each_replica_is_behind(app: Flask, paused_replica: object) -> None:
    client = app.test_client()
    caught_up = client.get("/health/ready").get_json()["checks"]["replica-0"]
    assert caught_up["lag_bytes"] >= 0
    assert caught_up["lag_seconds"] >= 0
    client.post("/api/v1/notes/notes", json={"title": "not replayed yet"})
    behind = client.get("/health/ready")
    assert behind.status_code == 200
    assert behind.get_json()["status"] == "ok"  # a lagging replica still serves caught-up reads
    assert behind.get_json()["checks"]["replica-0"]["lag_bytes"] > 0
    assert behind.get_json()["checks"]["replica-0"]["lag_seconds"] >= 0


def test_readiness_fails_when_redis_is_unreachable(make_app: Callable[..., Flask]) -> None:
    port = free_port()
    ready = make_app(redis_url=f"redis://127.0.0.1:{port}/0").test_client().get("/health/ready")
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["redis"] == {"ok": False, "error": "unreachable"}
    assert str(port) not in ready.get_data(as_text=True)  # anyone may ask: no hosts or ports


def test_the_same_code_runs_on_sqlite_without_replicas(tmp_path: object) -> None:
    from app import create_app
    from app.db import Base
    from app.migrate import upgrade

    app = create_app(
        {
            "env": "test",
            "instance_path": tmp_path,
            "secret_key": "s" * 48,
            "module_packages": ("modules", "tests.sample_modules"),
        }
    )
    settings = app.extensions["lapak.settings"]
    upgrade(settings)
    engine = app.extensions["lapak.db"].primary
    Base.metadata.create_all(
        engine, tables=[t for n, t in Base.metadata.tables.items() if n.startswith("notes_")]
    )
    client = app.test_client()
    assert client.post("/api/v1/notes/notes", json={"title": "local"}).status_code == 201
    listed = client.get("/api/v1/notes/notes")
    assert LSN_HEADER not in listed.headers
    assert [n["title"] for n in listed.get_json()["items"]] == ["local"]
    with app.app_context():
        assert Session().scalar(select(func.count()).select_from(Note)) == 1
    app.extensions["lapak.jobs"].wait_embedded()


def test_a_replica_failing_mid_read_is_skipped_and_the_read_retried_on_the_primary(
    client: FlaskClient,
) -> None:
    response = client.get("/api/v1/notes/flaky")
    assert response.status_code == 200
    assert response.get_json() == {"served_by": "primary"}


def _replica_statements(engine: Any) -> Any:
    statements: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    return statements, lambda: event.remove(engine, "before_cursor_execute", before)


def test_a_replicas_state_is_trusted_for_a_while_by_reads_that_need_no_newer_position(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(replica_trust_seconds=30.0)
    engine = app.extensions["lapak.db"].replicas[0].engine
    client = app.test_client()
    assert client.get("/api/v1/notes/where").get_json() == {"in_recovery": True}  # asks
    statements, stop = _replica_statements(engine)
    try:
        for _ in range(3):
            assert client.get("/api/v1/notes/where").get_json() == {"in_recovery": True}
    finally:
        stop()
    # No state query: the reads only, each in autocommit on the replica (no BEGIN/ROLLBACK).
    assert statements == ["SELECT pg_is_in_recovery()"] * 3
    assert engine.pool.checkedout() == 0


def test_a_read_after_a_write_asks_the_trusted_replica_again(
    make_app: Callable[..., Flask], paused_replica: object
) -> None:
    app = make_app(replica_trust_seconds=30.0)
    engine = app.extensions["lapak.db"].replicas[0].engine
    reader, writer = app.test_client(), app.test_client()
    assert reader.get("/api/v1/notes/where").get_json() == {"in_recovery": True}  # trusted now
    lsn = writer.post("/api/v1/notes/notes", json={"title": "ahead"}).headers[LSN_HEADER]
    statements, stop = _replica_statements(engine)
    try:
        # The write is newer than what the replica said it had replayed: it is asked, is
        # behind (paused), and the read goes to the primary, which has the write.
        answer = writer.get("/api/v1/notes/where", headers={LSN_HEADER: lsn})
    finally:
        stop()
    assert answer.get_json() == {"in_recovery": False}
    assert len(statements) == 1
    assert "pg_last_wal_replay_lsn()" in statements[0]


def test_a_replica_marked_down_is_trusted_no_more(make_app: Callable[..., Flask]) -> None:
    app = make_app(replica_trust_seconds=30.0, replica_retry_seconds=30.0)
    database = app.extensions["lapak.db"]
    replica = database.replicas[0]
    with app.app_context():
        assert database.choose_replica(None) is replica
        assert replica.trusted_until > 0
        database.mark_down(replica, RuntimeError("gone"))
        assert replica.trusted_until == 0.0
        assert database.choose_replica(None) is None  # skipped for its retry time
