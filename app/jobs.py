"""Background jobs: RQ on Redis, or threads in the server process when no Redis is configured.

``enqueue(func, *args, queue=...)`` is the one way to start background work. Job functions take
ids, not objects, and must be idempotent: RQ may run a job again after a worker dies. They run
inside an application context, so they use ``Session()`` and services as requests do.

``lapak worker`` (:func:`run_worker`) starts an RQ worker with RQ's scheduler and a small ticker
that enqueues the modules' periodic jobs, once per interval across all workers (a Redis lock).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask, current_app
from redis import Redis
from redis.exceptions import RedisError
from rq import Callback, Queue, SimpleWorker, Worker
from rq.job import Job

from app.config import Settings
from app.db import is_unavailable
from app.registry import Periodic

log = logging.getLogger(__name__)

QUEUES = ("imports", "events", "default")
DEFAULT_JOB_TIMEOUT = 600
#: Imports of millions of rows outlast the default; they are resumable and watched by their
#: own heartbeat, so RQ's timeout is only a backstop for a job that hangs.
QUEUE_TIMEOUTS = {"imports": 4 * 3600}
#: A job that could not reach the database runs again after these many seconds, then fails.
DATABASE_RETRY_SECONDS = (5, 30, 120)


class Jobs:
    """The job backend of one application."""

    def __init__(self, app: Flask, settings: Settings) -> None:
        self.app = app
        self.redis: Redis | None = (
            Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
            if settings.redis_url
            else None
        )
        self._threads = settings.embedded_job_threads
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    @property
    def embedded(self) -> bool:
        return self.redis is None

    def queue(self, name: str) -> Queue:
        if name not in QUEUES:
            raise ValueError(f"unknown queue {name!r}; queues are {', '.join(QUEUES)}")
        if self.redis is None:
            raise RuntimeError("no Redis configured: jobs run in-process")
        timeout = QUEUE_TIMEOUTS.get(name, DEFAULT_JOB_TIMEOUT)
        return Queue(name, connection=self.redis, default_timeout=timeout)

    def enqueue(
        self,
        func: Callable[..., Any],
        *args: Any,
        queue: str = "default",
        job_id: str | None = None,
    ) -> str:
        if queue not in QUEUES:
            raise ValueError(f"unknown queue {queue!r}; queues are {', '.join(QUEUES)}")
        if self.redis is None:
            job_id = job_id or uuid.uuid4().hex
            self._embedded_executor().submit(self._run_embedded, job_id, func, args)
            return job_id
        job = self.queue(queue).enqueue(
            func, *args, job_id=job_id, on_failure=Callback(_retry_if_database_unavailable)
        )
        return job.id

    def _embedded_executor(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="lapak-job")
            return self._executor

    def _run_embedded(
        self, job_id: str, func: Callable[..., Any], args: tuple[Any, ...], attempt: int = 0
    ) -> None:
        with self.app.app_context():
            started = time.perf_counter()
            try:
                func(*args)
            except Exception as error:
                if is_unavailable(error) and attempt < len(DATABASE_RETRY_SECONDS):
                    delay = DATABASE_RETRY_SECONDS[attempt]
                    log.warning("job %s (%s) could not reach the database; again in %ss",
                                job_id, _name(func), delay)  # fmt: skip
                    retry = threading.Timer(
                        delay,
                        lambda: self._embedded_executor().submit(
                            self._run_embedded, job_id, func, args, attempt + 1
                        ),
                    )
                    retry.daemon = True
                    retry.start()
                    return
                log.exception("job %s (%s) failed", job_id, _name(func))
            else:
                log.info(
                    "job %s (%s) done in %.3fs", job_id, _name(func), time.perf_counter() - started
                )

    def wait_embedded(self) -> None:
        """Finish every in-process job (shutdown, tests)."""
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def check(self) -> dict[str, Any]:
        if self.redis is None:
            return {"ok": True, "mode": "embedded"}
        started = time.perf_counter()
        try:
            self.redis.ping()
        except RedisError as error:
            return {"ok": False, "error": str(error).splitlines()[0][:300]}
        return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _retry_if_database_unavailable(
    job: Job, _connection: Redis, _type: type, error: BaseException, _traceback: Any
) -> None:
    """RQ failure callback: a job that met an unreachable database is scheduled to run again
    (RQ's retry, run by the workers' scheduler); any other failure fails it as before."""
    if not is_unavailable(error):
        job.retries_left = None
    elif job.retries_left is None:  # the first outage of this job
        job.retries_left = len(DATABASE_RETRY_SECONDS)
        job.retry_intervals = list(DATABASE_RETRY_SECONDS)


def get_jobs() -> Jobs:
    return current_app.extensions["lapak.jobs"]


def enqueue(
    func: Callable[..., Any], *args: Any, queue: str = "default", job_id: str | None = None
) -> str:
    """Run ``func(*args)`` in the background on ``queue``; returns the job id."""
    return get_jobs().enqueue(func, *args, queue=queue, job_id=job_id)


class _AppContextMixin:
    """Runs every job inside the Flask app context, with fresh DB connections after a fork."""

    app: Flask

    def perform_job(self, job: Job, queue: Queue) -> bool:
        with self.app.app_context():
            self.app.extensions["lapak.db"].after_fork()
            return super().perform_job(job, queue)  # type: ignore[misc]


class LapakWorker(_AppContextMixin, Worker):
    """RQ's forking worker: a crashing job cannot take the worker down."""


class LapakSimpleWorker(_AppContextMixin, SimpleWorker):
    """Runs jobs in the worker's own process (tests, debugging)."""


def make_worker(
    app: Flask, queues: Sequence[str] = QUEUES, *, fork: bool = True, name: str | None = None
) -> Worker:
    jobs: Jobs = app.extensions["lapak.jobs"]
    if jobs.redis is None:
        raise RuntimeError(
            "LAPAK_REDIS_URL is not set: without Redis, jobs run inside `lapak serve`"
        )
    worker_class = LapakWorker if fork else LapakSimpleWorker
    worker = worker_class([jobs.queue(q) for q in queues], connection=jobs.redis, name=name)
    worker.app = app
    return worker


def run_worker(app: Flask, queues: Sequence[str] = QUEUES, *, burst: bool = False) -> bool:
    """Work on ``queues`` until stopped (or, with ``burst``, until they are empty)."""
    worker = make_worker(app, queues)
    ticker = None
    if not burst:
        ticker = PeriodicTicker(app)
        ticker.start()
    try:
        return worker.work(burst=burst, with_scheduler=True)
    finally:
        if ticker is not None:
            ticker.stop()


class PeriodicTicker:
    """Enqueues each periodic job at most once per interval, across every process that ticks.

    With Redis the interval is claimed with ``SET NX PX`` so several workers do not multiply the
    work; in embedded mode (no Redis) the one server process runs them in its job threads.
    """

    def __init__(self, app: Flask, tick_seconds: float = 1.0) -> None:
        self.app = app
        self.tick_seconds = tick_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lapak-ticker", daemon=True)
        self._next_local: dict[str, float] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            with self.app.app_context():
                self.tick(self.app.extensions["lapak.registry"].wiring.periodic)

    def tick(self, periodic: Iterable[Periodic]) -> list[str]:
        """Enqueue the periodic jobs that are due; returns their names."""
        jobs: Jobs = self.app.extensions["lapak.jobs"]
        started = []
        for entry in periodic:
            name = _name(entry.func)
            interval_ms = int(entry.every.total_seconds() * 1000)
            try:
                if jobs.redis is not None:
                    due = jobs.redis.set(f"lapak:periodic:{name}", "1", nx=True, px=interval_ms)
                else:
                    due = time.monotonic() >= self._next_local.get(name, 0.0)
                    if due:
                        self._next_local[name] = time.monotonic() + interval_ms / 1000
                if due:
                    jobs.enqueue(entry.func, queue=entry.queue)
                    started.append(name)
            except RedisError as error:
                log.warning("periodic %s not enqueued: %s", name, error)
        return started


def _name(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"
