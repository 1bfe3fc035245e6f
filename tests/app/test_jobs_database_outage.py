"""A job that meets an unreachable database runs again later; it is not lost."""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Flask
from rq.job import Job
from sqlalchemy import select

from app.db import Session
from app.jobs import enqueue
from tests.conftest import run_jobs
from tests.sample_modules.notes.models import Note
from tests.sample_modules.notes.services import create_note_job
from tests.servers import Services


def titles(app: Flask) -> list[str]:
    with app.app_context():
        Session.remove()
        return list(Session().scalars(select(Note.title).order_by(Note.id)))


def test_a_queued_job_that_cannot_reach_the_database_is_scheduled_again(
    make_app: Callable[..., Flask], own_replica: Services
) -> None:
    app = make_app(replica_urls=())
    with app.app_context():
        job_id = enqueue(create_note_job, "after the outage")
    own_replica.primary.stop()
    try:
        run_jobs(app)  # the job fails: the database is down
    finally:
        own_replica.primary.start()
    jobs = app.extensions["lapak.jobs"]
    job = Job.fetch(job_id, connection=jobs.redis)
    assert job.get_status() == "scheduled"
    assert job_id not in jobs.queue("default").failed_job_registry.get_job_ids()

    # What RQ's scheduler does once the retry is due, done now.
    queue = jobs.queue("default")
    queue.scheduled_job_registry.remove(job)
    queue.enqueue_job(job)
    run_jobs(app)
    assert titles(app) == ["after the outage"]


def test_a_queued_job_failing_otherwise_still_fails_at_once(
    make_app: Callable[..., Flask], services: Services
) -> None:
    app = make_app(replica_urls=())
    with app.app_context():
        job_id = enqueue(create_note_job, "x" * 500)  # longer than the title column
    run_jobs(app)
    jobs = app.extensions["lapak.jobs"]
    assert Job.fetch(job_id, connection=jobs.redis).get_status() == "failed"


def test_an_in_process_job_that_cannot_reach_the_database_runs_again(
    make_app: Callable[..., Flask], own_replica: Services
) -> None:
    app = make_app(redis_url=None, replica_urls=())
    own_replica.primary.stop()
    try:
        with app.app_context():
            enqueue(create_note_job, "in a thread, after the outage")
        app.extensions["lapak.jobs"].wait_embedded()  # it failed, and waits to run again
    finally:
        own_replica.primary.start()
    deadline = time.monotonic() + 60
    while not titles(app) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert titles(app) == ["in a thread, after the outage"]
