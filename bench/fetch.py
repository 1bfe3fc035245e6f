"""The commodity feed: each stage in process beside a json.loads + DataFrame floor, and over HTTP.

``python -m bench.fetch [--rows N] [--requests N] [--rounds R] [--workers K]``

Two payloads, each served from 127.0.0.1 by a small ``ThreadingHTTPServer`` that this benchmark
starts in a process of its own (so it does not share this process's GIL) and that answers with
pre-encoded bytes and a Content-Length:

* **fixture**: ``tests/fixtures/commodities.json`` exactly as stored (2,500 rows, with its
  quirks: duplicates, blank and odd names, prices like ``"12.500"``, missing dates, test rows);
* **big**: N rows (default 200,000) made from the fixture deterministically (seed 1): the
  fixture's rows in turn, each with a fresh uuid, and each plain-digit price raised by 0-999 so
  the prices are diverse; every other field (and quirk) is the fixture row's.

**In process**, per payload, R rounds (the median is reported; floors and pipeline alternate
which goes first), all on the same payload bytes:

* ``floor``: ``json.loads(body)`` then ``pandas.DataFrame(rows)``, the issue's floor;
* ``floor_http``: the same after a plain ``requests.get`` of the payload URL;
* ``fetch``: :func:`modules.fetch.client.fetch_json` through the SSRF-safe client (loopback
  allowed; it reads the body and decodes the JSON);
* ``clean``: :func:`modules.fetch.cleaning.clean` of the fetched rows;
* ``prepare``: :class:`modules.fetch.feeds.PreparedFeed` (sorts newest first) and its
  ``columns()`` (the filter columns), as a worker builds them once per feed version;
* ``convert``: :func:`modules.fetch.rates.convert` of every kept listing's price (what the
  list endpoint does per listing shown);
* ``aggregate``: :func:`modules.fetch.analysis.aggregate` by province and ISO week;
* ``keep``: ``zlib.compress(body, 1)``, what ``SnapshotStore.save`` does before writing the body
  to PostgreSQL and Redis (the writes themselves are not in this figure); ``digest`` is its
  SHA-256 of the body.

The headline ratio is (fetch + clean + aggregate) / floor: what serving a fresh aggregate costs
beside merely decoding the same payload into a DataFrame (target: within 3x at 200k rows).
(clean + aggregate) / floor leaves the transfer and decoding out.

**Over HTTP**: throw-away PostgreSQL and Redis (``tests/servers.py``), migrated, an admin user,
and ``lapak serve`` (gunicorn, K threaded workers) with both payloads as configured sources. First
the cold ``GET /api/v1/fetch/commodities/aggregate?source=big`` (the server fetches, keeps,
cleans and aggregates), then every endpoint is warmed up at K concurrent clients until every
worker has cleaned each feed and computed each aggregate once (bursts of K requests until three
bursts in a row come back without a slow one), then N requests per endpoint from one client, in
R batches alternating the order of the endpoints; p50 and p99 of those (target: a cached
response under 20 ms p50). Only a 200 counts as a success; each endpoint's body is checked once.

Only 127.0.0.1 is contacted, everything is bounded, and every server started is stopped, even on
failure or Ctrl-C/SIGTERM/SIGHUP.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from app import create_app
from app.config import Settings
from app.migrate import upgrade
from bench.http_overhead import (
    HOST,
    Run,
    clean_environment,
    free_port,
    load,
    positive,
    serving,
    venv_script,
)
from bench.runner import REPO_ROOT, Figures, bench_settings, run_as_command
from modules.fetch.analysis import aggregate
from modules.fetch.cleaning import clean
from modules.fetch.client import FetchPolicy, fetch_json
from modules.fetch.feeds import PreparedFeed
from modules.fetch.rates import DEFAULT_FIXED_IDR_USD, convert
from modules.fetch.snapshots import COMPRESSION_LEVEL, SnapshotInfo
from modules.user.services import create_user
from tests.servers import start_services

NAME = "fetch"
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "commodities.json"
SEED = 1
#: The offline rate the server uses too (no LAPAK_RATE_* set): 16,000 IDR to the dollar.
RATE = Decimal(DEFAULT_FIXED_IDR_USD)
GROUPING = ("province", "week")
PAYLOADS = ("fixture", "big")
MAX_BYTES = 100 * 1024 * 1024
TOTAL_TIMEOUT_S = 60
COLD_TIMEOUT_S = 180.0
#: 48 characters, for this benchmark's throw-away instance only.
SECRET = "bench-fetch-throwaway-secret-0123456789abcdefghi"  # noqa: S105
ADMIN_EMAIL = "bench.fetch.admin@example.test"
ADMIN_PASSWORD = "benchmark password, long enough"  # noqa: S105 - a throw-away user's
LOGIN = "/api/v1/auth/login"
RATE_PATH = "/api/v1/fetch/rates/IDR/USD"
COLD_PATH = "/api/v1/fetch/commodities/aggregate?source=big"
ENDPOINTS = (
    "/api/v1/fetch/commodities?source=fixture&limit=50",
    "/api/v1/fetch/commodities?source=big&limit=50",
    "/api/v1/fetch/commodities?source=big&limit=50&province=JAWA%20BARAT",
    "/api/v1/fetch/commodities/aggregate?source=fixture",
    "/api/v1/fetch/commodities/aggregate?source=big",
)
#: Warm-up: bursts of K concurrent requests per endpoint until this many bursts in a row have
#: no request slower than WARM_SLOW_S (a worker preparing a feed takes seconds), at most
#: WARM_MAX_BURSTS bursts.
WARM_STABLE_BURSTS = 3
WARM_SLOW_S = 0.5
WARM_MAX_BURSTS = 40
TARGET_RATIO = 3.0
TARGET_P50_MS = 20.0
STAGES = (
    "floor",
    "floor_http",
    "fetch",
    "clean",
    "prepare",
    "convert",
    "aggregate",
    "keep",
    "digest",
)


# --- the payloads ----------------------------------------------------------------------------


def generate_rows(base: Sequence[Mapping[str, Any]], count: int, seed: int = SEED) -> list[dict]:
    """``count`` rows cycling ``base``: fresh uuids, plain-digit prices raised by 0..999."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        row = dict(base[i % len(base)])
        row["uuid"] = str(uuid.UUID(int=rng.getrandbits(128)))
        if row.get("price") and str(row["price"]).isdigit():
            row["price"] = str(int(row["price"]) + rng.randint(0, 999))
        rows.append(row)
    return rows


def write_payloads(directory: Path, rows: int) -> dict[str, bytes]:
    """``fixture.json`` (the fixture's own bytes) and ``big.json`` in ``directory``."""
    fixture = FIXTURE.read_bytes()
    big = json.dumps(generate_rows(json.loads(fixture), rows)).encode()
    payloads = {"fixture": fixture, "big": big}
    for name, body in payloads.items():
        (directory / f"{name}.json").write_bytes(body)
    return payloads


def serve_payloads(directory: Path, port: int) -> None:
    """Serve ``directory/*.json`` from memory at ``/<name>.json`` until killed (a child process)."""
    bodies = {f"/{path.name}": path.read_bytes() for path in directory.glob("*.json")}
    bodies["/health/live"] = b'{"status": "ok"}'

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = bodies.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def start_payload_server(stack: ExitStack, workdir: Path, payload_dir: Path) -> dict[str, str]:
    """The payload server on 127.0.0.1 (stopped when ``stack`` closes); URL per payload."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.fetch", "--serve-payloads", str(payload_dir)]
    argv += ["--port", str(port)]
    env = clean_environment(PYTHONPATH=str(REPO_ROOT))
    stack.enter_context(serving("payloads", argv, env, workdir, port))
    return {name: f"http://{HOST}:{port}/{name}.json" for name in PAYLOADS}


# --- in process ------------------------------------------------------------------------------


def in_process(name: str, url: str, body: bytes, rounds: int) -> dict[str, Any]:
    """Median seconds per stage over ``rounds``, and what cleaning and grouping found."""
    policy = FetchPolicy(
        allow_loopback=True, max_bytes=MAX_BYTES, total_timeout=TOTAL_TIMEOUT_S, retries=0
    )
    info = SnapshotInfo(
        name, name, url, datetime.now(UTC), hashlib.sha256(body).hexdigest(), len(body)
    )
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: 127.0.0.1 only
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    found: dict[str, Any] = {}

    def timed(stage: str, call: Callable[[], Any]) -> Any:
        began = time.perf_counter()
        result = call()
        samples[stage].append(time.perf_counter() - began)
        return result

    def floors() -> None:
        timed("floor", lambda: pd.DataFrame(json.loads(body)))
        gc.collect()

        def over_http() -> pd.DataFrame:
            response = session.get(url, timeout=TOTAL_TIMEOUT_S)
            response.raise_for_status()
            return pd.DataFrame(json.loads(response.content))

        timed("floor_http", over_http)
        gc.collect()

    def pipeline() -> None:
        fetched = timed("fetch", lambda: fetch_json(name, url, policy))
        if fetched.content != body:
            raise RuntimeError(f"{name}: the fetched body is not the payload")
        rows = fetched.data
        cleaned = timed("clean", lambda: clean(rows))
        timed("prepare", lambda: PreparedFeed(info, len(rows), cleaned).columns())
        listings = cleaned.listings
        timed("convert", lambda: [convert(item.price_idr, RATE) for item in listings])
        result = timed("aggregate", lambda: aggregate(listings, RATE, GROUPING))
        timed("keep", lambda: zlib.compress(fetched.content, COMPRESSION_LEVEL))
        timed("digest", lambda: hashlib.sha256(fetched.content).hexdigest())
        counts = {
            "rows": len(rows),
            "kept": len(listings),
            "duplicates": cleaned.duplicates,
            "skipped": dict(sorted({**cleaned.skipped, **result.skipped}.items())),
            "groups": len(result.groups),
        }
        if found and found != counts:
            raise RuntimeError(f"{name}: round results differ: {found} vs {counts}")
        found.update(counts)

    try:
        for index in range(rounds):
            print(f"  in process, {name}: round {index + 1}/{rounds} ...", file=sys.stderr,
                  flush=True)  # fmt: skip
            for step in (floors, pipeline) if index % 2 == 0 else (pipeline, floors):
                gc.collect()
                step()
    finally:
        session.close()
    gc.collect()
    return {"samples": samples, "found": found}


def stage_rows(name: str, measured: Mapping[str, Any]) -> list[dict[str, Any]]:
    samples, rows = measured["samples"], measured["found"]["rows"]
    floor = statistics.median(samples["floor"])
    out = []
    for stage in STAGES:
        seconds = statistics.median(samples[stage])
        out.append(
            {
                "payload": name,
                "stage": stage,
                "median_s": round(seconds, 4),
                "min_s": round(min(samples[stage]), 4),
                "max_s": round(max(samples[stage]), 4),
                "rows_per_s": round(rows / seconds),
                "x_floor": round(seconds / floor, 2),
            }
        )
    return out


def ratio_row(name: str, measured: Mapping[str, Any]) -> dict[str, Any]:
    median = {stage: statistics.median(values) for stage, values in measured["samples"].items()}
    served = median["fetch"] + median["clean"] + median["aggregate"]
    ratio = served / median["floor"]
    return {
        "payload": name,
        "rows": measured["found"]["rows"],
        "floor_s": round(median["floor"], 4),
        "floor_http_s": round(median["floor_http"], 4),
        "fetch_clean_aggregate_s": round(served, 4),
        "over_floor": round(ratio, 2),
        "over_floor_http": round(served / median["floor_http"], 2),
        "clean_aggregate_over_floor": round(
            (median["clean"] + median["aggregate"]) / median["floor"], 2
        ),
        # Best of R on both sides: less sensitive to other load on the machine than medians.
        "over_floor_best": round(
            sum(min(measured["samples"][stage]) for stage in ("fetch", "clean", "aggregate"))
            / min(measured["samples"]["floor"]),
            2,
        ),
        "within_3x": ratio <= TARGET_RATIO,
    }


# --- over HTTP -------------------------------------------------------------------------------


def settings_for(database_url: str, redis_url: str, workdir: Path) -> Settings:
    return bench_settings(workdir, SECRET, database_url=database_url, redis_url=redis_url)


def prepare_database(settings: Settings) -> None:
    """Migrate, and create the admin that every request is made as."""
    upgrade(settings)
    app = create_app(settings)
    try:
        with app.app_context():
            create_user(ADMIN_EMAIL, role="admin", password=ADMIN_PASSWORD, name="Bench Admin")
    finally:
        app.extensions["lapak.jobs"].wait_embedded()
        app.extensions["lapak.db"].dispose()


def start_lapak(
    stack: ExitStack, workdir: Path, database_url: str, redis_url: str, workers: int,
    urls: Mapping[str, str],
) -> int:  # fmt: skip
    """``lapak serve`` with both payloads as sources (stopped when ``stack`` closes); its port."""
    env = clean_environment(
        LAPAK_DATABASE_URL=database_url,
        LAPAK_REDIS_URL=redis_url,
        LAPAK_SECRET_KEY=SECRET,
        LAPAK_INSTANCE_PATH=str(workdir / "instance"),
        LAPAK_WEB_WORKERS=str(workers),
        LAPAK_LOG_LEVEL="WARNING",
        LAPAK_FETCH_SOURCES=json.dumps(dict(urls)),
        LAPAK_FETCH_ALLOW_LOOPBACK="true",
        LAPAK_FETCH_MAX_BYTES=str(MAX_BYTES),
        LAPAK_FETCH_TOTAL_TIMEOUT=str(TOTAL_TIMEOUT_S),
        LAPAK_FETCH_FRESH_SECONDS="3600",
    )
    port = free_port()
    argv = [venv_script("lapak"), "serve", "--host", HOST, "--port", str(port)]
    stack.enter_context(serving("lapak", argv, env, workdir, port))
    return port


def call(
    port: int, method: str, path: str, *, headers: Mapping[str, str] | None = None,
    body: bytes | None = None, timeout: float = COLD_TIMEOUT_S,
) -> tuple[int, bytes, float]:  # fmt: skip
    """One request on a fresh connection: status, body, seconds until the body was read."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        began = time.perf_counter()
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        answer = response.read()
        return response.status, answer, time.perf_counter() - began
    finally:
        conn.close()


def log_in(port: int) -> dict[str, str]:
    body = json.dumps({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).encode()
    status, answer, _ = call(
        port, "POST", LOGIN, body=body, headers={"Content-Type": "application/json"}
    )
    if status != 200:
        raise RuntimeError(f"login answered {status}: {answer[:300]!r}")
    return {"Authorization": f"Bearer {json.loads(answer)['access_token']}"}


def check_body(path: str, answer: bytes, rows: Mapping[str, int]) -> None:
    """The answer is the feed the path names, whole and fresh; raise if not."""
    document = json.loads(answer)
    source = "big" if "source=big" in path else "fixture"
    meta = document["meta"]
    problems = []
    if meta["source"] != source or meta["stale"]:
        problems.append(f"source {meta['source']}, stale {meta['stale']}")
    if meta["rows"]["received"] != rows[source]:
        problems.append(f"{meta['rows']['received']} rows received, not {rows[source]}")
    if "aggregate" in path:
        if not document["groups"]:
            problems.append("no groups")
    elif len(document["items"]) != 50:
        problems.append(f"{len(document['items'])} items, not 50")
    elif "province=" in path and any(i["province"] != "JAWA BARAT" for i in document["items"]):
        problems.append("an item from another province")
    if problems:
        raise RuntimeError(f"GET {path}: " + "; ".join(problems))


def warm_up(port: int, path: str, headers: Mapping[str, str], workers: int) -> dict[str, Any]:
    """Bursts of ``workers`` concurrent requests until the slow first ones are over."""
    stable = bursts = errors = 0
    slowest: list[float] = []
    while stable < WARM_STABLE_BURSTS and bursts < WARM_MAX_BURSTS:
        run = load(port, path, workers, workers, headers=headers)
        bursts += 1
        errors += run.errors
        slowest.append(max(run.latencies_s, default=float("inf")))
        stable = stable + 1 if run.errors == 0 and slowest[-1] < WARM_SLOW_S else 0
    return {
        "endpoint": f"GET {path}",
        "requests": bursts * workers,
        "errors": errors,
        "slowest_s": round(max(slowest), 3),
        "settled": stable >= WARM_STABLE_BURSTS,
    }


def over_http(
    port: int, requests_: int, rounds: int, workers: int, rows: Mapping[str, int], big_mb: float
) -> dict[str, Any]:
    headers = log_in(port)
    # The rate, and each worker's first request, before the clock runs on the feed.
    rate_warm = warm_up(port, RATE_PATH, headers, workers)
    print("  HTTP: cold aggregate of big ...", file=sys.stderr, flush=True)
    status, answer, seconds = call(port, "GET", COLD_PATH, headers=headers)
    if status != 200:
        raise RuntimeError(f"cold GET {COLD_PATH} answered {status}: {answer[:500]!r}")
    check_body(COLD_PATH, answer, rows)
    cold = {
        "endpoint": f"GET {COLD_PATH}",
        "seconds": round(seconds, 3),
        "bytes": len(answer),
        "does": f"fetch {big_mb} MB from 127.0.0.1 + keep (compress, PostgreSQL, Redis) + "
        "clean + sort + aggregate + serialise, in one worker",
    }
    print("  HTTP: warming every worker up ...", file=sys.stderr, flush=True)
    warm = [rate_warm] + [warm_up(port, path, headers, workers) for path in ENDPOINTS]
    sizes = {}
    for path in ENDPOINTS:
        status, answer, _ = call(port, "GET", path, headers=headers)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {answer[:500]!r}")
        check_body(path, answer, rows)
        sizes[path] = len(answer)

    shares = [requests_ // rounds + (i < requests_ % rounds) for i in range(rounds)]
    batches: dict[str, list[Run]] = {path: [] for path in ENDPOINTS}
    for index, share in enumerate(shares):
        print(f"  HTTP: round {index + 1}/{rounds} ...", file=sys.stderr, flush=True)
        for path in ENDPOINTS if index % 2 == 0 else ENDPOINTS[::-1]:
            batches[path].append(load(port, path, share, 1, headers=headers))
    table = []
    for path, runs in batches.items():
        run = Run.merged(runs)
        p50 = run.percentile_ms(50)
        table.append(
            {
                "endpoint": f"GET {path}",
                "requests": run.requests,
                "errors": run.errors,
                "req_per_s": round(run.per_second, 1),
                "p50_ms": _ms(p50),
                "p99_ms": _ms(run.percentile_ms(99)),
                "max_ms": _ms(run.percentile_ms(100)),
                "bytes": sizes[path],
                "under_20ms_p50": p50 is not None and p50 < TARGET_P50_MS,
            }
        )
    return {"cold": cold, "warm_up": warm, "cached": table}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


# --- running it all --------------------------------------------------------------------------


def measure(inputs: Mapping[str, Any]) -> Figures:
    rounds, requests_, workers = (
        int(inputs["rounds"]),
        int(inputs["requests"]),
        int(inputs["workers"]),
    )
    services = None
    try:
        with tempfile.TemporaryDirectory(prefix="lapak-bench-fetch-") as tmp, ExitStack() as stack:
            workdir = Path(tmp)
            payload_dir = workdir / "payloads"
            payload_dir.mkdir()
            print("  generating the payloads ...", file=sys.stderr, flush=True)
            payloads = write_payloads(payload_dir, int(inputs["rows"]))
            urls = start_payload_server(stack, workdir, payload_dir)

            measured = {name: in_process(name, urls[name], payloads[name], rounds)
                        for name in PAYLOADS}  # fmt: skip
            rows = {name: measured[name]["found"]["rows"] for name in PAYLOADS}
            sizes_mb = {name: round(len(payloads[name]) / 1e6, 1) for name in PAYLOADS}
            del payloads
            gc.collect()

            print("  starting PostgreSQL and Redis, migrating ...", file=sys.stderr, flush=True)
            services = start_services()
            settings = settings_for(services.database_url, services.redis_url, workdir)
            prepare_database(settings)
            port = start_lapak(
                stack, workdir, services.database_url, services.redis_url, workers, urls
            )
            http_figures = over_http(port, requests_, rounds, workers, rows, sizes_mb["big"])
    finally:
        if services is not None:
            services.stop()
    big = ratio_row("big", measured["big"])
    cached = http_figures["cached"]
    return {
        "payloads": [
            {"payload": name, "mb": sizes_mb[name], **measured[name]["found"]} for name in PAYLOADS
        ],
        "stages": [row for name in PAYLOADS for row in stage_rows(name, measured[name])],
        "ratios": [ratio_row(name, measured[name]) for name in PAYLOADS],
        "http_cold": http_figures["cold"],
        "http_warm_up": http_figures["warm_up"],
        "http_cached": cached,
        "targets": {
            "big_aggregate_within_3x_floor": big["within_3x"],
            "big_over_floor": big["over_floor"],
            "cached_p50_under_20ms_all": all(row["under_20ms_p50"] for row in cached),
            "http_errors": sum(row["errors"] for row in cached)
            + sum(row["errors"] for row in http_figures["warm_up"]),
        },
        # The machine has few CPUs: other work on it moves every figure (see also the load
        # recorded when the run began).
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fetch",
        description="The commodity feed: stages in process beside json.loads + DataFrame, and "
        "cached responses through lapak serve.",
    )
    parser.add_argument(
        "--rows", type=positive, default=200_000, help="rows of the big feed (default 200000)"
    )
    parser.add_argument(
        "--requests",
        type=positive,
        default=300,
        help="measured requests per endpoint over HTTP (default 300)",
    )
    parser.add_argument(
        "--rounds",
        type=positive,
        default=3,
        help="in-process rounds (median reported) and HTTP batches (default 3)",
    )
    parser.add_argument("--workers", type=positive, default=2, help="gunicorn workers (default 2)")
    # The payload server's own entry point (a child process of the benchmark).
    parser.add_argument("--serve-payloads", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.rounds = min(args.rounds, args.requests)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_payloads is not None:
        serve_payloads(args.serve_payloads, args.port)
        return 0
    inputs = {
        "rows": args.rows,
        "requests": args.requests,
        "rounds": args.rounds,
        "workers": args.workers,
        "payloads": f"fixture: {FIXTURE.relative_to(REPO_ROOT)} as stored (2,500 rows); big: "
        f"--rows rows cycling the fixture, fresh uuids, plain-digit prices + 0..999 (seed {SEED})",
        "payload_server": "ThreadingHTTPServer on 127.0.0.1 in its own process, bytes in memory, "
        "Content-Length",
        "in_process": "median of --rounds; floor = json.loads + pandas.DataFrame of the same "
        "bytes; floor_http = requests.get + the same; fetch = fetch_json (SSRF-safe client, "
        "loopback allowed, decodes JSON); keep = zlib.compress(body, 1) only (no DB/Redis write)",
        "rate": f"IDR->USD {RATE} (fixed provider, the default)",
        "grouping": ",".join(GROUPING),
        "http": "lapak serve (gunicorn threaded workers) on throw-away PostgreSQL + Redis; one "
        "admin "
        "client, one connection per request; every worker warmed up first",
    }
    return run_as_command(NAME, inputs, measure)


if __name__ == "__main__":
    sys.exit(main())
