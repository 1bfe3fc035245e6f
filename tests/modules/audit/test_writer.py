"""The batched writer: requests never wait for it nor fail with it; a short outage loses no row
within the backlog bound, rows beyond it are dropped and counted; forked workers write their own."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from flask import Flask

from app.jobs import enqueue, make_worker
from tests.modules.audit.conftest import clear_logs, event_rows, request_rows, writer_of
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
        "backlog_rows": 50,
    }


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
