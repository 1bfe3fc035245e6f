"""Event streams beside the API: latency of an authenticated endpoint with 200 open streams and
with none, under ``lapak serve`` as production runs it, in the same run.

``python -m bench.live [--streams S] [--requests N] [--rounds R] [--warmup W] [--workers K]
[--event-rate E] [--poll-ms P]``

Starts throw-away PostgreSQL and Redis (``tests/servers.py``), migrates, creates users, and
serves Lapak with ``lapak serve`` (gunicorn's threaded workers, K of them: the default of
``LAPAK_WEB_WORKERS``, and every other setting its default) on 127.0.0.1. A writer commits E
events a second into the outbox (``order.confirmed`` naming orders that do not exist: the
streams' audience lookups run and find nobody, so only staff and admins get them) for the whole
run, streams or not.

The probe is ``GET /api/v1/auth/session`` (a bearer token, its session check and a read of its
row), at 1 and 8 concurrent clients. Each round measures N / R requests with no stream open and
N / R with S streams open, alternating which goes first. For the latter it opens S streams
(``GET /api/v1/events/stream``, from 52 users, a few each: staff and admins who get every
event, sellers and customers whose filter is worked out for every event), waits for each one's
first line, measures, and closes them; what follows waits until the server has noticed (two
heartbeats later, ``LAPAK_LIVE_HEARTBEAT_SECONDS``: the first write after a close may still be
buffered). Another process reads every stream as it comes (and counts the events), as browsers
would: read by a thread of this one, the streams would hold its interpreter lock in bursts that
the probe's timing thread waits behind. A stream refused for a full worker (503) or for a user
whose closed streams the server has not ended yet (429) is opened again; the refusals are counted.

The headline is, per client count, the p50 and p99 latency with streams over without (the
target: within 10 %, a ratio of at most 1.10), and the same ratio per round to show the noise.
The client shares the machine with the servers; the ratios are what to compare. Only 127.0.0.1
is contacted, the run stops by itself, and every server started is stopped, even on failure or
Ctrl-C/SIGTERM/SIGHUP.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import selectors
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg

from app import create_app
from app.config import Settings
from app.migrate import upgrade
from bench.http_overhead import (
    HOST,
    REQUEST_TIMEOUT_S,
    Run,
    clean_environment,
    free_port,
    load,
    non_negative,
    positive,
    serving,
    venv_script,
)
from bench.runner import FAST_PASSWORDS, REPO_ROOT, Figures, bench_settings, run_as_command
from modules.user.services import create_user
from tests.servers import start_services

NAME = "live"
PROBE = "/api/v1/auth/session"
STREAM = "/api/v1/events/stream"
LOGIN = "/api/v1/auth/login"
CONCURRENCY = (1, 8)
PASSWORD = "benchmark password, long enough"  # noqa: S105 - throw-away users'
#: 48 characters, for this benchmark's throw-away instance only.
SECRET = "bench-live-throwaway-secret-0123456789abcdefghij"  # noqa: S105
#: Who holds the streams: staff and admins see every event, the others have theirs worked out.
#: Each user holds at most 4 of the 200 streams: a user may open 5 (LAPAK_LIVE_STREAMS_PER_USER).
STREAM_ROLES = ("admin", "staff", "seller", "customer") * 13
TARGET_RATIO = 1.10
#: ``LAPAK_LIVE_POLL_MS``'s default (modules/live/config.py).
DEFAULT_POLL_MS = 500
#: The server's heartbeat (the default): how long it takes to notice a closed stream.
HEARTBEAT_S = 15
#: Answers to a stream's opening that are tried again (and counted): a full worker's 503, and
#: a 429 for a user whose closed streams the server has not noticed yet.
REFUSALS = (b"HTTP/1.1 503", b"HTTP/1.1 429")


def user_email(role: str, index: int) -> str:
    return f"bench.{role}.{index}@example.test"


def prepare(settings: Settings) -> None:
    """Migrate and create the probe's user and the streams' users."""
    upgrade(settings)
    app = create_app(settings)
    try:
        with app.app_context():
            create_user(user_email("probe", 0), name="Bench", role="customer", password=PASSWORD)
            for index, role in enumerate(STREAM_ROLES):
                create_user(user_email(role, index), name="Bench", role=role, password=PASSWORD)
    finally:
        app.extensions["lapak.jobs"].wait_embedded()
        app.extensions["lapak.db"].dispose()


def start_lapak(
    stack: ExitStack,
    workdir: Path,
    database_url: str,
    redis_url: str,
    workers: int,
    poll_ms: int = DEFAULT_POLL_MS,
    stream_process: bool = True,
) -> int:
    """``lapak serve`` on 127.0.0.1 (stopped when ``stack`` closes); returns its port."""
    env = clean_environment(
        LAPAK_LIVE_POLL_MS=str(poll_ms),
        LAPAK_WEB_STREAM_PROCESS="1" if stream_process else "0",
        LAPAK_DATABASE_URL=database_url,
        LAPAK_REDIS_URL=redis_url,
        LAPAK_SECRET_KEY=SECRET,
        LAPAK_INSTANCE_PATH=str(workdir / "instance"),
        LAPAK_WEB_WORKERS=str(workers),
        LAPAK_LOG_LEVEL="WARNING",
        # This checkout's code, whatever the venv's editable install points at.
        PYTHONPATH=str(REPO_ROOT),
        **{f"LAPAK_{name.upper()}": value for name, value in FAST_PASSWORDS.items()},
    )
    port = free_port()
    argv = [venv_script("lapak"), "serve", "--host", HOST, "--port", str(port)]
    stack.enter_context(serving("lapak", argv, env, workdir, port))
    return port


def log_in(port: int, email: str) -> str:
    body = json.dumps({"email": email, "password": PASSWORD}).encode()
    status, answer = _exchange(
        port,
        f"POST {LOGIN} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body,
    )
    if status != 200:
        raise RuntimeError(f"login of {email} answered {status}: {answer!r}")
    return json.loads(answer)["access_token"]


def _exchange(port: int, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection((HOST, port), timeout=REQUEST_TIMEOUT_S) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


class EventWriter:
    """Commits ``rate`` events a second into the outbox until stopped (as the services would:
    one transaction each)."""

    def __init__(self, dsn: str, rate: float) -> None:
        self.dsn, self.rate = dsn, rate
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        if self.rate <= 0:
            return
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            while not self._stop.wait(1 / self.rate):
                payload = {"order": str(uuid.uuid4()), "name": "SO/BENCH", "state": "sale"}
                connection.execute(
                    "INSERT INTO core_outbox_event (event_id, name, payload, status, attempts,"
                    " delivered_to, created_at, next_attempt_at) VALUES (%s, 'order.confirmed',"
                    " %s, 'delivered', 1, '[]', now(), now())",
                    (uuid.uuid4(), json.dumps(payload)),
                )
                self.written += 1


class Streams:
    """Open event streams, read by one thread as their bytes come."""

    def __init__(self, port: int, tokens: Sequence[str], count: int) -> None:
        self.port, self.tokens, self.count = port, tokens, count
        self.sockets: list[socket.socket] = []
        self.refused = 0
        self.events = 0
        self.ended = 0
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, name="bench-streams", daemon=True)

    def open(self) -> None:
        """Open every stream (again when a full worker refuses one); each has sent its first
        line when this returns."""
        deadline = time.monotonic() + 120
        while len(self.sockets) < self.count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(self.sockets)} of {self.count} streams opened")
            token = self.tokens[len(self.sockets) % len(self.tokens)]
            connection = socket.create_connection((HOST, self.port), timeout=REQUEST_TIMEOUT_S)
            connection.sendall(
                f"GET {STREAM} HTTP/1.1\r\nHost: {HOST}\r\nAccept: text/event-stream\r\n"
                f"Authorization: Bearer {token}\r\n\r\n".encode()
            )
            head = b""
            while b"\r\n\r\n" not in head or b"id: " not in head:
                chunk = connection.recv(4096)
                if not chunk:
                    break
                head += chunk
                if head.startswith(REFUSALS):
                    break
            if not head.startswith(b"HTTP/1.1 200"):
                connection.close()
                if head.startswith(REFUSALS):  # a full worker, or a user's streams not yet ended
                    self.refused += 1
                    time.sleep(0.05)
                    continue
                raise RuntimeError(f"a stream answered {head[:200]!r}")
            connection.setblocking(False)
            self._selector.register(connection, selectors.EVENT_READ)
            self.sockets.append(connection)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.2):
                try:
                    chunk = key.fileobj.recv(65536)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    self._selector.unregister(key.fileobj)
                    self.ended += 1
                    continue
                self.events += chunk.count(b"\nevent: ")

    def close(self) -> None:
        self._stop.set()
        if self._reader.is_alive():
            self._reader.join(10)
        for connection in self.sockets:
            connection.close()
        self._selector.close()


class StreamsElsewhere:
    """:class:`Streams` held and read by a process of their own, as browsers are other
    machines: read by a thread of this process, they would hold its interpreter lock in bursts
    (a hundred streams readable after each poll) that the probe's client thread, timing a
    request, waits behind, and the benchmark would measure its own client."""

    def __init__(self, port: int, tokens: Sequence[str], count: int) -> None:
        self.refused = self.events = self.ended = 0
        context = multiprocessing.get_context("spawn")
        self._pipe, child_end = context.Pipe()
        self._process = context.Process(
            target=_hold_streams, args=(port, list(tokens), count, child_end), daemon=True
        )

    def open(self) -> None:
        self._process.start()
        self.refused = self._answer("opened")[0]

    def close(self) -> None:
        if not self._process.is_alive():
            return
        try:
            self._pipe.send("close")
            self.refused, self.events, self.ended = self._answer("closed")
        finally:
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()

    def _answer(self, expected: str) -> tuple[int, ...]:
        if not self._pipe.poll(180):
            raise RuntimeError(f"the streams' process did not answer {expected!r} in time")
        what, *values = self._pipe.recv()
        if what != expected:
            raise RuntimeError(f"the streams' process failed: {values}")
        return tuple(values)


def _hold_streams(port: int, tokens: list[str], count: int, pipe: Any) -> None:
    """(The streams' process.) Open the streams, say so, read them until told to close."""
    streams = Streams(port, tokens, count)
    try:
        streams.open()
        pipe.send(("opened", streams.refused))
        pipe.recv()
    except BaseException as error:
        pipe.send(("failed", repr(error)))
        raise
    finally:
        streams.close()
    pipe.send(("closed", streams.refused, streams.events, streams.ended))


def measure(inputs: Mapping[str, Any]) -> Figures:
    requests, rounds = int(inputs["requests"]), int(inputs["rounds"])
    warmup, workers, streams = int(inputs["warmup"]), int(inputs["workers"]), int(inputs["streams"])
    services = start_services()
    try:
        with tempfile.TemporaryDirectory(prefix="lapak-bench-live-") as tmp, ExitStack() as stack:
            workdir = Path(tmp)
            settings = bench_settings(
                workdir,
                SECRET,
                database_url=services.database_url,
                redis_url=services.redis_url,
                module_env=FAST_PASSWORDS,
            )
            print("  migrating, creating users ...", file=sys.stderr, flush=True)
            prepare(settings)
            port = start_lapak(
                stack,
                workdir,
                services.database_url,
                services.redis_url,
                workers,
                int(inputs["poll_ms"]),
                bool(inputs["stream_process"]),
            )
            probe = {"Authorization": f"Bearer {log_in(port, user_email('probe', 0))}"}
            tokens = [log_in(port, user_email(r, i)) for i, r in enumerate(STREAM_ROLES)]
            writer = EventWriter(
                services.database_url.replace("+psycopg", ""), inputs["event_rate"]
            )
            writer.start()
            try:
                figures = _measure_rounds(port, probe, tokens, streams, requests, rounds, warmup)
            finally:
                writer.stop()
            return {**figures, "events_written": writer.written}
    finally:
        services.stop()


def _measure_rounds(
    port: int,
    probe: Mapping[str, str],
    tokens: Sequence[str],
    count: int,
    requests: int,
    rounds: int,
    warmup: int,
) -> Figures:
    shares = [requests // rounds + (i < requests % rounds) for i in range(rounds)]
    batches: dict[tuple[int, str], list[Run]] = {}
    opened = {"refused": 0, "events_read": 0, "ended_early": 0}
    for concurrency in CONCURRENCY:
        if warmup:
            load(port, PROBE, warmup, concurrency, headers=probe)
    for index, share in enumerate(shares):
        print(f"  round {index + 1}/{rounds} ...", file=sys.stderr, flush=True)
        # Alternate which case goes first, so that drift falls on both alike.
        for case in ("none", "streams") if index % 2 == 0 else ("streams", "none"):
            if case == "none":
                for concurrency in CONCURRENCY:
                    batches.setdefault((concurrency, "none"), []).append(
                        load(port, PROBE, share, concurrency, headers=probe)
                    )
                continue
            streams = StreamsElsewhere(port, tokens, count)
            try:
                streams.open()
                for concurrency in CONCURRENCY:
                    batches.setdefault((concurrency, "streams"), []).append(
                        load(port, PROBE, share, concurrency, headers=probe)
                    )
            finally:
                streams.close()
                opened["refused"] += streams.refused
                opened["events_read"] += streams.events
                opened["ended_early"] += streams.ended
            # The server ends a closed stream when a write fails: a heartbeat's, and the first
            # one after the close may still reach the kernel's buffer: two heartbeats.
            time.sleep(2 * HEARTBEAT_S + 2)
    rows, ratios = [], []
    for concurrency in CONCURRENCY:
        none, with_streams = batches[concurrency, "none"], batches[concurrency, "streams"]
        for label, runs in (("none", none), (f"{count} streams", with_streams)):
            rows.append(_row(label, concurrency, Run.merged(runs)))
        ratios.append(_ratios(concurrency, none, with_streams))
    return {
        "probe": rows,
        "ratios_streams_over_none": ratios,
        "target_met": all(
            r["p50_ratio"] <= TARGET_RATIO and r["p99_ratio"] <= TARGET_RATIO for r in ratios
        ),
        "streams_opened_per_round": count,
        "streams_refused_then_opened_again": opened["refused"],
        "stream_events_read": opened["events_read"],
        "streams_ended_by_the_server_while_measured": opened["ended_early"],
    }


def _row(label: str, concurrency: int, run: Run) -> dict[str, Any]:
    return {
        "open_streams": label,
        "clients": concurrency,
        "requests": run.requests,
        "errors": run.errors,
        "req_per_s": round(run.per_second, 1),
        "p50_ms": _ms(run.percentile_ms(50)),
        "p99_ms": _ms(run.percentile_ms(99)),
    }


def _ratios(concurrency: int, none: list[Run], streams: list[Run]) -> dict[str, Any]:
    def ratio(q: float, a: Sequence[Run], b: Sequence[Run]) -> float:
        return (Run.merged(a).percentile_ms(q) or 0) / (Run.merged(b).percentile_ms(q) or 1)

    per_round = [ratio(50, [s], [n]) for s, n in zip(streams, none, strict=True)]
    return {
        "clients": concurrency,
        "p50_ratio": round(ratio(50, streams, none), 3),
        "p99_ratio": round(ratio(99, streams, none), 3),
        "p50_ratio_round_min": round(min(per_round), 3),
        "p50_ratio_round_max": round(max(per_round), 3),
        # Each round's p50 (none, streams) and p99 (none, streams): a steady cost, or a noisy
        # round?
        "rounds_ms": [
            [_ms(run.percentile_ms(q)) for q in (50, 99) for run in (n, s)]
            for n, s in zip(none, streams, strict=True)
        ],
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.live",
        description="API latency with open event streams against none, in the same run.",
    )
    parser.add_argument("--streams", type=positive, default=200, help="streams (default 200)")
    parser.add_argument(
        "--requests",
        type=positive,
        default=3000,
        help="measured requests per client count and case, over the rounds (default 3000)",
    )
    parser.add_argument(
        "--rounds",
        type=positive,
        default=4,
        help="rounds, each with and without, alternating which goes first (default 4)",
    )
    parser.add_argument(
        "--warmup", type=non_negative, default=100, help="unmeasured requests first (default 100)"
    )
    parser.add_argument(
        "--workers",
        type=positive,
        default=Settings().web_workers,
        help="gunicorn workers (default: LAPAK_WEB_WORKERS' default on this machine)",
    )
    parser.add_argument(
        "--poll-ms",
        type=positive,
        default=DEFAULT_POLL_MS,
        help=f"LAPAK_LIVE_POLL_MS (default {DEFAULT_POLL_MS}, Lapak's); another value is "
        "written as results/live_poll<ms>.json, leaving the default's result alone",
    )
    parser.add_argument(
        "--worker-threads",
        action="store_true",
        help="streams on the workers' threads (LAPAK_WEB_STREAM_PROCESS=0), not the stream "
        "process; written as results/live_threads.json",
    )
    parser.add_argument(
        "--event-rate",
        type=float,
        default=10.0,
        help="events committed per second during the whole run (default 10)",
    )
    args = parser.parse_args(argv)
    args.rounds = min(args.rounds, args.requests)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    defaults = Settings()
    inputs = {
        "streams": args.streams,
        "requests": args.requests,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "workers": args.workers,
        "event_rate": args.event_rate,
        "clients": list(CONCURRENCY),
        "probe": f"GET {PROBE} (bearer token, session check, reads its row)",
        "stream_process": not args.worker_threads,
        "worker_class": f"gthread: {defaults.web_threads} request threads per worker; "
        + (
            f"+ {defaults.web_streams} stream threads per worker (LAPAK_WEB_STREAM_PROCESS=0)"
            if args.worker_threads
            else "streams served by the stream process (the default)"
        ),
        "database": "PostgreSQL primary (throw-away, tests/servers.py)",
        "redis": "throw-away; session cache TTL 10 s (default)",
        "stream_users": f"{len(STREAM_ROLES)} users ({', '.join(sorted(set(STREAM_ROLES)))}), "
        "each holding an equal share of the streams",
        "poll_ms": args.poll_ms,
        "live_settings": f"poll {args.poll_ms} ms"
        + (" (the default)" if args.poll_ms == DEFAULT_POLL_MS else " (not the default)")
        + "; the defaults: heartbeat 15 s, session check 5 s",
        "target": f"p50 and p99 with streams within {round((TARGET_RATIO - 1) * 100)} % of none",
    }
    name = NAME if args.poll_ms == DEFAULT_POLL_MS else f"{NAME}_poll{args.poll_ms}"
    if args.worker_threads:
        name += "_threads"
    return run_as_command(name, inputs, measure)


if __name__ == "__main__":
    sys.exit(main())
