"""The batched writer: requests never wait for it nor fail with it; a short outage loses no row
within the backlog bound, rows beyond it are dropped and counted; forked workers write their own."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text

from app import clock
from app.jobs import enqueue, make_worker
from modules.audit.models import AuditEvent, RequestLog
from modules.audit.writer import FIRST_RETRY_SECONDS, LAST_RETRY_SECONDS
from tests.modules.audit.conftest import (
    clear_logs,
    event_rows,
    request_row,
    request_rows,
    writer_of,
)
from tests.sample_modules.notes.services import audit_note_job
from tests.servers import Services


def test_rows_wait_out_an_outage_within_the_backlog_and_beyond_it_are_dropped_and_counted(
    make_app: Callable[..., Flask], config: dict[str, Any], own_replica: Services
) -> None:
    settings = {"audit_backlog_rows": "50", "audit_batch_rows": "10", "audit_flush_ms": "50"}
    app = make_app(replica_urls=(), module_env={**config["module_env"], **settings})
    client = app.test_client()
    clear_logs(app)
    writer = writer_of(app)

    own_replica.primary.stop()
    try:
        # /api/v1/modules needs no database: it keeps answering, and each answer is logged.
        statuses = [
            client.get("/api/v1/modules", headers={"X-Request-ID": f"o{n}"}).status_code
            for n in range(40)
        ]
        assert writer.flush() == 0  # the database is down: nothing written, nothing lost
        assert (writer.waiting, writer.dropped) == (40, 0)
        for _ in range(6):  # each failed try doubles the pause before the next, up to a bound
            before = writer.retry_seconds
            assert writer.flush() == 0
            assert before <= writer.retry_seconds <= LAST_RETRY_SECONDS
        assert writer.retry_seconds == LAST_RETRY_SECONDS
        statuses += [
            client.get("/api/v1/modules", headers={"X-Request-ID": f"o{n}"}).status_code
            for n in range(40, 55)
        ]
        assert (writer.waiting, writer.dropped) == (50, 5)
        assert writer.figures()["failing"]
    finally:
        own_replica.primary.start()
    assert statuses == [200] * 55

    deadline = time.monotonic() + 60
    while writer.waiting and time.monotonic() < deadline:
        writer.flush()  # the pool's dead connections are discarded on the first try
        time.sleep(0.1)
    rows = request_rows(app)
    assert sorted(row["request_id"] for row in rows) == sorted(f"o{n}" for n in range(50))
    assert writer.figures() == {
        "waiting": 0,
        "written": 50,
        "dropped": 5,
        "failing": False,
        "backlog_limit": 50,
    }
    assert writer.retry_seconds == FIRST_RETRY_SECONDS  # back to its normal pace


def test_the_background_thread_writes_without_being_asked(
    make_app: Callable[..., Flask], config: dict[str, Any]
) -> None:
    settings = {"audit_flush_ms": "20"}
    app = make_app(module_env={**config["module_env"], **settings})
    clear_logs(app)

    app.test_client().get("/api/v1/modules")

    deadline = time.monotonic() + 30
    while not request_rows(app) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [row["route"] for row in request_rows(app)] == ["/api/v1/modules"]


def test_a_forked_worker_writes_its_own_rows_and_not_its_parents(
    make_app: Callable[..., Flask], config: dict[str, Any]
) -> None:
    # The parent's thread writes only when asked here (a flush every ten minutes).
    app = make_app(module_env={**config["module_env"], "audit_flush_ms": "600000"})
    clear_logs(app)
    client = app.test_client()
    client.get("/api/v1/modules", headers={"X-Request-ID": "parent"})  # waits in the parent

    child = os.fork()
    if child == 0:  # gunicorn's worker: the app was built before the fork
        code = 1
        try:
            if writer_of(app).figures()["waiting"] != 0:  # the parent's row is not the child's
                os._exit(2)
            client.get("/api/v1/modules", headers={"X-Request-ID": "child"})
            writer_of(app).close()  # as at the worker's exit
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [row["request_id"] for row in request_rows(app)] == ["child"]

    writer_of(app).flush()
    assert sorted(row["request_id"] for row in request_rows(app)) == ["child", "parent"]


def test_what_a_job_audits_in_rqs_work_horse_is_written_before_the_horse_exits(
    app: Flask,
) -> None:
    clear_logs(app)
    with app.app_context():
        enqueue(audit_note_job, "in a work horse")

    # RQ's forking worker: the horse ends with os._exit, which runs no atexit handler.
    make_worker(app, ("default",), fork=True).work(burst=True, with_scheduler=False)

    assert [(e["event"], e["fields"]) for e in event_rows(app)] == [
        ("notes.audited", {"title": "in a work horse"})
    ]


@pytest.fixture(params=["postgresql", "sqlite"])
def quiet_app(
    request: pytest.FixtureRequest,
    make_app: Callable[..., Flask],
    make_embedded_app: Callable[..., Flask],
    config: dict[str, Any],
) -> Flask:
    """An app whose thread writes only when asked (a flush every ten minutes)."""
    module_env = {**config["module_env"], "audit_flush_ms": "600000"}
    if request.param == "postgresql":
        return make_app(module_env=module_env)
    return make_embedded_app(module_env=module_env)


def test_rows_the_database_refuses_are_dropped_alone_not_their_batch(quiet_app: Flask) -> None:
    app = quiet_app
    clear_logs(app)
    writer = writer_of(app)
    now = clock.now()
    requests, events = RequestLog.__table__, AuditEvent.__table__
    for number in range(20):
        row = request_row(now, status=200 + number)
        if number in (3, 17):
            row["route"] = None  # NOT NULL: refused by the database
        writer.add(requests, row)
        event = {"at": now, "event": f"e{number}", "outcome": "success", "fields": {}}
        writer.add(events, event)

    assert writer.flush() == 38

    assert sorted(row["status"] for row in request_rows(app)) == [
        200 + number for number in range(20) if number not in (3, 17)
    ]
    assert len(event_rows(app)) == 20
    figures = writer.figures()
    assert (figures["waiting"], figures["written"], figures["dropped"]) == (0, 38, 2)
    assert figures["failing"] is False


def test_closing_never_hangs_and_counts_what_it_could_not_write(quiet_app: Flask) -> None:
    app = quiet_app
    clear_logs(app)
    writer = writer_of(app)
    for number in range(3):
        writer.add(RequestLog.__table__, request_row(clock.now(), status=200 + number))

    flushing = threading.Event()
    release = threading.Event()

    def stuck_flush() -> None:  # a flush that does not end (a database that hangs)
        with writer._flush_lock:
            flushing.set()
            release.wait()

    holder = threading.Thread(target=stuck_flush)
    holder.start()
    flushing.wait()
    try:
        writer.close(timeout=0.2)
    finally:
        release.set()
        holder.join()

    assert (writer.waiting, writer.dropped, writer.written) == (0, 3, 0)
    writer.add(RequestLog.__table__, request_row(clock.now()))  # after close: dropped, counted
    assert (writer.waiting, writer.dropped) == (0, 4)
    assert request_rows(app) == []


def test_a_missing_table_drops_its_rows_and_the_other_tables_are_written(
    make_embedded_app: Callable[..., Flask], config: dict[str, Any]
) -> None:
    app = make_embedded_app(module_env={**config["module_env"], "audit_flush_ms": "600000"})
    clear_logs(app)
    writer = writer_of(app)
    with app.extensions["lapak.db"].primary.begin() as connection:
        connection.execute(text("DROP TABLE audit_event"))  # as on a database not migrated
    now = clock.now()
    for number in range(5):
        writer.add(RequestLog.__table__, request_row(now, status=200 + number))
        event = {"at": now, "event": f"e{number}", "outcome": "success", "fields": {}}
        writer.add(AuditEvent.__table__, event)

    assert writer.flush() == 5

    assert len(request_rows(app)) == 5
    assert (writer.waiting, writer.dropped) == (0, 5)
