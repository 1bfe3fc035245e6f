"""Imports through real ``lapak worker`` processes: SIGKILL mid-import and resume; two workers.

RQ's work horse puts itself in its own process group (``os.setpgrp``), so killing the worker's
group leaves the horse running: the tests collect the worker's whole process tree from /proc
and SIGKILL each process by id. Every wait is bounded and every process is killed in
``finally``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask

from tests.app.test_jobs import lapak_command, worker_environment
from tests.modules.conftest import Caller
from tests.modules.user.test_imports import (
    FINISHED,
    HEADER,
    AppWith,
    apps_with_settings,
    assert_counts_add_up,
    csv_bytes,
    get_job,
    imported_events,
    numbered_rows,
    start_import,
    user_count,
)
from tests.servers import Services


@pytest.fixture
def app_with(make_app: Callable[..., Flask], config: dict[str, Any]) -> AppWith:
    return apps_with_settings(make_app, config)


pytestmark = pytest.mark.slow


def descendants(pid: int) -> list[int]:
    """``pid``'s children, grandchildren... read from /proc (whatever their process group)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker and every process under it (the work horse has its own group)."""
    tree = [process.pid, *descendants(process.pid)]
    for pid in tree:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


@contextlib.contextmanager
def workers(env: dict[str, str], cwd: Path, count: int = 1) -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(count):
            log = (cwd / f"worker-{time.monotonic_ns()}-{index}.log").open("wb")
            started.append(
                subprocess.Popen(
                    [*lapak_command(), "worker"],  # every queue: the watchdog runs on periodic
                    cwd=cwd,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            log.close()
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(15)
            kill_tree(process)


def worker_env(services: Services, config: dict[str, Any], **settings: int) -> dict[str, str]:
    env = worker_environment(services, Path(config["instance_path"]))
    env["LAPAK_LOG_LEVEL"] = "WARNING"
    for name, value in settings.items():
        env[f"LAPAK_{name.upper()}"] = str(value)
    return env


def job_state(services: Services, job_id: str) -> tuple[str, int, int]:
    with psycopg.connect(services.database_url.replace("+psycopg", ""), autocommit=True) as conn:
        row = conn.execute(
            "SELECT status, processed_rows, total_rows FROM user_import_job WHERE uuid = %s",
            (job_id,),
        ).fetchone()
    return row


def logs(cwd: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(cwd.glob("worker-*")))


def wait_finished(services: Services, job_ids: list[str], cwd: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not all(job_state(services, job_id)[0] in FINISHED for job_id in job_ids):
        if time.monotonic() > deadline:
            states = [job_state(services, job_id) for job_id in job_ids]
            raise AssertionError(f"imports not finished after {timeout} s: {states}\n{logs(cwd)}")
        time.sleep(0.2)


def test_a_killed_worker_resumes_after_the_last_committed_chunk(
    app_with: AppWith,
    admin: Caller,
    services: Services,
    config: dict[str, Any],
    tmp_path: Path,
) -> None:
    watched, client = app_with(import_chunk_rows=500, import_stale_seconds=3)
    env = worker_env(services, config, import_chunk_rows=500, import_stale_seconds=3)
    total = 50_000
    job = start_import(client, admin, csv_bytes([HEADER, *numbered_rows(total)]))
    job_id = job["id"]

    with workers(env, tmp_path) as [first]:
        deadline = time.monotonic() + 120
        while True:
            status, processed, _ = job_state(services, job_id)
            if 0 < processed < total // 2:
                break
            assert status not in FINISHED, "the import finished before the kill: make it bigger"
            assert processed < total // 2, f"missed the window at {processed} rows"
            assert first.poll() is None, logs(tmp_path)
            assert time.monotonic() < deadline, logs(tmp_path)
            time.sleep(0.005)
        kill_tree(first)
    time.sleep(1)  # let PostgreSQL notice the dead connection and roll its transaction back
    status, at_kill, _ = job_state(services, job_id)
    assert status == "running"
    assert 0 < at_kill < total
    assert at_kill % 500 == 0  # progress moves by whole chunks
    assert user_count(watched) == 1 + at_kill  # the users of exactly the committed chunks

    with workers(env, tmp_path):
        wait_finished(services, [job_id], tmp_path)
        done = get_job(client, admin, job_id)
        assert done["status"] == "succeeded", (done, logs(tmp_path))
        assert (done["created"], done["failed"]) == (total, 0)
        assert_counts_add_up(done)
        assert user_count(watched) == 1 + total
        with psycopg.connect(services.database_url.replace("+psycopg", "")) as conn:
            attempts = conn.execute(
                "SELECT attempts FROM user_import_job WHERE uuid = %s", (job_id,)
            ).fetchone()[0]
        assert attempts >= 2  # the second worker took over, it did not start again
        deadline = time.monotonic() + 30
        while not imported_events(watched) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert [e["import_id"] for e in imported_events(watched)] == [job_id]


def test_two_workers_import_overlapping_files_without_duplicates_or_deadlocks(
    app_with: AppWith,
    admin: Caller,
    services: Services,
    config: dict[str, Any],
    tmp_path: Path,
) -> None:
    watched, client = app_with(import_chunk_rows=250)
    env = worker_env(services, config, import_chunk_rows=250)
    forward = csv_bytes([HEADER, *numbered_rows(10_000)])
    backward = csv_bytes([HEADER, *reversed(numbered_rows(10_000, start=5_000))])
    upserted = csv_bytes([HEADER, *numbered_rows(10_000, start=2_500)])
    ids = [
        start_import(client, admin, forward)["id"],
        start_import(client, admin, backward)["id"],
        start_import(client, admin, upserted, mode="upsert")["id"],
    ]
    with workers(env, tmp_path, count=3):
        wait_finished(services, ids, tmp_path)
    jobs = [get_job(client, admin, job_id) for job_id in ids]
    for job in jobs:
        assert job["status"] in ("succeeded", "succeeded_with_errors"), (job, logs(tmp_path))
        assert job["error"] is None, job
        assert_counts_add_up(job)
    assert user_count(watched) == 1 + 15_000
    assert sum(job["created"] for job in jobs) == 15_000
    create_jobs, upsert_job = jobs[:2], jobs[2]
    assert upsert_job["failed"] == 0
    for job in create_jobs:
        assert (job["updated"], job["skipped"]) == (0, 0)
    # Create mode: an email another job got first is that row's error, and nothing else is.
    with psycopg.connect(services.database_url.replace("+psycopg", ""), autocommit=True) as conn:
        messages = conn.execute("SELECT DISTINCT message FROM user_import_error").fetchall()
    assert {m for (m,) in messages} <= {"a user with this email already exists"}
