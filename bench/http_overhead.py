"""HTTP overhead: Lapak under gunicorn against a bare Flask app under gunicorn, in the same run.

``python -m bench.http_overhead [--requests N] [--concurrency C] [--warmup W] [--rounds R]
[--workers K]``

Starts three servers on 127.0.0.1, each with K workers of ``lapak serve``'s gunicorn (threaded):

* **lapak**: ``lapak serve`` (the production path: ``create_app`` in each gunicorn worker) on a
  fresh SQLite instance in a temporary directory, migrated first, jobs embedded (no Redis), with
  the API log on (the audit module's default: a row per ``/api/...`` request, batched by a
  writer thread in each worker);
* **lapak-nolog**: the same with ``LAPAK_AUDIT_REQUEST_LOG=off`` (its own instance), so the API
  log's cost is measured in the same run: ``ratios_log_over_nolog`` (requests/s with the log over
  without it; the target is at least 0.95, i.e. the log costs under 5 %). ``/health/live`` is not
  an API request and is not logged: its ratio shows the noise of the machine.
  ``audit_rows_written`` counts the log's rows afterwards (proof the log was on);
* **bare**: ``bench.bare_app`` through :mod:`bench.serve_floor` (the same gunicorn), a plain
  ``Flask(__name__)`` with the same two routes and the same JSON bodies (checked before
  measuring).

Each server gets W warm-up requests per endpoint. Then, per endpoint (``GET /health/live``, ``GET
/api/v1/modules``), exactly N requests go to each server, in R batches that rotate which server goes
first, from C threads, each thread with its own ``http.client`` connection (re-opened whenever the
server closes it, for both servers alike). Only 127.0.0.1 is contacted, the run stops by itself, and
every server started is stopped (SIGTERM, then SIGKILL of its process group) even when the run fails
or is interrupted (Ctrl-C, SIGTERM, SIGHUP).

The headline is the ratio lapak/bare per endpoint: requests/s (below 1 means Lapak is slower)
and p50 latency (above 1 means Lapak is slower), with the lowest and highest per-batch
requests/s ratio to show how noisy the machine was. The client shares the machine with both
servers, so the absolute figures move with the machine; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.runner import REPO_ROOT, Figures, run_as_command

NAME = "http_overhead"
HOST = "127.0.0.1"
ENDPOINTS = ("/health/live", "/api/v1/modules")
#: 48 characters, for this benchmark's throw-away instance in a temporary directory only.
TEST_SECRET = "bench-http-overhead-throwaway-secret-0123456789a"  # noqa: S105
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 30.0
#: How every HTTP benchmark's servers run, Lapak and its floors alike (:func:`floor_argv`).
WORKER_CLASS = (
    "gunicorn gthread as lapak serve runs it (LAPAK_WEB_THREADS request threads + "
    "LAPAK_WEB_STREAMS stream threads per worker), floors through bench.serve_floor"
)


def floor_argv(target: str, port: int) -> list[str]:
    """The command serving the floor app ``target`` (``module:app``) on ``port`` exactly as
    ``lapak serve`` serves Lapak (:mod:`bench.serve_floor`; ``LAPAK_WEB_WORKERS`` and the other
    serving settings come from the environment, as Lapak's)."""
    return [sys.executable, "-m", "bench.serve_floor", target, "--host", HOST, "--port", str(port)]


@dataclass(frozen=True)
class Server:
    """A server this benchmark started and will stop."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class Run:
    """Measured batches against one server and endpoint (one batch, or several merged)."""

    requests: int
    errors: int
    connects: int
    seconds: float
    client_cpu_seconds: float
    latencies_s: list[float]  # successful requests only, sorted

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def percentile_ms(self, q: float) -> float | None:
        """Nearest-rank percentile of the successful requests' latencies, in milliseconds."""
        if not self.latencies_s:
            return None
        rank = max(1, math.ceil(len(self.latencies_s) * q / 100))
        return self.latencies_s[rank - 1] * 1000

    @classmethod
    def merged(cls, runs: Sequence[Run]) -> Run:
        """The batches as one run: counts and times add up, latencies are pooled."""
        return cls(
            requests=sum(r.requests for r in runs),
            errors=sum(r.errors for r in runs),
            connects=sum(r.connects for r in runs),
            seconds=sum(r.seconds for r in runs),
            client_cpu_seconds=sum(r.client_cpu_seconds for r in runs),
            latencies_s=sorted(latency for r in runs for latency in r.latencies_s),
        )


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def venv_script(name: str) -> str:
    """The console script ``name`` installed beside the running interpreter."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise RuntimeError(f"{path} not found: run with the project's venv (.venv/bin/python)")
    return str(path)


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any ``LAPAK_*`` variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAPAK_")}
    env.update(extra)
    return env


@contextmanager
def serving(
    name: str, argv: Sequence[str], env: Mapping[str, str], workdir: Path, port: int
) -> Iterator[Server]:
    """Start ``argv`` in its own process group, wait until it answers, always stop it after."""
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv),
            cwd=workdir,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        server = Server(name, port, process, log_path)
        try:
            wait_ready(server)
            yield server
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (gunicorn's graceful stop); SIGKILL the process group if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            pass
    # The server was started with start_new_session, so its group is the arbiter and its workers.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def get(port: int, path: str, timeout: float = REQUEST_TIMEOUT_S) -> tuple[int, bytes]:
    """One GET on a fresh connection to 127.0.0.1: status and body."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(server: Server, timeout: float = READY_TIMEOUT_S) -> None:
    """Poll ``/health/live`` until it answers 200; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode} before it was ready:\n"
                + server.log_tail()
            )
        with suppress(OSError, http.client.HTTPException):
            if get(server.port, "/health/live", timeout=1.0)[0] == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{server.name} not ready after {timeout:.0f} s:\n" + server.log_tail()
            )
        time.sleep(0.1)


def load(
    port: int,
    path: str,
    requests: int,
    concurrency: int,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    bodies: Sequence[bytes] = (),
    request_for: Callable[[str], tuple[str, Mapping[str, str]]] | None = None,
) -> Run:
    """Send exactly ``requests`` requests from ``concurrency`` threads; return what was measured.

    Every request carries ``headers``; with ``bodies``, client thread *i* sends
    ``bodies[i % len(bodies)]`` each time (e.g. one login per thread, each as its own user).
    With ``request_for``, each request's path and extra headers are ``request_for(path)``, made
    before its clock starts (e.g. a signed request, which may be sent only once).
    Only a 200 counts as a success.
    """
    concurrency = max(1, min(concurrency, requests))
    shares = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]
    start = threading.Barrier(concurrency + 1, timeout=REQUEST_TIMEOUT_S)
    sent_headers = dict(headers or {})

    def client(count: int, body: bytes | None) -> tuple[list[float], int, int]:
        latencies: list[float] = []
        errors = connects = 0
        conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
        start.wait()
        try:
            for _ in range(count):
                target, each = path, sent_headers
                if request_for is not None:
                    target, extra = request_for(path)
                    each = {**sent_headers, **extra}
                connects += conn.sock is None
                began = time.perf_counter()
                try:
                    conn.request(method, target, body=body, headers=each)
                    response = conn.getresponse()
                    response.read()
                    ok = response.status == 200
                except (OSError, http.client.HTTPException):
                    conn.close()
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - began)
                else:
                    errors += 1
        finally:
            conn.close()
        return latencies, errors, connects

    with ThreadPoolExecutor(concurrency, thread_name_prefix="bench-client") as pool:
        futures = [
            pool.submit(client, share, bodies[index % len(bodies)] if bodies else None)
            for index, share in enumerate(shares)
        ]
        start.wait()
        began, cpu_began = time.perf_counter(), time.process_time()
        results = [future.result() for future in futures]
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    return Run(
        requests=requests,
        errors=sum(r[1] for r in results),
        connects=sum(r[2] for r in results),
        seconds=seconds,
        client_cpu_seconds=cpu,
        latencies_s=sorted(latency for r in results for latency in r[0]),
    )


def start_lapak(
    stack: ExitStack, workdir: Path, workers: int, name: str = "lapak", **settings: str
) -> Server:
    """Migrate a fresh instance (``workdir/instance-<name>``), then ``lapak serve`` it with
    ``settings`` (``LAPAK_*`` variables) added. The code is this checkout's (``PYTHONPATH``),
    as the bare app's."""
    env = clean_environment(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        LAPAK_INSTANCE_PATH=str(workdir / f"instance-{name}"),
        LAPAK_SECRET_KEY=TEST_SECRET,
        LAPAK_WEB_WORKERS=str(workers),
        LAPAK_LOG_LEVEL="WARNING",
        **settings,
    )
    lapak = venv_script("lapak")
    migrate = subprocess.run(
        [lapak, "db", "upgrade"], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )
    if migrate.returncode != 0:
        raise RuntimeError(f"lapak db upgrade failed:\n{migrate.stdout}{migrate.stderr}")
    port = free_port()
    argv = [lapak, "serve", "--host", HOST, "--port", str(port)]
    return stack.enter_context(serving(name, argv, env, workdir, port))


def start_bare(stack: ExitStack, workdir: Path, workers: int, modules_json: Path) -> Server:
    """``bench.bare_app`` under ``lapak serve``'s own gunicorn, with Lapak's worker count."""
    env = clean_environment(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        BENCH_BARE_MODULES_JSON=str(modules_json),
        LAPAK_WEB_WORKERS=str(workers),
    )
    port = free_port()
    argv = floor_argv("bench.bare_app:app", port)
    return stack.enter_context(serving("bare", argv, env, workdir, port))


def same_bodies(lapak: Server, bare: Server) -> dict[str, bool]:
    """Per endpoint: do both servers answer 200 with the same JSON document?"""
    same = {}
    for path in ENDPOINTS:
        answers = [get(server.port, path) for server in (lapak, bare)]
        same[path] = all(status == 200 for status, _ in answers) and (
            json.loads(answers[0][1]) == json.loads(answers[1][1])
        )
    return same


def measure(inputs: Mapping[str, Any]) -> Figures:
    """Start the servers, load each endpoint of each, stop them; the figures of the run."""
    requests, concurrency = int(inputs["requests"]), int(inputs["concurrency"])
    warmup, workers = int(inputs["warmup"]), int(inputs["workers"])
    rounds = max(1, min(int(inputs["rounds"]), requests))
    shares = [requests // rounds + (i < requests % rounds) for i in range(rounds)]
    with tempfile.TemporaryDirectory(prefix="lapak-bench-") as tmp:
        workdir = Path(tmp)
        with ExitStack() as servers:
            figures = _measure_servers(servers, workdir, workers, warmup, concurrency, shares)
        # The servers stopped: each worker wrote what its writer still held at exit.
        figures["audit_rows_written"] = audit_rows(workdir / "instance-lapak" / "lapak.db")
    return figures


def audit_rows(database: Path) -> int | None:
    """Rows in the API log of the SQLite instance ``database`` (None if it has no such table)."""
    connection = sqlite3.connect(database)
    try:
        return connection.execute("SELECT count(*) FROM audit_request_log").fetchone()[0]
    except sqlite3.Error:
        return None
    finally:
        connection.close()


def _measure_servers(
    servers: ExitStack,
    workdir: Path,
    workers: int,
    warmup: int,
    concurrency: int,
    shares: list[int],
) -> Figures:
    """Start the three servers (stopped by ``servers``), load each endpoint of each."""
    lapak = start_lapak(servers, workdir, workers)
    nolog = start_lapak(servers, workdir, workers, "lapak-nolog", LAPAK_AUDIT_REQUEST_LOG="off")
    status, body = get(lapak.port, "/api/v1/modules")
    if status != 200:
        raise RuntimeError(f"lapak GET /api/v1/modules answered {status}: {body[:300]!r}")
    modules_json = workdir / "modules.json"
    modules_json.write_bytes(body)
    bare = start_bare(servers, workdir, workers, modules_json)
    bodies = same_bodies(lapak, bare)
    if not all(bodies.values()):
        raise RuntimeError(f"the two servers do not send the same bodies: {bodies}")

    targets = [bare, lapak, nolog]
    if warmup:
        print("  warm-up ...", file=sys.stderr, flush=True)
        for path in ENDPOINTS:
            for server in targets:
                load(server.port, path, warmup, concurrency)
    rows: list[dict[str, Any]] = []
    ratios: list[dict[str, Any]] = []
    log_ratios: list[dict[str, Any]] = []
    for path in ENDPOINTS:
        print(f"  GET {path}: {len(shares)} rounds ...", file=sys.stderr, flush=True)
        batches: dict[str, list[Run]] = {server.name: [] for server in targets}
        # Rotate which server goes first, so drift and other load on the machine fall on
        # every server alike instead of on whichever was measured later.
        for index, share in enumerate(shares):
            turn = index % len(targets)
            for server in targets[turn:] + targets[:turn]:
                batches[server.name].append(load(server.port, path, share, concurrency))
        for server in targets:
            rows.append(_row(server.name, path, Run.merged(batches[server.name])))
        ratios.append(_ratio(path, batches["lapak"], batches["bare"]))
        log_ratios.append(_ratio(path, batches["lapak"], batches["lapak-nolog"]))
    return {
        "runs": rows,
        "ratios_lapak_over_bare": ratios,
        "ratios_log_over_nolog": log_ratios,
    }


def _row(target: str, path: str, run: Run) -> dict[str, Any]:
    return {
        "target": target,
        "endpoint": f"GET {path}",
        "requests": run.requests,
        "errors": run.errors,
        "connects": run.connects,
        "req_per_s": round(run.per_second, 1),
        "p50_ms": _round(run.percentile_ms(50), 3),
        "p99_ms": _round(run.percentile_ms(99), 3),
        "seconds": round(run.seconds, 3),
        "client_cpu_pct": round(100 * run.client_cpu_seconds / run.seconds, 1),
    }


def _ratio(path: str, lapak_batches: list[Run], bare_batches: list[Run]) -> dict[str, Any]:
    """Lapak/bare (or log/nolog) over the whole run, and the spread of the per-round
    requests/s ratio."""
    lapak, bare = Run.merged(lapak_batches), Run.merged(bare_batches)
    lapak_p50, bare_p50 = lapak.percentile_ms(50), bare.percentile_ms(50)
    per_round = [
        mine.per_second / theirs.per_second
        for mine, theirs in zip(lapak_batches, bare_batches, strict=True)
    ]
    return {
        "endpoint": f"GET {path}",
        "req_per_s": round(lapak.per_second / bare.per_second, 3),
        "p50": round(lapak_p50 / bare_p50, 3) if lapak_p50 and bare_p50 else None,
        "req_per_s_round_min": round(min(per_round), 3),
        "req_per_s_round_max": round(max(per_round), 3),
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.http_overhead",
        description="Requests/s and latency of Lapak against a bare Flask app, and of Lapak "
        "with its API log against Lapak without, all on gunicorn.",
    )
    parser.add_argument(
        "--requests",
        type=positive,
        default=3000,
        help="measured requests per server and endpoint (default 3000)",
    )
    parser.add_argument(
        "--concurrency", type=positive, default=8, help="client threads (default 8)"
    )
    parser.add_argument(
        "--warmup",
        type=non_negative,
        default=200,
        help="unmeasured requests first, per server and endpoint (default 200)",
    )
    parser.add_argument(
        "--rounds",
        type=positive,
        default=6,
        help="split the requests into this many batches per server, alternating which server "
        "goes first (default 6)",
    )
    parser.add_argument(
        "--workers", type=positive, default=2, help="gunicorn workers per server (default 2)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    inputs = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "workers": args.workers,
        "endpoints": list(ENDPOINTS),
        "worker_class": WORKER_CLASS,
        "lapak_database": "sqlite (fresh instance, migrated)",
        "lapak_jobs": "embedded (no Redis)",
        "lapak_api_log": "on for lapak, off (LAPAK_AUDIT_REQUEST_LOG=off) for lapak-nolog",
    }
    return run_as_command(NAME, inputs, measure)


if __name__ == "__main__":
    sys.exit(main())
