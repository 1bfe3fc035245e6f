"""Database failures seen from outside: the primary down, replicas promoted, killed or frozen.

Tests that promote or freeze a replica use one of their own (``extra_replica``), so the shared
replica keeps serving the other tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.test import TestResponse

from app.db import Session, is_unavailable, read_only
from tests.servers import (
    TEST_DATABASE,
    PostgresServer,
    Services,
    free_port,
    start_extra_replica,
)

NOTES = "/api/v1/notes/notes"
#: A hung call fails the test after this long instead of hanging the suite (not a timing claim).
HANG_BOUND_SECONDS = 60


@pytest.fixture
def extra_replica(own_replica: Services) -> Iterator[PostgresServer]:
    replica = start_extra_replica(own_replica, "replica-extra")
    try:
        yield replica
    finally:
        replica.remove()


def titles(response: TestResponse) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [note["title"] for note in response.get_json()["items"]]


def bounded(call: Callable[[], Any]) -> Any:
    """Run ``call`` in a thread; fail (rather than hang) if it has not returned in time."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed to the test below
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_BOUND_SECONDS)
    assert not thread.is_alive(), f"still waiting after {HANG_BOUND_SECONDS}s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def assert_unavailable(response: TestResponse) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0
    assert response.get_json()["type"] == "urn:lapak:problem:database-unavailable"


def test_every_endpoint_answers_503_while_the_primary_is_down_and_recovers(
    make_app: Callable[..., Flask], own_replica: Services, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_app(replica_urls=()).test_client()
    assert client.post(NOTES, json={"title": "before"}).status_code == 201
    login = {"email": "nobody@example.test", "password": "wrong password, long enough"}
    own_replica.primary.stop()
    try:
        assert_unavailable(client.get(NOTES))
        assert_unavailable(client.post(NOTES, json={"title": "during"}))
        assert_unavailable(client.post("/api/v1/auth/login", json=login))
        warned = [r for r in caplog.records if "database unavailable" in r.getMessage()]
        assert len(warned) == 1, [r.getMessage() for r in warned]  # a warning, not one a request
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.get_json()["checks"]["primary"]["ok"] is False
        assert int(ready.headers["Retry-After"]) > 0
    finally:
        own_replica.primary.start()
    assert titles(client.get(NOTES)) == ["before"]
    assert client.post(NOTES, json={"title": "after"}).status_code == 201
    assert client.post("/api/v1/auth/login", json=login).status_code == 401


def test_a_promoted_replica_is_no_longer_trusted(
    make_app: Callable[..., Flask], extra_replica: PostgresServer
) -> None:
    app = make_app(replica_urls=(extra_replica.url(TEST_DATABASE),))
    extra_replica.promote()  # it has left the cluster: it will never see the next write
    app.test_client().post(NOTES, json={"title": "after the promotion"})

    reader = app.test_client()  # no LSN: any replica would do, if it were one
    assert titles(reader.get(NOTES)) == ["after the promotion"]
    ready = reader.get("/health/ready")
    assert ready.status_code == 200
    assert ready.get_json()["status"] == "degraded"
    assert ready.get_json()["checks"]["replica-0"]["ok"] is False
    assert "replica-0" in ready.get_json()["detail"]


def test_a_replica_connection_lost_after_the_read_leaves_the_answer_standing(
    app: Flask, own_replica: Services
) -> None:
    @app.after_request
    def terminate_replica_backends(response: Any) -> Any:
        # After the view has read, before the request's session is cleaned up.
        own_replica.replica.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE application_name = 'lapak-replica'"
        )
        return response

    client = app.test_client()
    for _ in range(3):  # and the next requests get fresh connections
        response = client.get("/api/v1/notes/where")
        assert response.status_code == 200
        assert response.get_json() == {"in_recovery": True}


def test_a_replica_backend_gone_before_the_first_read_leaves_no_connection_stuck(
    app: Flask, own_replica: Services
) -> None:
    # The state query and the view's first statement go in one pipeline: the backend ending
    # under it must neither fail the request nor leave a connection the pool cannot reset.
    engine = app.extensions["lapak.db"].replicas[0].engine
    client = app.test_client()
    assert client.get("/api/v1/notes/where").get_json() == {"in_recovery": True}  # pooled

    def terminate_own_backend(conn: Any, *_: Any) -> None:
        pid = conn.connection.driver_connection.info.backend_pid
        own_replica.replica.execute(f"SELECT pg_terminate_backend({int(pid)}, 5000)")

    event.listen(engine, "before_cursor_execute", terminate_own_backend, once=True)
    response = client.get("/api/v1/notes/where")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"in_recovery": False}  # the primary answered
    assert engine.pool.checkedout() == 0
    for _ in range(3):  # fresh replica connections afterwards
        assert client.get("/api/v1/notes/where").status_code == 200


def test_a_replica_backend_ended_during_the_first_read_leaves_no_connection_stuck(
    app: Flask, own_replica: Services
) -> None:
    engine = app.extensions["lapak.db"].replicas[0].engine
    served_by: list[bool] = []

    @read_only()
    def slow_read() -> None:
        session = Session()
        in_recovery = session.execute(text("SELECT pg_sleep(0.5), pg_is_in_recovery()")).one()[1]
        served_by.append(in_recovery)

    def terminate_soon() -> None:
        time.sleep(0.2)  # while the pipeline (state query, then the sleep) is in flight
        own_replica.replica.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'lapak-replica' AND query LIKE '%pg_sleep%'"
        )

    with app.test_request_context():
        app.preprocess_request()
        terminator = threading.Thread(target=terminate_soon)
        terminator.start()
        try:
            slow_read()
        finally:
            terminator.join(10)
        app.do_teardown_appcontext()
    assert served_by[-1] is False  # ended on the replica, answered by the primary
    assert engine.pool.checkedout() == 0
    with app.test_request_context():
        app.preprocess_request()
        served_by.clear()
        slow_read()  # a fresh replica connection
        app.do_teardown_appcontext()
    assert served_by == [True]


def test_reads_while_replica_backends_are_being_terminated_never_fail(
    app: Flask, own_replica: Services
) -> None:
    stop = threading.Event()

    def terminate_until_stopped() -> None:
        while not stop.wait(0.005):
            own_replica.replica.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'lapak-replica'"
            )

    terminator = threading.Thread(target=terminate_until_stopped, daemon=True)
    terminator.start()
    try:
        client = app.test_client()
        statuses = [client.get("/api/v1/notes/where").status_code for _ in range(150)]
    finally:
        stop.set()
        terminator.join(10)
    assert set(statuses) == {200}


def test_a_hung_replica_is_given_up_on_and_reads_go_to_the_primary(
    make_app: Callable[..., Flask], extra_replica: PostgresServer
) -> None:
    app = make_app(
        replica_urls=(extra_replica.url(TEST_DATABASE),),
        replica_read_timeout=1.0,
        health_check_timeout=1.0,
        replica_retry_seconds=60.0,
    )
    reader = app.test_client()
    assert reader.get("/api/v1/notes/where").get_json() == {"in_recovery": True}  # pooled
    extra_replica.freeze()
    app.test_client().post(NOTES, json={"title": "while frozen"})

    assert bounded(lambda: titles(app.test_client().get(NOTES))) == ["while frozen"]
    ready = bounded(lambda: app.test_client().get("/health/ready"))
    assert ready.status_code == 200
    assert ready.get_json()["status"] == "degraded"
    assert ready.get_json()["checks"]["replica-0"]["ok"] is False


def test_a_replica_frozen_during_a_read_falls_back_to_the_primary(
    make_app: Callable[..., Flask], extra_replica: PostgresServer
) -> None:
    app = make_app(replica_urls=(extra_replica.url(TEST_DATABASE),), replica_read_timeout=1.0)
    app.test_client().post(NOTES, json={"title": "on the primary"})
    replica_engine = app.extensions["lapak.db"].replicas[0].engine

    @event.listens_for(replica_engine, "before_cursor_execute")
    def freeze_before_the_listing(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "notes_note" in statement:  # the replica was chosen; now it stops answering
            extra_replica.freeze()

    assert bounded(lambda: titles(app.test_client().get(NOTES))) == ["on the primary"]


def test_only_connection_failures_count_as_the_database_being_unavailable(
    services: Services, tmp_path: Any
) -> None:
    def error_of(url: str, sql: str) -> Exception:
        engine = create_engine(url, connect_args={"connect_timeout": 2} if "psycopg" in url else {})
        try:
            with engine.connect() as connection:
                connection.execute(text(sql))
        except Exception as error:
            return error
        finally:
            engine.dispose()
        raise AssertionError(f"{sql!r} did not fail")

    refused = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres"
    assert is_unavailable(error_of(refused, "SELECT 1"))
    # OperationalErrors a statement causes are not outages: retrying would not cure them.
    canceled = error_of(services.database_url, "SET statement_timeout = 1; SELECT pg_sleep(1)")
    assert isinstance(canceled, OperationalError)
    assert not is_unavailable(canceled)
    missing = error_of(f"sqlite:///{tmp_path / 'x.db'}", "SELECT * FROM nowhere")
    assert isinstance(missing, OperationalError)
    assert not is_unavailable(missing)

    # Every pooled connection busy past the pool's wait.
    engine = create_engine(services.database_url, pool_size=1, max_overflow=0, pool_timeout=0.1)
    try:
        with engine.connect(), pytest.raises(PoolTimeoutError) as busy:
            engine.connect()
        assert is_unavailable(busy.value)
    finally:
        engine.dispose()
