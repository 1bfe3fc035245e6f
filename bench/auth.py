"""Authentication cost: login requests/s beside argon2, and what token + session checks add.

``python -m bench.auth [--logins N] [--requests N] [--rounds R] [--warmup W] [--workers K]``

Starts throw-away PostgreSQL and Redis (``tests/servers.py``), migrates, creates users, and serves
Lapak with ``lapak serve`` (gunicorn, K threaded workers) on 127.0.0.1, with the production argon2
defaults and the benchmark-only module ``bench.modules.authprobe``. Then, at 1 and 16 concurrent
clients:

* **login**: exactly N ``POST /api/v1/auth/login`` (client thread *i* logs in as user *i*, so
  the threads do not queue on one user's row lock). Beside it, the argon2id verification of the
  same hash with the same parameters, timed in this process in the same run. With one client,
  login p50 minus the verify time is what a login costs beyond argon2; one worker cannot log in
  faster than 1 / verify time, and K workers share the CPUs that argon2's lanes run on.
* **verification**: ``GET /api/v1/authprobe/open`` and ``GET /api/v1/authprobe/guarded`` are one
  view body (``{"status": "ok"}``, the body of ``/health/live``); the guarded one sits behind
  ``@requires()``. The p50 difference is what the bearer token check (signature, claims) and the
  session check (Redis-cached state, re-read from the primary when the cache entry expires)
  add to a request. ``GET /api/v1/auth/session`` is measured too, as a real protected endpoint
  that also reads its row. N requests per endpoint, in R rounds alternating which goes first.
  The same checks are also timed in this process, without HTTP, for a noise-free figure.
* **API keys**: ``GET /api/v1/authprobe/guarded`` signed with an API key (X-API-Key,
  X-Timestamp, X-Signature; the view names the scope ``probe:read``) against the same open view,
  both with a fresh ``?n=`` query on every request (a signature is accepted once, and the open
  view gets the same request line). The p50 difference is what the key check adds: the key's
  cached state and the replay ``SET NX`` in one Redis pipeline (the primary only on a cache
  miss, ``LAPAK_API_KEY_CACHE_SECONDS`` 10 by default), the HMAC check and the ``last_used_at``
  check (target under 0.5 ms); signing happens in the client before each request's clock
  starts. Timed in this process too (each sample its own signed request context).

With 16 clients and K workers, requests queue: a request waits for about 16/K others, so the
p50 difference there is the added service time multiplied by the queue length; the 1-client
difference is the per-request cost. Only 127.0.0.1 is contacted, request counts are bounded,
and every server started is stopped, even on failure or Ctrl-C/SIGTERM/SIGHUP.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from app import create_app
from app.config import Settings
from app.migrate import upgrade
from app.security import Principal
from bench.http_overhead import (
    HOST,
    REQUEST_TIMEOUT_S,
    WORKER_CLASS,
    Run,
    clean_environment,
    free_port,
    load,
    non_negative,
    positive,
    serving,
    venv_script,
)
from bench.runner import REPO_ROOT, Figures, bench_settings, run_as_command
from modules.auth import api_keys
from modules.auth import services as auth_services
from modules.auth.models import SIGNATURE_V1
from modules.auth.signing import request_target, sign, signed_message
from modules.user.passwords import Passwords
from modules.user.services import create_user
from tests.servers import start_services

NAME = "auth"
CONCURRENCY = (1, 16)
PASSWORD = "benchmark password, long enough"  # noqa: S105 - a throw-away user's
#: 48 characters, for this benchmark's throw-away instance only.
SECRET = "bench-auth-throwaway-secret-0123456789abcdefghij"  # noqa: S105
OPEN = "/api/v1/authprobe/open"
GUARDED = "/api/v1/authprobe/guarded"
SESSION = "/api/v1/auth/session"
LOGIN = "/api/v1/auth/login"
ARGON2_SAMPLES = 15
IN_PROCESS_SAMPLES = 2000


def user_email(index: int) -> str:
    return f"bench.user.{index}@example.test"


def signed_request(key: Mapping[str, str], path: str) -> tuple[str, dict[str, str]]:
    """``path`` with a fresh ``?n=`` (a signature is accepted once) and its signed headers."""
    target = f"{path}?n={next(_SEQUENCE)}"
    stamp = str(int(time.time()))
    message = signed_message(
        SIGNATURE_V1, stamp, "GET", request_target(path, target.partition("?")[2].encode()), b""
    )
    signature = sign(key["secret"], message)
    return target, {"X-API-Key": key["id"], "X-Timestamp": stamp, "X-Signature": signature}


def unsigned_request(path: str) -> tuple[str, dict[str, str]]:
    """``path`` with a fresh ``?n=``, as the signed requests have (the same request line)."""
    return f"{path}?n={next(_SEQUENCE)}", {}


_SEQUENCE = itertools.count()


def settings_for(database_url: str, redis_url: str, workdir: Path) -> Settings:
    return bench_settings(
        workdir,
        SECRET,
        database_url=database_url,
        redis_url=redis_url,
        module_packages=("modules", "bench.modules"),
    )


def prepare(settings: Settings, users: int) -> dict[str, Any]:
    """Migrate, create ``users`` users, and time argon2 and the in-process checks.

    Users ``0 .. users - 3`` are for the login load, ``users - 2`` for the in-process checks,
    ``users - 1`` for the verification load.
    """
    upgrade(settings)
    app = create_app(settings)
    try:
        with app.app_context():
            hashes = [
                create_user(user_email(i), name="Bench", password=PASSWORD).password_hash
                for i in range(users)
            ]
        # The servers' hasher: the same settings, so the same argon2 parameters.
        hasher = Passwords.from_settings(settings).hasher
        verify_s = []
        for _ in range(ARGON2_SAMPLES):
            began = time.perf_counter()
            hasher.verify(hashes[0], PASSWORD)
            verify_s.append(time.perf_counter() - began)
        key = make_api_key(app)
        return {
            "api_key": key,
            "argon2": {
                "parameters": f"argon2id t={hasher.time_cost} m={hasher.memory_cost} KiB "
                f"p={hasher.parallelism}",
                "verify_ms_median": round(statistics.median(verify_s) * 1000, 1),
                "verify_ms_min": round(min(verify_s) * 1000, 1),
                "samples": ARGON2_SAMPLES,
            },
            "in_process": {
                **in_process_checks(app, users - 2),
                **in_process_key_checks(app, key),
            },
        }
    finally:
        app.extensions["lapak.jobs"].wait_embedded()
        app.extensions["lapak.db"].dispose()


def in_process_checks(app: Any, user_index: int) -> dict[str, Any]:
    """Token verification alone, and the whole per-request check, without HTTP (microseconds)."""
    email = user_email(user_index)
    with app.test_request_context(LOGIN, method="POST", environ_base={"REMOTE_ADDR": HOST}):
        token = auth_services.login(email, PASSWORD, ip=HOST, user_agent="bench").token
    headers = {"Authorization": f"Bearer {token}"}
    with app.test_request_context(GUARDED, headers=headers):
        keyring = app.extensions["auth"].keyring
        auth_services.authenticate_request()  # load the session once, as the first request does
        verify = _timed(lambda: keyring.verify(token))
        check = _timed(auth_services.authenticate_request)
    return {
        "token_verify_us_p50": round(verify[len(verify) // 2] * 1e6, 1),
        "authenticate_request_us_p50": round(check[len(check) // 2] * 1e6, 1),
        "authenticate_request_us_p99": round(check[int(len(check) * 0.99)] * 1e6, 1),
        "samples": IN_PROCESS_SAMPLES,
    }


def make_api_key(app: Any) -> dict[str, str]:
    """A seller and their API key with the probe's scope: ``{"id": ..., "secret": ...}``."""
    with app.app_context():
        user = create_user("bench.keys@example.test", name="Bench", role="seller", password=None)
        owner = Principal(user.id, user.uuid, user.email, user.role)
        issued = api_keys.create_key(owner, name="bench", scopes=["probe:read"])
    return {"id": issued.key.key_id, "secret": issued.secret}


def in_process_key_checks(app: Any, key: Mapping[str, str]) -> dict[str, Any]:
    """The whole API-key check without HTTP, each sample a freshly signed request (us)."""
    seconds = []
    for _ in range(IN_PROCESS_SAMPLES):
        target, headers = signed_request(key, GUARDED)
        with app.test_request_context(target, headers=headers):
            began = time.perf_counter()
            auth_services.authenticate_request()
            seconds.append(time.perf_counter() - began)
    seconds.sort()
    return {
        "api_key_authenticate_us_p50": round(seconds[len(seconds) // 2] * 1e6, 1),
        "api_key_authenticate_us_p99": round(seconds[int(len(seconds) * 0.99)] * 1e6, 1),
    }


def _timed(call: Callable[[], Any]) -> list[float]:
    seconds = []
    for _ in range(IN_PROCESS_SAMPLES):
        began = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - began)
    return sorted(seconds)


def start_lapak(
    stack: ExitStack, workdir: Path, database_url: str, redis_url: str, workers: int
) -> int:
    """``lapak serve`` on 127.0.0.1 (stopped when ``stack`` closes); returns its port."""
    env = clean_environment(
        LAPAK_DATABASE_URL=database_url,
        LAPAK_REDIS_URL=redis_url,
        LAPAK_SECRET_KEY=SECRET,
        LAPAK_INSTANCE_PATH=str(workdir / "instance"),
        LAPAK_MODULE_PACKAGES="modules,bench.modules",
        LAPAK_WEB_WORKERS=str(workers),
        LAPAK_LOG_LEVEL="WARNING",
        PYTHONPATH=str(REPO_ROOT),  # bench.modules.authprobe
    )
    port = free_port()
    argv = [venv_script("lapak"), "serve", "--host", HOST, "--port", str(port)]
    stack.enter_context(serving("lapak", argv, env, workdir, port))
    return port


def login_body(index: int) -> bytes:
    return json.dumps({"email": user_email(index), "password": PASSWORD}).encode()


def log_in(port: int, index: int) -> str:
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request(
            "POST", LOGIN, body=login_body(index), headers={"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"login of {user_email(index)} answered {response.status}: {body!r}")
    return json.loads(body)["access_token"]


def measure(inputs: Mapping[str, Any]) -> Figures:
    logins, requests = int(inputs["logins"]), int(inputs["requests"])
    rounds, warmup, workers = int(inputs["rounds"]), int(inputs["warmup"]), int(inputs["workers"])
    users = max(CONCURRENCY) + 2
    services = start_services()
    try:
        with tempfile.TemporaryDirectory(prefix="lapak-bench-auth-") as tmp, ExitStack() as stack:
            workdir = Path(tmp)
            settings = settings_for(services.database_url, services.redis_url, workdir)
            print("  migrating, creating users, timing argon2 ...", file=sys.stderr, flush=True)
            prepared = prepare(settings, users)
            port = start_lapak(stack, workdir, services.database_url, services.redis_url, workers)
            login_rows = measure_logins(port, logins, warmup, prepared["argon2"])
            verification_rows, differences = measure_verification(
                port, requests, rounds, warmup, workers, user_index=users - 1
            )
            key_rows, key_differences = measure_api_keys(
                port, prepared["api_key"], requests, rounds, warmup, workers
            )
    finally:
        services.stop()
    return {
        "argon2_verify": prepared["argon2"],
        "login": login_rows,
        "verification": verification_rows,
        "verification_added_p50": differences,
        "api_key": key_rows,
        "api_key_added_p50": key_differences,
        "in_process_checks": prepared["in_process"],
    }


def measure_logins(
    port: int, logins: int, warmup: int, argon2: Mapping[str, Any]
) -> list[dict[str, Any]]:
    bodies = [login_body(i) for i in range(max(CONCURRENCY))]
    headers = {"Content-Type": "application/json"}
    verify_ms = argon2["verify_ms_median"]
    rows = []
    for concurrency in CONCURRENCY:
        print(f"  login, {concurrency} client(s) ...", file=sys.stderr, flush=True)
        if warmup:
            load(
                port,
                LOGIN,
                min(warmup, 2 * concurrency),
                concurrency,
                method="POST",
                headers=headers,
                bodies=bodies,
            )
        run = load(port, LOGIN, logins, concurrency, method="POST", headers=headers, bodies=bodies)
        row = _row("POST /api/v1/auth/login", concurrency, run)
        rows.append(
            {
                **row,
                "argon2_verify_ms": verify_ms,
                # What a login costs beyond argon2 (meaningful with one client: no queueing).
                "p50_minus_argon2_ms": _ms(row["p50_ms"] - verify_ms) if row["p50_ms"] else None,
                # One worker verifying back to back could not log in more often than this.
                "argon2_serial_limit_per_s": round(1000 / verify_ms, 1),
            }
        )
    return rows


def measure_verification(
    port: int, requests: int, rounds: int, warmup: int, workers: int, user_index: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    token = log_in(port, user_index)
    auth = {"Authorization": f"Bearer {token}"}
    targets: list[tuple[str, dict[str, str]]] = [(OPEN, {}), (GUARDED, auth), (SESSION, auth)]
    shares = [requests // rounds + (i < requests % rounds) for i in range(rounds)]
    rows, differences = [], []
    for concurrency in CONCURRENCY:
        print(
            f"  verification, {concurrency} client(s), {rounds} rounds ...",
            file=sys.stderr,
            flush=True,
        )
        for path, headers in targets:
            if warmup:
                load(port, path, warmup, concurrency, headers=headers)
        batches: dict[str, list[Run]] = {path: [] for path, _ in targets}
        for index, share in enumerate(shares):
            # Alternate the order (ABC, CBA, ...) so drift falls on every endpoint alike.
            order = targets if index % 2 == 0 else targets[::-1]
            for path, headers in order:
                batches[path].append(load(port, path, share, concurrency, headers=headers))
        merged = {path: Run.merged(runs) for path, runs in batches.items()}
        rows += [_row(f"GET {path}", concurrency, run) for path, run in merged.items()]
        differences.append(_difference(concurrency, batches[GUARDED], batches[OPEN], workers))
    return rows, differences


def measure_api_keys(
    port: int,
    key: Mapping[str, str],
    requests: int,
    rounds: int,
    warmup: int,
    workers: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The open probe vs the guarded one signed with an API key, each request made fresh."""
    makers: dict[str, Callable[[str], tuple[str, Mapping[str, str]]]] = {
        OPEN: unsigned_request,
        GUARDED: lambda path: signed_request(key, path),
    }
    shares = [requests // rounds + (i < requests % rounds) for i in range(rounds)]
    rows, differences = [], []
    for concurrency in CONCURRENCY:
        print(f"  API keys, {concurrency} client(s), {rounds} rounds ...", file=sys.stderr,
              flush=True)  # fmt: skip
        for path, maker in makers.items():
            if warmup:
                load(port, path, warmup, concurrency, request_for=maker)
        batches: dict[str, list[Run]] = {path: [] for path in makers}
        for index, share in enumerate(shares):
            order = list(makers.items()) if index % 2 == 0 else list(makers.items())[::-1]
            for path, maker in order:
                batches[path].append(load(port, path, share, concurrency, request_for=maker))
        merged = {path: Run.merged(runs) for path, runs in batches.items()}
        rows += [
            _row(f"GET {path}" + (" (signed)" if path == GUARDED else ""), concurrency, run)
            for path, run in merged.items()
        ]
        difference = _difference(concurrency, batches[GUARDED], batches[OPEN], workers)
        difference["under_0_5ms"] = (difference["added_p50_ms"] or 0) < 0.5
        differences.append(difference)
    return rows, differences


def _row(endpoint: str, concurrency: int, run: Run) -> dict[str, Any]:
    return {
        "endpoint": endpoint,
        "clients": concurrency,
        "requests": run.requests,
        "errors": run.errors,
        "req_per_s": round(run.per_second, 1),
        "p50_ms": _ms(run.percentile_ms(50)),
        "p99_ms": _ms(run.percentile_ms(99)),
    }


def _difference(
    concurrency: int, guarded: list[Run], open_: list[Run], workers: int
) -> dict[str, Any]:
    """Guarded minus open at p50, overall and per round (the spread shows the noise).

    ``added_service_ms_from_throughput`` estimates the added work per request from the two
    request rates (busy workers x the difference of the mean times between responses); unlike
    the p50 difference it does not grow with the queue at 16 clients.
    """

    def p50(runs: Sequence[Run]) -> float:
        return Run.merged(runs).percentile_ms(50) or float("nan")

    per_round = [p50([g]) - p50([o]) for g, o in zip(guarded, open_, strict=True)]
    added = p50(guarded) - p50(open_)
    busy = min(concurrency, workers)
    per_request = [1000 * busy / Run.merged(runs).per_second for runs in (guarded, open_)]
    return {
        "clients": concurrency,
        "open_p50_ms": _ms(p50(open_)),
        "guarded_p50_ms": _ms(p50(guarded)),
        "added_p50_ms": _ms(added),
        "round_min_ms": _ms(min(per_round)),
        "round_max_ms": _ms(max(per_round)),
        "under_1ms": added < 1.0,
        "added_service_ms_from_throughput": _ms(per_request[0] - per_request[1]),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.auth",
        description="Login requests/s beside argon2, and the latency token + session checks add.",
    )
    parser.add_argument(
        "--logins",
        type=positive,
        default=48,
        help="measured logins per client count (default 48)",
    )
    parser.add_argument(
        "--requests",
        type=positive,
        default=2400,
        help="measured requests per endpoint and client count (default 2400)",
    )
    parser.add_argument(
        "--rounds",
        type=positive,
        default=6,
        help="batches per endpoint, alternating the order (default 6)",
    )
    parser.add_argument(
        "--warmup",
        type=non_negative,
        default=100,
        help="unmeasured requests first, per endpoint (default 100)",
    )
    parser.add_argument("--workers", type=positive, default=2, help="gunicorn workers (default 2)")
    args = parser.parse_args(argv)
    args.rounds = min(args.rounds, args.requests)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    inputs = {
        "logins": args.logins,
        "requests": args.requests,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "workers": args.workers,
        "clients": list(CONCURRENCY),
        "worker_class": WORKER_CLASS,
        "database": "PostgreSQL primary (throw-away, tests/servers.py), session reads on it",
        "redis": "throw-away; session and API-key cache TTL 10 s (defaults), login throttle",
        "argon2": "production defaults (LAPAK_PASSWORD_* unset)",
        "jwt": "HS256 (default)",
        "comparison": f"{GUARDED} (@requires()) vs {OPEN}: the same view body, so the "
        "difference is the token + session check; nothing closer exists, as every real "
        "protected endpoint also does its own work. GET /api/v1/auth/session is shown as a "
        "real protected endpoint (it also reads its session row).",
        "api_key_comparison": f"{GUARDED} signed with an API key (scope probe:read) vs {OPEN}, "
        "both with a fresh ?n= query per request; target: added p50 under 0.5 ms",
    }
    return run_as_command(NAME, inputs, measure)


if __name__ == "__main__":
    sys.exit(main())
