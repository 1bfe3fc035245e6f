"""Background jobs: RQ on Redis, or threads in the server process when no Redis is configured.

``enqueue(func, *args, queue=...)`` is the one way to start background work. Job functions take
ids, not objects, and must be idempotent: RQ may run a job again after a worker dies. They run
inside an application context, so they use ``Session()`` and services as requests do.

``lapak worker`` (:func:`run_worker`) starts an RQ worker with RQ's scheduler and a small ticker
that enqueues the modules' periodic jobs, once per interval across all workers (a Redis lock).
A worker takes its queues in the order given, so periodic work (``periodic``, first) never waits
behind queued imports; a running job still holds its worker, hence a separate imports worker.

Redis down is an outage every user of it survives (:class:`RedisOutage`): caches fall back to the
database, the login throttle counts in the process, and work that could not be queued is picked
up from the database by a sweep once Redis answers again.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from flask import Flask, current_app
from redis import Redis
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Callback, Queue, SimpleWorker, Worker
from rq.exceptions import NoSuchJobError, StopRequested
from rq.job import Job, JobStatus

from app.config import Settings
from app.db import is_unavailable
from app.errors import ServiceUnavailable
from app.log import WarningsEvery
from app.registry import Periodic

log = logging.getLogger(__name__)
T = TypeVar("T")

#: In the order a worker takes them: periodic work first, long imports last. ``webhooks`` holds
#: the sends to receivers, which may take their whole timeout each: a queue of their own, after
#: the outbox's ``events``, so a slow receiver delays other receivers, not the outbox (run a
#: worker for it alone, ``lapak worker --queue webhooks``, to keep it off the others entirely).
QUEUES = ("periodic", "events", "default", "webhooks", "imports")
#: Queues that get their own threads in embedded mode, so their jobs cannot take every thread.
EMBEDDED_OWN_THREADS = frozenset({"webhooks"})
DEFAULT_JOB_TIMEOUT = 600
#: Imports of millions of rows outlast the default; they are resumable and watched by their
#: own heartbeat, so RQ's timeout is only a backstop for a job that hangs.
QUEUE_TIMEOUTS = {"imports": 4 * 3600}
#: A job that could not reach the database runs again after these many seconds, then fails.
DATABASE_RETRY_SECONDS = (5, 30, 120)
REDIS_TIMEOUT_SECONDS = 2


class JobsUnavailable(ServiceUnavailable):
    code = "jobs-unavailable"
    title = "Background jobs cannot be queued right now"


class RedisOutage:
    """Remembers that Redis stopped answering, for every user of the app's connection.

    After a failure Redis is left alone for ``retry_seconds`` (its users take their fallback at
    once instead of each request paying a failed connection), then tried again. Each fallback is
    logged as a warning at most once per ``warn_every_seconds``, not once per request, and the
    first answer after an outage is logged too.
    """

    def __init__(self, retry_seconds: float = 5.0, warn_every_seconds: float = 60.0) -> None:
        self.retry_seconds = retry_seconds
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self._down = False
        self._warnings = WarningsEvery(log, warn_every_seconds)

    def available(self) -> bool:
        """Whether to try Redis now (False while a recent failure is being waited out)."""
        return time.monotonic() >= self._retry_at

    @property
    def retry_after(self) -> int:
        """Seconds until Redis is tried again (at least 1), for a ``Retry-After``."""
        return max(math.ceil(self._retry_at - time.monotonic()), 1)

    def failed(self, fallback: str, error: Exception | None = None) -> None:
        """Redis failed (or is being waited out); ``fallback`` says what happens instead."""
        if error is not None:
            with self._lock:
                self._down, self._retry_at = True, time.monotonic() + self.retry_seconds
        reason = str(error).splitlines()[0][:200] if error is not None else "still down"
        self._warnings.warn(fallback, "Redis unavailable (%s): %s", reason, fallback)

    def answered(self) -> None:
        """Redis answered: the outage, if there was one, is over."""
        if not self._down:
            return
        with self._lock:
            was_down, self._down = self._down, False
        if was_down:
            self._warnings.forget()
            log.info("Redis answers again; caches, throttling and queues use it again")

    def guarded(self, fallback: str, action: Callable[[], T], otherwise: Callable[[], T]) -> T:
        """``action()`` on Redis; ``otherwise()`` (logged as ``fallback``) if Redis is down."""
        if self.available():
            try:
                result = action()
            except RedisError as error:
                self.failed(fallback, error)
            else:
                self.answered()
                return result
        else:
            self.failed(fallback)
        return otherwise()


class Jobs:
    """The job backend of one application."""

    def __init__(self, app: Flask, settings: Settings) -> None:
        self.app = app
        # Redis answers in milliseconds; a hung one (a partition) must cost a request seconds, not
        # the worker its timeout. RQ's workers raise the read timeout for their blocking dequeue.
        self.redis: Redis | None = (
            Redis.from_url(
                settings.redis_url,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
            if settings.redis_url
            else None
        )
        self.outage = RedisOutage()
        self._threads = settings.embedded_job_threads
        #: One executor for the shared threads (``None``) and one per EMBEDDED_OWN_THREADS queue.
        self._executors: dict[str | None, ThreadPoolExecutor] = {}
        self._executor_lock = threading.Lock()
        #: The in-process runner's figures (no Redis): jobs submitted, started, finished, and
        #: those that failed for good (after their database retries).
        self._counts_lock = threading.Lock()
        self._submitted = self._started = self._finished = self._failed = 0
        #: Embedded jobs queued with an id and not started yet (see :meth:`enqueue_later`).
        self._waiting: set[str] = set()
        #: Embedded jobs submitted inside :meth:`holding`, to start when it ends, and how many
        #: ``holding()`` blocks are open (they nest: the outermost one starts the jobs).
        self._held: list[tuple[str, Callable[..., Any], tuple[Any, ...], str, int]] | None = None
        self._holding_depth = 0

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
            self._submit_embedded(job_id, func, args, queue)
            return job_id
        target = self.queue(queue)
        not_queued = f"{_name(func)} is not queued"

        def refuse() -> str:
            raise JobsUnavailable(
                f"{not_queued}: Redis is unavailable",
                headers={"Retry-After": str(self.outage.retry_after)},
            )

        return self.outage.guarded(
            not_queued,
            lambda: target.enqueue(func, *args, job_id=job_id, on_failure=_RETRY_CALLBACK).id,
            refuse,
        )

    def enqueue_later(
        self,
        func: Callable[..., Any],
        *args: Any,
        queue: str,
        recovered_by: str,
        job_id: str | None = None,
    ) -> str | None:
        """:meth:`enqueue` for work already recorded in the database: while Redis is down the
        job is not queued (a warning, no error) and ``recovered_by`` queues it later.

        With a ``job_id``, a job of that id still waiting in its queue (not started) is not
        queued again: a sweep that finds the same work every few seconds adds it once. Two
        callers at the same instant may still both queue it, so the job stays idempotent.
        """
        if self.redis is None:
            if job_id is not None:
                with self._executor_lock:
                    if job_id in self._waiting:
                        return job_id
                    self._waiting.add(job_id)
            return self.enqueue(func, *args, queue=queue, job_id=job_id)
        target = self.queue(queue)

        def put() -> str:
            if job_id is not None and _waiting_in_redis(job_id, target.connection):
                return job_id
            return target.enqueue(func, *args, job_id=job_id, on_failure=_RETRY_CALLBACK).id

        return self.outage.guarded(
            f"{_name(func)} is not queued; {recovered_by} queues it later", put, lambda: None
        )

    def _embedded_executor(self, queue: str) -> ThreadPoolExecutor:
        key = queue if queue in EMBEDDED_OWN_THREADS else None
        with self._executor_lock:
            executor = self._executors.get(key)
            if executor is None:
                prefix = f"lapak-job-{key}" if key else "lapak-job"
                executor = ThreadPoolExecutor(self._threads, thread_name_prefix=prefix)
                self._executors[key] = executor
            return executor

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """In-process jobs submitted in the block start when it ends, not beside it (``lapak
        demo`` runs a moment's jobs after its steps: SQLite has one writer, and two would take
        turns through its busy timeout). Without Redis only; RQ's jobs are left as they are.

        Blocks nest: an inner one holds with the outer one, and the jobs start when the
        outermost ends (also when it raises). The jobs of any thread are held meanwhile. If
        starting one of them raises (an interrupt, an interpreter shutting down), the others
        are still started; then the first error is raised again.
        """
        with self._executor_lock:
            self._holding_depth += 1
            if self._held is None:
                self._held = []
        try:
            yield
        finally:
            held: list[tuple[str, Callable[..., Any], tuple[Any, ...], str, int]] = []
            with self._executor_lock:
                self._holding_depth -= 1
                if not self._holding_depth:
                    held, self._held = self._held or [], None
            self._start_held(held)

    def _start_held(
        self, held: list[tuple[str, Callable[..., Any], tuple[Any, ...], str, int]]
    ) -> None:
        first: BaseException | None = None
        for job in held:
            try:
                self._submit_embedded(*job)
            except BaseException as error:  # the other held jobs still start
                log.warning("held job %s (%s) may not have started: %r; the other held jobs "
                            "start", job[0], _name(job[1]), error)  # fmt: skip
                first = first or error
        if first is not None:
            raise first

    def _submit_embedded(
        self,
        job_id: str,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        queue: str,
        attempt: int = 0,
    ) -> None:
        with self._executor_lock:
            if self._held is not None:
                self._held.append((job_id, func, args, queue, attempt))
                return
        executor = self._embedded_executor(queue)
        with self._counts_lock:
            self._submitted += 1
        executor.submit(self._run_embedded, job_id, func, args, queue, attempt)

    def _run_embedded(
        self,
        job_id: str,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        queue: str,
        attempt: int = 0,
    ) -> None:
        with self._executor_lock:
            self._waiting.discard(job_id)
        with self._counts_lock:
            self._started += 1
        try:
            self._run_embedded_once(job_id, func, args, queue, attempt)
        finally:
            with self._counts_lock:
                self._finished += 1

    def _run_embedded_once(
        self, job_id: str, func: Callable[..., Any], args: tuple[Any, ...], queue: str, attempt: int
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
                        delay, lambda: self._submit_embedded(job_id, func, args, queue, attempt + 1)
                    )
                    retry.daemon = True
                    retry.start()
                    return
                with self._counts_lock:
                    self._failed += 1
                log.exception("job %s (%s) failed", job_id, _name(func))
            else:
                # DEBUG: each server process ticks the periodic jobs every few seconds, and at
                # INFO their lines drowned what a newcomer running `scripts/run` needs to see.
                log.debug(
                    "job %s (%s) done in %.3fs", job_id, _name(func), time.perf_counter() - started
                )

    def wait_embedded(self) -> None:
        """Finish every in-process job (shutdown, tests)."""
        # The shared threads first: their jobs may queue onto the own-thread queues (the
        # outbox's fan-out queues webhook sends), whose executors are still there to take them.
        for key in (None, *sorted(EMBEDDED_OWN_THREADS)):
            with self._executor_lock:
                executor = self._executors.pop(key, None)
            if executor is not None:
                executor.shutdown(wait=True)

    def figures(self) -> dict[str, Any]:
        """Queue depths and failed jobs: per RQ queue its queued, started, scheduled and failed
        jobs (RQ's registries as they are, without their cleanup); without Redis the in-process
        runner's waiting and running jobs and those that failed since the process started.
        Raises ``RedisError`` if Redis is down."""
        if self.redis is None:
            with self._counts_lock:
                waiting = self._submitted - self._started
                running = self._started - self._finished
                failed = self._failed
            return {
                "mode": "embedded",
                "queues": {"embedded": {"queued": waiting, "started": running, "failed": failed}},
            }
        # Plain counts in one round trip: RQ's ``registry.count`` first cleans the registry up
        # (moving expired jobs, running their failure callbacks), which is the workers' work,
        # not a web request's.
        counted = ("queued", "started", "scheduled", "failed")
        pipeline = self.redis.pipeline(transaction=False)
        for name in QUEUES:
            queue = self.queue(name)
            pipeline.llen(queue.key)
            pipeline.zcard(queue.started_job_registry.key)
            pipeline.zcard(queue.scheduled_job_registry.key)
            pipeline.zcard(queue.failed_job_registry.key)
        counts = iter(pipeline.execute())
        queues = {name: {kind: next(counts) for kind in counted} for name in QUEUES}
        return {"mode": "redis", "queues": queues}

    def check(self) -> dict[str, Any]:
        if self.redis is None:
            return {"ok": True, "mode": "embedded"}
        started = time.perf_counter()
        try:
            self.redis.ping()
        except RedisError as error:
            # The readiness answer needs no login: the driver's words (host, port) go to the log.
            self.outage.failed("readiness says not ready", error)
            return {"ok": False, "error": "unreachable"}
        return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


#: A job in one of these is waiting to run: queueing its id again would run it twice.
_WAITING = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED})


def _waiting_in_redis(job_id: str, redis: Redis) -> bool:
    try:
        job = Job.fetch(job_id, connection=redis)
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) in _WAITING


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


_RETRY_CALLBACK = Callback(_retry_if_database_unavailable)


def get_jobs() -> Jobs:
    return current_app.extensions["lapak.jobs"]


def enqueue(
    func: Callable[..., Any], *args: Any, queue: str = "default", job_id: str | None = None
) -> str:
    """Run ``func(*args)`` in the background on ``queue``; returns the job id.

    Raises :class:`JobsUnavailable` (503 with ``Retry-After``) while Redis is down.
    """
    return get_jobs().enqueue(func, *args, queue=queue, job_id=job_id)


def enqueue_later(
    func: Callable[..., Any],
    *args: Any,
    queue: str,
    recovered_by: str,
    job_id: str | None = None,
) -> str | None:
    """Queue work already recorded in the database; see :meth:`Jobs.enqueue_later`."""
    return get_jobs().enqueue_later(
        func, *args, queue=queue, recovered_by=recovered_by, job_id=job_id
    )


class _AppContextMixin:
    """Runs every job inside the Flask app context, with fresh DB connections after a fork;
    after each job, the app's ``lapak.flushers`` (callables modules list in ``app.extensions``)
    write what the job buffered."""

    app: Flask

    def perform_job(self, job: Job, queue: Queue) -> bool:
        with self.app.app_context():
            self.app.extensions["lapak.db"].after_fork()
            try:
                return super().perform_job(job, queue)  # type: ignore[misc]
            finally:
                # A work horse ends with os._exit, which runs no atexit handler: what the job
                # left in a module's buffer (the audit writer's rows) is written now.
                for flush in self.app.extensions.get("lapak.flushers", ()):
                    try:
                        flush()
                    except Exception:
                        log.exception("flushing %r after job %s failed", flush, job.id)


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
    """Work on ``queues`` until stopped (or, with ``burst``, until they are empty).

    RQ waits for Redis while it dequeues, but quits on an error it did not expect: Redis lost
    while a job ran (the worker records the job's end) ends ``work()``, with the error or
    without it. Unless a stop was asked for (SIGTERM, SIGINT), this then waits for Redis and
    starts a new worker, so a restart of Redis does not end the jobs.
    """
    ticker = None
    if not burst:
        ticker = PeriodicTicker(app)
        ticker.start()
    try:
        while True:
            worker = make_worker(app, queues)
            try:
                worked = worker.work(burst=burst, with_scheduler=True)
            except (RedisConnectionError, RedisTimeoutError) as error:
                if _stopping(worker):
                    log.info("worker %s stopped without Redis (%s)", worker.name, error)
                    return False
                if burst or isinstance(error, AuthenticationError):
                    raise
                log.warning("worker %s lost Redis (%s)", worker.name, error)
            except StopRequested:
                return False
            else:
                if burst or _stopping(worker):
                    return worked
                log.warning("worker %s quit on the error logged above", worker.name)
            _unsubscribe(worker)
            if not _wait_for_redis(worker.connection):
                return False
            log.warning("starting a new worker")
    finally:
        if ticker is not None:
            ticker.stop()


def _stopping(worker: Worker) -> bool:
    """True once the worker was asked to stop (RQ's signal handler notes when)."""
    return getattr(worker, "_shutdown_requested_date", None) is not None


def _unsubscribe(worker: Worker) -> None:
    """End the old worker's command channel (its thread), which its teardown may have skipped."""
    with contextlib.suppress(Exception):  # best effort: Redis may still be down
        worker.unsubscribe()


def _wait_for_redis(redis: Redis, pause: float = 1.0, report_every: float = 30.0) -> bool:
    """Wait until Redis answers, ``pause`` at least (no busy loop when a worker keeps
    failing): True; False when SIGTERM or SIGINT asked to stop meanwhile."""
    stop = threading.Event()
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            handlers[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        reported = time.monotonic()
        while not stop.wait(pause):
            try:
                redis.ping()
                return True
            except AuthenticationError:
                raise  # a wrong password does not heal by waiting
            except RedisError as error:
                if time.monotonic() - reported >= report_every:
                    log.warning("still waiting for Redis: %s", error)
                    reported = time.monotonic()
        return False
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


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
            if jobs.redis is not None:
                claim = functools.partial(
                    jobs.redis.set, f"lapak:periodic:{name}", "1", nx=True, px=interval_ms
                )
                due = jobs.outage.guarded("periodic jobs wait for it", claim, lambda: False)
            else:
                due = time.monotonic() >= self._next_local.get(name, 0.0)
                if due:
                    self._next_local[name] = time.monotonic() + interval_ms / 1000
            if due:
                try:
                    jobs.enqueue(entry.func, queue=entry.queue)
                except JobsUnavailable:
                    continue  # logged by the outage; the next interval tries again
                started.append(name)
        return started


def _name(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"
