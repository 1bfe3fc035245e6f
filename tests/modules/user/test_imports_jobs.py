"""Import jobs when things go wrong: dead runners, lost queue entries, failing chunks, races.

In-process (RQ's SimpleWorker through ``run_jobs``, or the embedded threads), on real
PostgreSQL and Redis. A failing chunk is made real with a PostgreSQL trigger on
``user_account``, not a mock. The real ``lapak worker`` kill/resume is in
``test_imports_worker.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from app.db import Session
from modules.user.models import ImportJob
from tests.conftest import run_jobs
from tests.modules.conftest import Caller
from tests.modules.user.test_imports import (
    FINISHED,
    HEADER,
    IMPORTS,
    AppWith,
    all_errors,
    apps_with_settings,
    assert_counts_add_up,
    csv_bytes,
    get_job,
    numbered_rows,
    start_import,
    stored_users,
    user_count,
)
from tests.servers import Services


@pytest.fixture
def app_with(make_app: Callable[..., Flask], config: dict[str, Any]) -> AppWith:
    return apps_with_settings(make_app, config)


def run_watchdog(app: Flask) -> None:
    """Run the user module's periodic import watchdog once, as ``lapak worker`` does."""
    entries = [
        entry
        for entry in app.extensions["lapak.registry"].wiring.periodic
        if entry.func.__module__.startswith("modules.user")
    ]
    assert len(entries) == 1, entries
    with app.app_context():
        entries[0].func()


def set_job(app: Flask, job_id: str, sql_set: str) -> None:
    """Put the job row in a state a dead worker would leave behind."""
    with app.app_context():
        Session.remove()
        session = Session()
        session.execute(
            text(f"UPDATE user_import_job SET {sql_set} WHERE uuid = :uuid"),  # noqa: S608
            {"uuid": job_id},
        )
        session.commit()


def attempts_of(app: Flask, job_id: str) -> int:
    with app.app_context():
        Session.remove()
        return Session().scalar(select(ImportJob.attempts).where(ImportJob.uuid == job_id))


def drive(app: Flask, client: FlaskClient, admin: Caller, job_id: str, stale: float) -> dict:
    """Work the queue; while the job is unfinished, let it go stale and run the watchdog."""
    for _ in range(8):
        run_jobs(app)
        job = get_job(client, admin, job_id)
        if job["status"] in FINISHED:
            return job
        time.sleep(stale + 0.3)
        run_watchdog(app)
    raise AssertionError(f"the import never finished: {job}")


def psql(services: Services, sql: str) -> list[tuple]:
    with psycopg.connect(services.database_url.replace("+psycopg", ""), autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def poison(services: Services) -> Iterator[Callable[[str, bool], None]]:
    """``poison(email_key, once)``: inserting that user raises (only the first time if once)."""

    def install(email_key: str, once: bool) -> None:
        condition = f"NEW.email_key = '{email_key}'"
        if once:
            condition += " AND nextval('lapak_test_poison_seq') = 1"
        psql(services, "CREATE SEQUENCE IF NOT EXISTS lapak_test_poison_seq")
        psql(
            services,
            f"""
            CREATE OR REPLACE FUNCTION lapak_test_poison() RETURNS trigger AS $$
            BEGIN
                IF {condition} THEN
                    RAISE EXCEPTION 'poisoned row %', NEW.email_key;
                END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql
            """,
        )
        psql(
            services,
            "CREATE TRIGGER lapak_test_poison BEFORE INSERT ON user_account "
            "FOR EACH ROW EXECUTE FUNCTION lapak_test_poison()",
        )

    try:
        yield install
    finally:
        psql(services, "DROP TRIGGER IF EXISTS lapak_test_poison ON user_account")
        psql(services, "DROP FUNCTION IF EXISTS lapak_test_poison()")
        psql(services, "DROP SEQUENCE IF EXISTS lapak_test_poison_seq")


# --- the watchdog ----------------------------------------------------------------------------


def test_a_running_job_whose_worker_died_is_requeued_and_finishes(
    app_with: AppWith, admin: Caller
) -> None:
    watched, client = app_with(import_stale_seconds=1)
    job = start_import(client, admin, csv_bytes([HEADER, *numbered_rows(9)]))
    queue = watched.extensions["lapak.jobs"].queue("imports")
    queue.empty()  # the worker took it off the queue, then died
    set_job(watched, job["id"], "status = 'running', attempts = 1, started_at = now() - "
            "interval '1 hour', heartbeat_at = now() - interval '1 hour'")  # fmt: skip
    assert get_job(client, admin, job["id"])["status"] == "running"

    run_watchdog(watched)
    assert queue.count >= 1
    run_jobs(watched)

    done = get_job(client, admin, job["id"])
    assert done["status"] == "succeeded", done
    assert done["created"] == 9
    assert_counts_add_up(done)
    assert attempts_of(watched, job["id"]) == 2


def test_a_running_job_with_a_fresh_heartbeat_is_left_alone(
    app_with: AppWith, admin: Caller
) -> None:
    watched, client = app_with(import_stale_seconds=60)
    job = start_import(client, admin, csv_bytes([HEADER, *numbered_rows(3)]))
    queue = watched.extensions["lapak.jobs"].queue("imports")
    queue.empty()
    set_job(watched, job["id"], "status = 'running', attempts = 1, heartbeat_at = now()")
    run_watchdog(watched)
    assert queue.count == 0
    assert get_job(client, admin, job["id"])["status"] == "running"


def test_a_queued_job_lost_with_redis_is_requeued(
    app_with: AppWith, admin: Caller, services: Services
) -> None:
    """Redis restarted empty: the job row still says queued, and the watchdog queues it again."""
    watched, client = app_with(import_stale_seconds=1)
    job = start_import(client, admin, csv_bytes([HEADER, *numbered_rows(4)]))
    redis.Redis.from_url(services.redis_url).flushdb()
    time.sleep(1.3)
    run_watchdog(watched)
    run_jobs(watched)
    done = get_job(client, admin, job["id"])
    assert done["status"] == "succeeded", done
    assert done["created"] == 4


def test_a_job_past_its_attempts_ends_failed_saying_so(app_with: AppWith, admin: Caller) -> None:
    watched, client = app_with(import_stale_seconds=1, import_max_attempts=2)
    job = start_import(client, admin, csv_bytes([HEADER, *numbered_rows(3)]))
    watched.extensions["lapak.jobs"].queue("imports").empty()
    set_job(watched, job["id"], "status = 'running', attempts = 2, started_at = now() - "
            "interval '1 hour', heartbeat_at = now() - interval '1 hour'")  # fmt: skip
    run_watchdog(watched)
    run_jobs(watched)
    failed = get_job(client, admin, job["id"])
    assert failed["status"] == "failed", failed
    assert "attempt" in failed["error"].lower(), failed["error"]
    assert "2" in failed["error"]
    assert failed["finished_at"] is not None
    assert user_count(watched) == 1


# --- a chunk that fails ----------------------------------------------------------------------


def test_a_failed_chunk_is_retried_and_the_job_resumes_after_the_last_committed_chunk(
    app_with: AppWith, admin: Caller, services: Services, poison: Callable[[str, bool], None]
) -> None:
    watched, client = app_with(import_stale_seconds=1, import_chunk_rows=3)
    poison("user.5@example.test", True)  # row 8, in the third chunk: it fails once
    rows = numbered_rows(12)
    rows.insert(1, ["not-an-email", "", "", ""])  # row 3, first chunk
    rows.append(["USER.0@example.test", "", "", ""])  # row 15: found again after the resume
    job = start_import(client, admin, csv_bytes([HEADER, *rows]))
    done = drive(watched, client, admin, job["id"], stale=1)
    assert psql(services, "SELECT last_value FROM lapak_test_poison_seq")[0][0] >= 1
    assert done["status"] == "succeeded_with_errors", done
    assert (done["total_rows"], done["created"], done["failed"]) == (14, 12, 2)
    assert_counts_add_up(done)
    assert attempts_of(watched, job["id"]) == 2
    # Each error once: the chunks committed before the failure were not validated again.
    assert sorted((e["row"], e["message"]) for e in all_errors(client, admin, job["id"])) == [
        (3, "is not a valid email address"),
        (15, "duplicates row 2"),
    ]
    assert set(stored_users(watched)) >= {f"user.{i}@example.test" for i in range(12)}
    assert user_count(watched) == 1 + 12


def test_a_job_that_keeps_failing_ends_failed_and_keeps_its_committed_chunks(
    app_with: AppWith, admin: Caller, poison: Callable[[str, bool], None]
) -> None:
    watched, client = app_with(import_stale_seconds=1, import_chunk_rows=3, import_max_attempts=3)
    poison("user.6@example.test", False)
    job = start_import(client, admin, csv_bytes([HEADER, *numbered_rows(12)]))
    failed = drive(watched, client, admin, job["id"], stale=1)
    assert failed["status"] == "failed", failed
    assert "3 attempts" in failed["error"], failed["error"]
    # The first two chunks committed with their progress; the third never did.
    assert (failed["processed_rows"], failed["created"]) == (6, 6)
    assert user_count(watched) == 1 + 6
    assert attempts_of(watched, job["id"]) == 3


# --- races -----------------------------------------------------------------------------------


def run_queued_imports_in_parallel(app: Flask) -> None:
    """Take every queued import off the queue and run them at once, one thread each."""
    queue = app.extensions["lapak.jobs"].queue("imports")
    calls = [(job.func, job.args) for job in queue.jobs]
    queue.empty()
    barrier = threading.Barrier(len(calls))
    raised: list[BaseException] = []

    def run(func: Callable[..., Any], args: tuple[Any, ...]) -> None:
        with app.app_context():
            try:
                barrier.wait(30)
                func(*args)
            except BaseException as error:
                raised.append(error)
            finally:
                Session.remove()

    threads = [threading.Thread(target=run, args=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not any(thread.is_alive() for thread in threads)
    assert raised == []
    run_jobs(app)  # anything they queued (events, a retry)


@pytest.mark.parametrize("mode", ["create", "upsert"])
def test_concurrent_overlapping_imports_leave_one_user_per_email(
    app_with: AppWith, admin: Caller, mode: str
) -> None:
    app, client = app_with(import_chunk_rows=200)
    first = start_import(client, admin, csv_bytes([HEADER, *numbered_rows(4000)]), mode=mode)
    # The same first 2000 emails in the same order (the jobs meet on every chunk), then others.
    overlapping = [*numbered_rows(2000), *numbered_rows(2000, start=4000)]
    second = start_import(client, admin, csv_bytes([HEADER, *overlapping]), mode=mode)
    run_queued_imports_in_parallel(app)
    jobs = [get_job(client, admin, job["id"]) for job in (first, second)]
    for job in jobs:
        assert job["status"] in ("succeeded", "succeeded_with_errors"), job
        assert job["error"] is None, job
        assert job["skipped"] >= 0, job
        assert_counts_add_up(job)
    assert sum(job["created"] for job in jobs) == 6000
    assert user_count(app) == 1 + 6000
    if mode == "create":
        assert sum(job["failed"] for job in jobs) == 2000
        for job in jobs:
            messages = {e["message"] for e in all_errors(client, admin, job["id"], limit=200)}
            assert messages <= {"a user with this email already exists"}, messages
    else:
        assert sum(job["failed"] for job in jobs) == 0
        assert sum(job["updated"] + job["skipped"] for job in jobs) == 2000


def renamed_rows(count: int, name: str) -> list[list[str]]:
    return [[f"user.{i}@example.test", f"{name} {i}", "customer", ""] for i in range(count)]


def test_concurrent_upserts_of_the_same_rows_count_every_row_once(
    app_with: AppWith, admin: Caller
) -> None:
    """Both jobs meet on every chunk: one inserts a new email, the other must then update it."""
    app, client = app_with(import_chunk_rows=200)
    every_fourth = renamed_rows(4000, "Old")[::4]
    seeded = start_import(client, admin, csv_bytes([HEADER, *every_fourth]))
    run_jobs(app)
    assert get_job(client, admin, seeded["id"])["created"] == 1000
    first = start_import(client, admin, csv_bytes([HEADER, *renamed_rows(4000, "A")]),
                         mode="upsert")  # fmt: skip
    second = start_import(client, admin, csv_bytes([HEADER, *renamed_rows(4000, "B")]),
                          mode="upsert")  # fmt: skip
    run_queued_imports_in_parallel(app)
    jobs = [get_job(client, admin, job["id"]) for job in (first, second)]
    for job in jobs:
        assert job["failed"] == 0, job
        assert job["skipped"] >= 0, job
        assert_counts_add_up(job)
    assert sum(job["created"] for job in jobs) == 3000
    assert user_count(app) == 1 + 4000
    names = {user["name"].split()[0] for user in stored_users(app).values()}
    assert names <= {"A", "B", "Test"}


@pytest.mark.slow
def test_cancelling_a_running_import_stops_it_after_the_current_chunk(
    app_with: AppWith, admin: Caller
) -> None:
    threaded, client = app_with({"redis_url": None}, import_chunk_rows=200)
    job = start_import(client, admin, csv_bytes([HEADER, *numbered_rows(40_000)]))
    deadline = time.monotonic() + 60
    while True:
        seen = get_job(client, admin, job["id"])
        if seen["processed_rows"] > 0 or seen["status"] in FINISHED:
            break
        assert time.monotonic() < deadline, seen
        time.sleep(0.01)
    response = client.post(f"{IMPORTS}/{job['id']}/cancel", headers=admin.headers)
    assert response.status_code == 200, (
        "the import finished before it could be cancelled; make the file bigger",
        response.get_data(as_text=True),
    )
    at_cancel = response.get_json()
    assert at_cancel["status"] == "cancelled"
    threaded.extensions["lapak.jobs"].wait_embedded()
    final = get_job(client, admin, job["id"])
    assert final["status"] == "cancelled"
    assert 0 < final["processed_rows"] < final["total_rows"]
    assert final["processed_rows"] == at_cancel["processed_rows"]
    assert final["created"] == final["processed_rows"]
    assert user_count(threaded) == 1 + final["created"]


def test_import_settings_are_validated(
    make_app: Callable[..., Flask], config: dict[str, Any]
) -> None:
    from app.config import SettingsError

    with pytest.raises(SettingsError, match="IMPORT_CHUNK_ROWS"):
        make_app(module_env={**config["module_env"], "import_chunk_rows": "lots"})
