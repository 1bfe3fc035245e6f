"""Background jobs: RQ on real Redis, a real `lapak worker` process, and the embedded mode."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from app.db import Session
from app.jobs import QUEUES, JobsUnavailable, PeriodicTicker, enqueue, enqueue_later
from app.registry import Manifest, ModuleHooks, Periodic, Wiring
from tests.conftest import redis_outage_app, run_jobs
from tests.sample_modules.notes.models import Note, NoteDelivery
from tests.sample_modules.notes.services import create_note_job, create_note_slowly_job
from tests.servers import RedisServer, Services

ROOT = Path(__file__).resolve().parents[2]


def titles(app: Flask) -> list[str]:
    with app.app_context():
        Session.remove()
        return list(Session().scalars(select(Note.title).order_by(Note.id)))


def explode() -> None:
    raise RuntimeError("boom")


def test_without_redis_jobs_run_in_a_background_thread_inside_the_app(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(redis_url=None)
    with app.app_context():
        job_id = enqueue(create_note_job, "in a thread", queue="imports")
        enqueue(explode)  # a failing job is logged, it does not take the server down
    assert job_id
    app.extensions["lapak.jobs"].wait_embedded()
    assert titles(app) == ["in a thread"]
    # The note's event was dispatched in-process too.
    app.extensions["lapak.jobs"].wait_embedded()
    with app.app_context():
        assert list(Session().scalars(select(NoteDelivery.title))) == ["in a thread"]


def test_without_redis_jobs_queued_while_holding_start_when_the_block_ends(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(redis_url=None)
    jobs = app.extensions["lapak.jobs"]
    with jobs.holding(), app.app_context():
        enqueue(create_note_job, "held", queue="imports")
        enqueue_later(create_note_job, "held later", queue="default", recovered_by="x")
        time.sleep(0.3)  # time enough for a thread to take them, were they not held
        assert titles(app) == []
    jobs.wait_embedded()
    assert sorted(titles(app)) == ["held", "held later"]
    with app.app_context():  # held no more
        enqueue(create_note_job, "free", queue="imports")
    jobs.wait_embedded()
    assert "free" in titles(app)


def test_without_redis_holding_nests_and_the_outermost_block_starts_every_held_job(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(redis_url=None)
    jobs = app.extensions["lapak.jobs"]
    with jobs.holding(), app.app_context():
        enqueue(create_note_job, "outer", queue="imports")
        with jobs.holding():
            enqueue(create_note_job, "inner", queue="imports")
        enqueue(create_note_job, "outer again", queue="imports")
        time.sleep(0.3)  # the inner block's end started nothing: the outer one still holds
        assert titles(app) == []
    jobs.wait_embedded()
    assert sorted(titles(app)) == ["inner", "outer", "outer again"]


def test_without_redis_a_holding_block_that_raises_still_starts_its_jobs(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(redis_url=None)
    jobs = app.extensions["lapak.jobs"]
    with pytest.raises(KeyError), jobs.holding(), app.app_context():
        enqueue(create_note_job, "before the error", queue="imports")
        raise KeyError("interrupted")
    jobs.wait_embedded()
    assert titles(app) == ["before the error"]


def test_without_redis_held_jobs_all_start_when_starting_one_of_them_raises(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(redis_url=None)
    jobs = app.extensions["lapak.jobs"]
    executor_for = jobs._embedded_executor
    refusals = []

    def refuse_once(queue: str):  # type: ignore[no-untyped-def]
        if not refusals:
            refusals.append(queue)
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        return executor_for(queue)

    monkeypatch.setattr(jobs, "_embedded_executor", refuse_once)
    with (
        pytest.raises(RuntimeError, match="cannot schedule"),
        jobs.holding(),
        app.app_context(),
    ):
        for title in ("first", "second", "third"):
            enqueue(create_note_job, title, queue="imports")
    jobs.wait_embedded()
    assert refusals == ["imports"]
    assert sorted(titles(app)) == ["second", "third"]  # the first was refused, not the others


def test_enqueue_puts_the_job_on_the_named_redis_queue(app: Flask) -> None:
    with app.app_context():
        job_id = enqueue(create_note_job, "queued", queue="imports")
        with pytest.raises(ValueError, match="unknown queue"):
            enqueue(create_note_job, "nowhere", queue="elsewhere")
    jobs = app.extensions["lapak.jobs"]
    assert jobs.queue("imports").job_ids == [job_id]
    assert titles(app) == []
    run_jobs(app, ("imports",))
    assert titles(app) == ["queued"]


def test_work_queued_later_under_one_id_waits_in_the_queue_once(app: Flask) -> None:
    jobs = app.extensions["lapak.jobs"]
    with app.app_context():
        for _ in range(3):  # a sweep finding the same work every interval
            enqueue_later(create_note_job, "once", queue="webhooks", recovered_by="x", job_id="n-1")
    assert jobs.queue("webhooks").job_ids == ["n-1"]
    run_jobs(app, ("webhooks",))
    assert titles(app) == ["once"]
    with app.app_context():  # done: the same id may be queued again (its sender died)
        enqueue_later(create_note_job, "again", queue="webhooks", recovered_by="x", job_id="n-1")
    assert jobs.queue("webhooks").job_ids == ["n-1"]


def test_without_redis_work_queued_later_under_one_id_runs_once(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(redis_url=None)
    with app.app_context():
        # The webhooks queue's own threads are busy: the next jobs wait in their executor.
        for title in ("slow 1", "slow 2"):
            enqueue(create_note_slowly_job, title, 1.0, queue="webhooks")
        for _ in range(3):
            enqueue_later(create_note_job, "once", queue="webhooks", recovered_by="x", job_id="n-1")
    app.extensions["lapak.jobs"].wait_embedded()
    assert sorted(titles(app)) == ["once", "slow 1", "slow 2"]


def test_periodic_job_is_enqueued_once_per_interval_across_workers(app: Flask) -> None:
    periodic = [Periodic(create_note_job, timedelta(seconds=30), "default")]
    first, second = PeriodicTicker(app), PeriodicTicker(app)
    assert first.tick(periodic) == ["tests.sample_modules.notes.services.create_note_job"]
    assert second.tick(periodic) == []
    assert first.tick(periodic) == []
    assert app.extensions["lapak.jobs"].queue("default").count == 1


def worker_environment(services: Services, tmp_path: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LAPAK_")}
    environment.update(
        LAPAK_ENV="test",
        LAPAK_DATABASE_URL=services.database_url,
        LAPAK_REPLICA_URLS=",".join(services.replica_urls),
        LAPAK_REDIS_URL=services.redis_url,
        LAPAK_SECRET_KEY="w" * 48,
        LAPAK_INSTANCE_PATH=str(tmp_path),
        LAPAK_MODULE_PACKAGES="modules,tests.sample_modules",
        PYTHONPATH=str(ROOT),
    )
    return environment


def lapak_command() -> list[str]:
    return [sys.executable, "-m", "app.cli"]


def start_worker(environment: dict[str, str], directory: Path) -> subprocess.Popen:
    """``lapak worker`` in ``directory``, its output kept for a failing test's message."""
    return subprocess.Popen(
        [*lapak_command(), "worker"],
        cwd=directory,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop_worker(worker: subprocess.Popen) -> None:
    """A warm shutdown (SIGTERM), killed if it takes more than 30 seconds."""
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


@pytest.mark.slow
def test_lapak_worker_process_runs_jobs_and_delivers_their_events(
    app: Flask, services: Services, tmp_path: Path
) -> None:
    with app.app_context():
        enqueue(create_note_job, "from the worker", queue="imports")
    worker = start_worker(worker_environment(services, tmp_path), tmp_path)
    try:
        deadline = time.monotonic() + 60
        delivered: list[str] = []
        while time.monotonic() < deadline and not delivered:
            time.sleep(0.2)
            with app.app_context():
                Session.remove()
                delivered = list(Session().scalars(select(NoteDelivery.title)))
            assert worker.poll() is None, worker.stdout.read().decode()
        assert titles(app) == ["from the worker"]
        assert delivered == ["from the worker"]
    finally:
        stop_worker(worker)


def test_lapak_worker_refuses_to_start_without_redis(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LAPAK_")}
    environment.update(LAPAK_INSTANCE_PATH=str(tmp_path), PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [*lapak_command(), "worker", "--burst"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "LAPAK_REDIS_URL is not set" in result.stderr


def test_import_jobs_get_a_longer_timeout_than_other_jobs(app: Flask) -> None:
    from rq.job import Job

    with app.app_context():
        imports_id = enqueue(create_note_job, "long", queue="imports")
        default_id = enqueue(create_note_job, "short")
    redis = app.extensions["lapak.jobs"].redis
    assert Job.fetch(imports_id, connection=redis).timeout == 4 * 3600
    assert Job.fetch(default_id, connection=redis).timeout == 600


def note_from_a_periodic_job() -> None:
    create_note_job("periodic")


def test_a_worker_takes_periodic_work_before_queued_imports(app: Flask) -> None:
    """The soak's finding: the import watchdog waited behind queued imports and events."""
    wiring = Wiring()
    ModuleHooks(Manifest("soak", "1", "a module with a periodic job"), wiring).periodic(
        note_from_a_periodic_job, every=timedelta(seconds=5)
    )
    with app.app_context():
        for number in range(3):
            enqueue(create_note_job, f"import {number}", queue="imports")
    assert PeriodicTicker(app).tick(wiring.periodic) == [
        "tests.app.test_jobs.note_from_a_periodic_job"
    ]
    run_jobs(app)  # one real RQ worker on every queue, in their default order, as `lapak worker`
    assert titles(app) == ["periodic", "import 0", "import 1", "import 2"]


def test_every_module_periodic_job_is_on_the_periodic_queue(app: Flask) -> None:
    periodic = app.extensions["lapak.registry"].wiring.periodic
    modules = {entry.func.__module__: entry.queue for entry in periodic}
    assert modules["modules.user.jobs"] == "periodic"  # the import watchdog
    assert {q for m, q in modules.items() if m.startswith("modules.")} == {"periodic"}


def test_while_redis_is_down_enqueue_is_a_503_and_the_ticker_waits(
    make_app: Callable[..., Flask], own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = redis_outage_app(make_app, own_redis)
    periodic = [Periodic(note_from_a_periodic_job, timedelta(seconds=30), "periodic")]
    own_redis.stop()
    caplog.set_level(logging.WARNING)
    with app.app_context():
        with pytest.raises(JobsUnavailable) as refused:
            enqueue(create_note_job, "not queued")
        assert int(refused.value.headers["Retry-After"]) >= 1
        later = enqueue_later(create_note_job, "later", queue="default", recovered_by="a sweep")
        assert later is None
    assert PeriodicTicker(app).tick(periodic) == []  # no exception out of the ticker thread
    assert any("a sweep queues it later" in r.getMessage() for r in caplog.records)

    own_redis.start()
    assert PeriodicTicker(app).tick(periodic) == ["tests.app.test_jobs.note_from_a_periodic_job"]
    run_jobs(app)
    assert titles(app) == ["periodic"]


@pytest.mark.slow
def test_a_lapak_worker_carries_on_after_redis_restarts(
    make_app: Callable[..., Flask], services: Services, own_redis: RedisServer, tmp_path: Path
) -> None:
    app = make_app(redis_url=own_redis.url)
    worker = start_worker(
        {**worker_environment(services, tmp_path), "LAPAK_REDIS_URL": own_redis.url}, tmp_path
    )
    try:
        with app.app_context():
            enqueue(create_note_job, "before the restart")
        wait_for_titles(app, worker, ["before the restart"])
        own_redis.stop()  # RQ's dequeue, the heartbeat and the ticker all lose it
        time.sleep(1)
        own_redis.start()
        with app.app_context():
            enqueue(create_note_job, "after the restart")
        wait_for_titles(app, worker, ["before the restart", "after the restart"])
    finally:
        stop_worker(worker)


@pytest.mark.slow
def test_a_lapak_worker_carries_on_when_redis_restarts_while_a_job_runs(
    make_app: Callable[..., Flask], services: Services, own_redis: RedisServer, tmp_path: Path
) -> None:
    app = make_app(redis_url=own_redis.url)
    worker = start_worker(
        {**worker_environment(services, tmp_path), "LAPAK_REDIS_URL": own_redis.url}, tmp_path
    )
    try:
        with app.app_context():
            enqueue(create_note_job, "first")
        wait_for_titles(app, worker, ["first"])  # the worker is up and idle
        with app.app_context():
            enqueue(create_note_slowly_job, "slow", 1.5)
        time.sleep(0.5)  # it runs; it ends, and the worker records that, while Redis is down
        own_redis.stop()
        time.sleep(2)
        own_redis.start()
        with app.app_context():
            enqueue(create_note_job, "after the restart")
        wait_for_titles(app, worker, ["first", "slow", "after the restart"], in_order=False)
    finally:
        stop_worker(worker)


@pytest.mark.slow
def test_a_lapak_worker_stops_when_asked_while_redis_is_down(
    make_app: Callable[..., Flask], services: Services, own_redis: RedisServer, tmp_path: Path
) -> None:
    app = make_app(redis_url=own_redis.url)
    worker = start_worker(
        {**worker_environment(services, tmp_path), "LAPAK_REDIS_URL": own_redis.url}, tmp_path
    )
    try:
        with app.app_context():
            enqueue(create_note_job, "up")
        wait_for_titles(app, worker, ["up"])
        own_redis.stop()
        time.sleep(1)
        worker.send_signal(signal.SIGTERM)  # a warm shutdown, with Redis gone
        assert worker.wait(20) == 0, worker.stdout.read().decode()  # type: ignore[union-attr]
    finally:
        stop_worker(worker)
        own_redis.start()


def wait_for_titles(
    app: Flask, worker: subprocess.Popen, expected: list[str], *, in_order: bool = True
) -> None:
    arranged = (lambda names: names) if in_order else sorted
    deadline = time.monotonic() + 90
    while arranged(titles(app)) != arranged(expected):
        assert worker.poll() is None, worker.stdout.read().decode()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, titles(app)
        time.sleep(0.2)


def test_queue_figures_count_the_registries_without_cleaning_them_up(app: Flask) -> None:
    jobs = app.extensions["lapak.jobs"]
    with app.app_context():
        enqueue(create_note_job, "waits", queue="default")
    started = jobs.queue("default").started_job_registry
    # A job its worker lost long ago: RQ's cleanup (the workers' business) would move it.
    jobs.redis.zadd(started.key, {"lost-long-ago": 1})

    figures = jobs.figures()

    default = figures["queues"]["default"]
    assert default["queued"] == jobs.redis.llen(jobs.queue("default").key) >= 1
    assert default["started"] == jobs.redis.zcard(started.key) >= 1
    assert jobs.redis.zscore(started.key, "lost-long-ago") == 1  # still there: no cleanup ran
    assert set(figures["queues"]) == set(QUEUES)
