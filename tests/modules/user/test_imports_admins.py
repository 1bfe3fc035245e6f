"""Upsert imports obey the API's admin rules: the last active admin stays, and so does the role of
the admin running the import, also when imports and demotions run at the same time.

Real PostgreSQL and Redis: jobs go through the RQ ``imports`` queue or run in threads at
once; a competing API demotion is a second PostgreSQL connection that locks the
admins as ``services.update_user`` does.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.db import Session
from modules.user.imports import ImportOptions, create_import, get_import
from modules.user.services import create_user
from tests.modules.conftest import PASSWORD, Caller, login
from tests.modules.user.test_imports import (
    AppWith,
    all_errors,
    apps_with_settings,
    assert_counts_add_up,
    csv_bytes,
    get_job,
    run_import,
    start_import,
    stored_users,
)
from tests.modules.user.test_imports_jobs import run_queued_imports_in_parallel
from tests.servers import Services

MakeUser = Callable[..., Any]
LAST_ADMIN = "would leave no active admin; make another user admin first"


@pytest.fixture
def app_with(make_app: Callable[..., Flask], config: dict[str, Any]) -> AppWith:
    return apps_with_settings(make_app, config)


def active_admins(app: Flask) -> set[str]:
    return {
        key for key, user in stored_users(app).items() if user["role"] == "admin" and user["active"]
    }


def codes(client: FlaskClient, admin: Caller, job_id: str) -> set[tuple[int, str | None, str]]:
    return {(e["row"], e["column"], e["code"]) for e in all_errors(client, admin, job_id)}


def queue_unattended_import(app: Flask, content: bytes, mode: str = "upsert") -> Any:
    """An import queued with no admin behind it (as ``lapak users import`` runs them)."""
    with app.app_context():
        job = create_import(io.BytesIO(content), "admins.csv", ImportOptions(mode=mode), None)
        Session.remove()
        return job.uuid


def finished_job(app: Flask, job_uuid: Any) -> Any:
    with app.app_context():
        Session.remove()
        job = get_import(job_uuid)
        Session.remove()
        return job


def test_an_upsert_demoting_both_admins_applies_the_first_and_refuses_the_last(
    app: Flask, client: FlaskClient, admin: Caller, make_user: MakeUser
) -> None:
    make_user("kedua@example.test", role="admin")
    make_user("pelanggan@example.test", role="customer", name="Lama")
    rows = [
        ["email", "name", "role"],
        ["kedua@example.test", "", "customer"],  # 2: another admin remains -> applied
        [admin.email, "", "staff"],  # 3: the last active admin -> refused
        ["pelanggan@example.test", "Baru", ""],  # 4: the rest of the file goes on
    ]
    job = run_import(app, client, admin, csv_bytes(rows), mode="upsert")
    assert (job["updated"], job["failed"]) == (2, 1), job
    assert_counts_add_up(job)
    assert codes(client, admin, job["id"]) == {(3, "role", "last-admin")}
    assert job["first_errors"][0]["message"] == LAST_ADMIN
    users = stored_users(app)
    assert users["kedua@example.test"]["role"] == "customer"
    assert users["pelanggan@example.test"]["name"] == "Baru"
    assert active_admins(app) == {admin.email}


def test_an_import_row_cannot_change_the_role_of_the_admin_running_it(
    app: Flask, client: FlaskClient, admin: Caller, make_user: MakeUser
) -> None:
    make_user("kedua@example.test", role="admin")
    make_user("ketiga@example.test", role="admin")
    rows = [["email", "role"], [admin.email.upper(), "seller"], ["ketiga@example.test", "staff"]]
    job = run_import(app, client, admin, csv_bytes(rows), mode="upsert")
    assert (job["updated"], job["failed"]) == (1, 1), job
    assert codes(client, admin, job["id"]) == {(2, "role", "own-role")}
    assert active_admins(app) == {admin.email, "kedua@example.test"}


def test_a_dry_run_reports_the_same_admin_errors(
    app: Flask, client: FlaskClient, admin: Caller, make_user: MakeUser
) -> None:
    make_user("kedua@example.test", role="admin")
    rows = [["email", "role"], ["kedua@example.test", "staff"], [admin.email, "staff"]]
    job = run_import(app, client, admin, csv_bytes(rows), mode="upsert", dry_run="true")
    assert (job["updated"], job["failed"]) == (1, 1), job
    assert codes(client, admin, job["id"]) == {(3, "role", "last-admin")}
    assert active_admins(app) == {admin.email, "kedua@example.test"}


def test_two_imports_each_demoting_one_of_two_admins_leave_one(
    app_with: AppWith, make_user: MakeUser
) -> None:
    app, _ = app_with(import_chunk_rows=1)
    make_user("satu@example.test", role="admin")
    make_user("dua@example.test", role="admin")
    first = queue_unattended_import(app, b"email,role\nsatu@example.test,staff\n")
    second = queue_unattended_import(app, b"email,role\ndua@example.test,staff\n")
    run_queued_imports_in_parallel(app)
    jobs = [finished_job(app, job) for job in (first, second)]
    assert sorted((job.updated, job.failed) for job in jobs) == [(0, 1), (1, 0)]
    assert len(active_admins(app)) == 1


def test_an_import_waits_for_a_concurrent_demotion_and_then_keeps_the_last_admin(
    app: Flask, make_user: MakeUser, services: Services
) -> None:
    make_user("satu@example.test", role="admin")
    make_user("dua@example.test", role="admin")
    job_uuid = queue_unattended_import(app, b"email,role\nsatu@example.test,customer\n")
    dsn = services.database_url.replace("+psycopg", "")
    with psycopg.connect(dsn) as demotion:
        # What update_user does: lock the active admins, then demote one (not yet committed).
        demotion.execute(
            "SELECT id FROM user_account WHERE role = 'admin' AND active ORDER BY id FOR UPDATE"
        )
        demotion.execute(
            "UPDATE user_account SET role = 'staff' WHERE email_key = 'dua@example.test'"
        )
        (queued,) = app.extensions["lapak.jobs"].queue("imports").jobs
        worker = threading.Thread(target=run_in_app, args=(app, queued.func, *queued.args))
        worker.start()
        wait_until_blocked_on_a_lock(dsn)
        demotion.commit()
    worker.join(60)
    assert not worker.is_alive()
    job = finished_job(app, job_uuid)
    assert (job.updated, job.failed, job.status) == (0, 1, "succeeded_with_errors")
    assert active_admins(app) == {"satu@example.test"}


def run_in_app(app: Flask, func: Callable[..., Any], *args: Any) -> None:
    with app.app_context():
        try:
            func(*args)
        finally:
            Session.remove()


def wait_until_blocked_on_a_lock(dsn: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query ILIKE '%FOR UPDATE%'"
            ).fetchone()[0]
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the import never waited for the admins' lock")


def test_on_embedded_sqlite_the_admin_rules_and_the_upsert_hint_hold_too(
    make_embedded_app: Callable[..., Flask],
) -> None:
    app = make_embedded_app()
    with app.app_context():
        create_user("boss@example.test", role="admin", password=PASSWORD)
        create_user("kedua@example.test", role="admin")
    client = app.test_client()
    boss = Caller("boss@example.test", uuid.uuid4(), 0,
                  login(client, "boss@example.test").get_json()["access_token"])  # fmt: skip

    def imported(content: bytes, **options: str) -> dict[str, Any]:
        job = start_import(client, boss, content, **options)
        app.extensions["lapak.jobs"].wait_embedded()
        return get_job(client, boss, job["id"])

    demoted = imported(
        b"email,role\nkedua@example.test,staff\nboss@example.test,staff\n", mode="upsert"
    )
    assert (demoted["updated"], demoted["failed"]) == (1, 1), demoted
    assert [e["code"] for e in demoted["first_errors"]] == ["last-admin"]
    assert active_admins(app) == {"boss@example.test"}
    again = imported(b"email\nkedua@example.test\n")
    assert (
        again["hint"] == "1 row names an existing user; upload again with mode=upsert to update it"
    )
