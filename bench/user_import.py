"""User CSV import, end to end through a real worker, beside the raw COPY floor, in the same run.

``python -m bench.user_import [--rows N ...] [--web-workers K] [--timeout S]``
(default: ``--rows 100000 --rows 1000000``)

Starts throw-away PostgreSQL and Redis (``tests/servers.py``), migrates, and runs Lapak as in
production: ``lapak serve`` (gunicorn) and one ``lapak worker`` (every queue), all on
127.0.0.1. Per size N it generates a CSV file of N valid users
(``email,name,role,phone``: some names with accents, local phone numbers), then:

* **copy** (the floor): ``TRUNCATE user_account CASCADE``, then psycopg ``COPY`` of the same N
  users, already normalised as the import stores them, streamed from a file into the same table
  with the same indexes, and committed. Nothing can put these rows in that table faster.
* **import**: ``TRUNCATE`` again, a fresh admin logs in, and the clock runs from the start of
  ``POST /api/v1/users/imports`` (multipart, streamed from the file) until
  ``GET /api/v1/users/imports/{id}`` says ``succeeded`` (polled every 0.25 s). The row count in
  ``user_account`` is checked afterwards.

While the import runs, the worker's process tree (the worker and its work horse, which RQ puts
in its own process group) is sampled from ``/proc/<pid>/status`` every 0.1 s: the peak of the
summed ``VmRSS`` (the target's measure; it counts the pages the horse shares with the worker
after the fork twice), the summed ``Pss`` from ``smaps_rollup`` (shared pages counted once), and
the largest single process's ``VmHWM`` (its peak RSS as the kernel saw it).

Targets (from the issue): 1M rows in under 60 s end to end, at least 25% of the COPY rate, and a
worker under 500 MB at 1M rows. The figures say whether each was met; the ratio is the figure
to compare across machines. Bounded: every wait has a deadline, and every process and server
started is stopped, even on failure or Ctrl-C/SIGTERM/SIGHUP.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from app import create_app
from app.config import Settings
from app.migrate import upgrade
from bench.http_overhead import (
    HOST,
    clean_environment,
    free_port,
    positive,
    serving,
    stop,
    venv_script,
)
from bench.runner import FAST_PASSWORDS, REPO_ROOT, Figures, bench_settings, run_as_command
from modules.user.services import create_user
from tests.servers import start_services

NAME = "user_import"
DEFAULT_ROWS = (100_000, 1_000_000)
#: 48 characters, for this benchmark's throw-away instance only.
SECRET = "bench-user-import-throwaway-secret-0123456789abc"  # noqa: S105
ADMIN_EMAIL = "bench.admin@example.test"
ADMIN_PASSWORD = "benchmark password, long enough"  # noqa: S105 - a throw-away user's
IMPORTS = "/api/v1/users/imports"
POLL_S = 0.25
SAMPLE_S = 0.1
TARGET_1M_S = 60.0
TARGET_RATIO = 0.25
TARGET_RSS_MB = 500.0
ROLES = ("customer", "customer", "customer", "staff", "seller")
NAMES = ("Pengguna", "Siti Nurhaliza", "Ñandú Siregar", "José Nasution", "Budi O'Connor")
#: OWASP's argon2id minimum: the benchmark measures imports, not logins.


# --- the data --------------------------------------------------------------------------------


def user_fields(i: int) -> tuple[str, str, str, str]:
    """Row i as written in the CSV file: email, name, role, local phone number."""
    return (
        f"bench.user.{i:07d}@Example.TEST",
        f"{NAMES[i % len(NAMES)]} {i}",
        ROLES[i % len(ROLES)],
        f"0812{i:08d}",
    )


def write_csv(path: Path, rows: int) -> int:
    """The import file (UTF-8, LF); returns its size in bytes."""
    with path.open("w", encoding="utf-8", newline="\n", buffering=1 << 20) as out:
        out.write("email,name,role,phone\n")
        for start in range(0, rows, 10_000):
            out.write(
                "".join(
                    "{},{},{},{}\n".format(*user_fields(i))
                    for i in range(start, min(rows, start + 10_000))
                )
            )
    return path.stat().st_size


def write_copy_data(path: Path, rows: int) -> None:
    """The same users, normalised as the import stores them, in COPY text format."""
    now = datetime.now(UTC).isoformat()
    with path.open("w", encoding="utf-8", newline="\n", buffering=1 << 20) as out:
        for start in range(0, rows, 10_000):
            lines = []
            for i in range(start, min(rows, start + 10_000)):
                email, name, role, phone = user_fields(i)
                local, domain = email.rsplit("@", 1)
                shown = f"{local}@{domain.lower()}"
                lines.append(
                    f"{uuid.uuid4()}\t{shown}\t{shown.lower()}\t{name}\t+62{phone[1:]}\t{role}"
                    f"\tt\t\\N\t{now}\t{now}\n"
                )
            out.write("".join(lines))


# --- the floor: COPY -------------------------------------------------------------------------


def truncate(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE user_account RESTART IDENTITY CASCADE")


def count_users(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM user_account").fetchone()[0]


def copy_floor(dsn: str, data: Path, rows: int) -> float:
    """Seconds to COPY ``data`` into user_account and commit (the table truncated first)."""
    truncate(dsn)
    columns = (
        "uuid, email, email_key, name, phone, role, active, password_hash, created_at, updated_at"
    )
    statement = f"COPY user_account ({columns}) FROM STDIN"
    with psycopg.connect(dsn) as conn, data.open("rb") as source:
        began = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            while block := source.read(1 << 20):
                copy.write(block)
        conn.commit()
        seconds = time.perf_counter() - began
    copied = count_users(dsn)
    if copied != rows:
        raise RuntimeError(f"COPY left {copied} users, expected {rows}")
    return seconds


# --- the import through HTTP and the worker --------------------------------------------------


def request(
    port: int, method: str, path: str, token: str | None = None, body: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        return response.status, json.loads(payload) if payload else {}
    finally:
        conn.close()


def log_in(port: int) -> str:
    body = json.dumps({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).encode()
    status, answer = request(port, "POST", "/api/v1/auth/login", body=body)
    if status != 200:
        raise RuntimeError(f"login answered {status}: {answer}")
    return answer["access_token"]


def upload(port: int, token: str, path: Path) -> tuple[int, dict[str, Any]]:
    """POST the file as multipart/form-data, streamed from disk with a Content-Length."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{path.name}"\r\nContent-Type: text/csv\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection(HOST, port, timeout=300)
    try:
        conn.putrequest("POST", IMPORTS)
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(len(head) + path.stat().st_size + len(tail)))
        conn.endheaders()
        conn.send(head)
        with path.open("rb") as source:
            while block := source.read(1 << 20):
                conn.send(block)
        conn.send(tail)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


class TreeSampler:
    """Samples the summed VmRSS of a process and its descendants, and their VmHWM, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss_kb = 0
        self.peak_pss_kb = 0  # shared (copy-on-write) pages counted once, split between owners
        self.peak_hwm_kb = 0  # the largest single process's own high-water mark
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_S)

    def sample(self) -> None:
        rss = pss = 0
        for pid in [self.pid, *descendants(self.pid)]:
            status = proc_status(pid)
            rss += status.get("VmRSS", 0)
            pss += proc_status(pid, "smaps_rollup").get("Pss", 0)
            self.peak_hwm_kb = max(self.peak_hwm_kb, status.get("VmHWM", 0))
        self.peak_rss_kb = max(self.peak_rss_kb, rss)
        self.peak_pss_kb = max(self.peak_pss_kb, pss)


def proc_status(pid: int, name: str = "status") -> dict[str, int]:
    """The kB figures of /proc/<pid>/<name> (empty if the process is gone)."""
    figures = {}
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                figures[key] = int(value.split()[0])
    return figures


def descendants(pid: int) -> list[int]:
    """Children, grandchildren... of ``pid``, whatever their process group (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def import_run(
    port: int, token: str, csv_path: Path, worker_pid: int, timeout: float
) -> dict[str, Any]:
    with TreeSampler(worker_pid) as sampler:
        began = time.perf_counter()
        status, job = upload(port, token, csv_path)
        accepted = time.perf_counter() - began
        if status != 202:
            raise RuntimeError(f"upload answered {status}: {job}")
        deadline = began + timeout
        while job["status"] not in ("succeeded", "succeeded_with_errors", "failed", "cancelled"):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"import not finished after {timeout:.0f} s: {job}")
            time.sleep(POLL_S)
            status, job = request(port, "GET", f"{IMPORTS}/{job['id']}", token)
            if status != 200:
                raise RuntimeError(f"GET import answered {status}: {job}")
        seconds = time.perf_counter() - began
        sampler.sample()
    return {
        "job": job,
        "seconds": seconds,
        "accepted_s": accepted,
        "peak_tree_rss_mb": sampler.peak_rss_kb / 1024,
        "peak_tree_pss_mb": sampler.peak_pss_kb / 1024,
        "peak_process_hwm_mb": sampler.peak_hwm_kb / 1024,
    }


# --- running it all --------------------------------------------------------------------------


def settings_for(database_url: str, redis_url: str, workdir: Path) -> Settings:
    return bench_settings(
        workdir,
        SECRET,
        database_url=database_url,
        redis_url=redis_url,
        module_env=FAST_PASSWORDS,
    )


def make_admin(settings: Settings) -> None:
    app = create_app(settings)
    try:
        with app.app_context():
            create_user(ADMIN_EMAIL, role="admin", password=ADMIN_PASSWORD, name="Bench Admin")
    finally:
        app.extensions["lapak.jobs"].wait_embedded()
        app.extensions["lapak.db"].dispose()


@contextmanager
def worker_process(env: Mapping[str, str], workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``lapak worker`` on every queue, in its own session; killed with its tree after."""
    log_path = workdir / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [venv_script("lapak"), "worker"],  # every queue, as deployed
            cwd=workdir, env=dict(env), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        time.sleep(0.5)
        if process.poll() is not None:
            raise RuntimeError(f"lapak worker exited at once:\n{log_path.read_text()[-3000:]}")
        yield process
    finally:
        tree = descendants(process.pid)
        stop(process)  # SIGTERM, then SIGKILL of its group
        for pid in tree:  # the work horse runs in a process group of its own
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def measure(inputs: Mapping[str, Any]) -> Figures:
    sizes = [int(n) for n in inputs["rows"]]
    timeout = float(inputs["timeout_s"])
    services = start_services()
    runs = []
    try:
        dsn = services.database_url.replace("+psycopg", "")
        with tempfile.TemporaryDirectory(prefix="lapak-bench-import-") as tmp, ExitStack() as stack:
            workdir = Path(tmp)
            settings = settings_for(services.database_url, services.redis_url, workdir)
            print("  migrating ...", file=sys.stderr, flush=True)
            upgrade(settings)
            env = clean_environment(
                LAPAK_DATABASE_URL=services.database_url,
                LAPAK_REDIS_URL=services.redis_url,
                LAPAK_SECRET_KEY=SECRET,
                LAPAK_INSTANCE_PATH=str(workdir / "instance"),
                LAPAK_WEB_WORKERS=str(inputs["web_workers"]),
                LAPAK_LOG_LEVEL="WARNING",
                PYTHONPATH=str(REPO_ROOT),
                **{f"LAPAK_{k.upper()}": v for k, v in FAST_PASSWORDS.items()},
            )
            port = free_port()
            argv = [venv_script("lapak"), "serve", "--host", HOST, "--port", str(port)]
            stack.enter_context(serving("lapak", argv, env, workdir, port))
            worker = stack.enter_context(worker_process(env, workdir))
            for rows in sizes:
                runs.append(one_size(rows, dsn, settings, port, worker.pid, workdir, timeout))
    finally:
        services.stop()
    return {"runs": runs, "targets": targets(runs)}


def one_size(
    rows: int, dsn: str, settings: Settings, port: int, worker_pid: int, workdir: Path,
    timeout: float,
) -> dict[str, Any]:  # fmt: skip
    print(f"  {rows} rows: generating ...", file=sys.stderr, flush=True)
    csv_path, copy_path = workdir / f"users-{rows}.csv", workdir / f"users-{rows}.copy"
    size = write_csv(csv_path, rows)
    write_copy_data(copy_path, rows)
    print(f"  {rows} rows: COPY floor ...", file=sys.stderr, flush=True)
    copy_s = copy_floor(dsn, copy_path, rows)
    copy_path.unlink()

    print(f"  {rows} rows: import through lapak serve + lapak worker ...", file=sys.stderr,
          flush=True)  # fmt: skip
    truncate(dsn)
    make_admin(settings)
    token = log_in(port)
    result = import_run(port, token, csv_path, worker_pid, timeout)
    csv_path.unlink()
    job = result["job"]
    stored = count_users(dsn) - 1  # the admin
    if job["status"] != "succeeded" or job["created"] != rows or stored != rows:
        raise RuntimeError(f"the import did not create {rows} users: {stored} stored, {job}")
    copy_rate = rows / copy_s
    import_rate = rows / result["seconds"]
    return {
        "rows": rows,
        "file_mb": round(size / 1e6, 1),
        "copy_s": round(copy_s, 2),
        "copy_rows_per_s": round(copy_rate),
        "import_s": round(result["seconds"], 2),
        "import_rows_per_s": round(import_rate),
        "ratio_import_over_copy": round(import_rate / copy_rate, 3),
        "upload_accepted_s": round(result["accepted_s"], 2),
        "job_rows_per_s": job["rows_per_second"],
        "worker_peak_rss_mb": round(result["peak_tree_rss_mb"], 1),
        "worker_peak_pss_mb": round(result["peak_tree_pss_mb"], 1),
        "process_peak_hwm_mb": round(result["peak_process_hwm_mb"], 1),
    }


def targets(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    million = next((r for r in runs if r["rows"] == 1_000_000), None)
    return {
        "1m_rows_under_60_s": None if million is None else million["import_s"] < TARGET_1M_S,
        "at_least_25pct_of_copy": all(r["ratio_import_over_copy"] >= TARGET_RATIO for r in runs),
        "worker_under_500_mb": all(r["worker_peak_rss_mb"] < TARGET_RSS_MB for r in runs),
        "worker_pss_under_500_mb": all(r["worker_peak_pss_mb"] < TARGET_RSS_MB for r in runs),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.user_import",
        description="CSV import end to end through lapak serve + lapak worker, beside COPY.",
    )
    parser.add_argument(
        "--rows",
        type=positive,
        action="append",
        help="rows per run (repeat for several runs; default 100000 and 1000000)",
    )
    parser.add_argument(
        "--web-workers", type=positive, default=2, help="gunicorn workers (default 2)"
    )
    parser.add_argument(
        "--timeout",
        type=positive,
        default=900,
        help="give up on an import after this many seconds (default 900)",
    )
    args = parser.parse_args(argv)
    args.rows = args.rows or list(DEFAULT_ROWS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    inputs = {
        "rows": args.rows,
        "web_workers": args.web_workers,
        "timeout_s": args.timeout,
        "file": "UTF-8 CSV, LF, email,name,role,phone; all rows valid and new",
        "import": "POST /api/v1/users/imports (mode=create) until GET says succeeded, "
        "one `lapak worker` (every queue), default import settings",
        "floor": "psycopg COPY of the same normalised rows into user_account (same indexes), "
        "table truncated before each run",
        "memory": "peak summed VmRSS and summed Pss (smaps_rollup) of the worker process tree, "
        "sampled every 0.1 s",
        "database": "PostgreSQL (throw-away, tests/servers.py: fsync off)",
    }
    return run_as_command(NAME, inputs, measure)


if __name__ == "__main__":
    sys.exit(main())
