"""The common runner: one call measures, records the context, writes JSON and prints a table.

``run_benchmark(name, inputs, measure)`` calls ``measure(inputs)`` once and returns the record it
wrote to ``bench/results/<name>.json``::

    {"name", "timestamp" (UTC, ISO 8601), "duration_s", "machine", "versions", "inputs",
     "figures"}

``figures`` is whatever ``measure`` returned (a JSON-serialisable dict). In the printed table, a
figure that is a list of dicts is shown as a table with one row per dict; any other figure is
shown as ``key: value``. Values are printed as given, so ``measure`` rounds what it reports.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: Distributions whose versions every result records (``None`` when not installed).
KEY_PACKAGES = (
    "lapak",
    "flask",
    "flask-smorest",
    "sqlalchemy",
    "gunicorn",
    "psycopg",
    "rq",
    "redis",
)

Figures = dict[str, Any]


def machine() -> dict[str, Any]:
    """The host the figures come from: name, CPUs, OS, Python, and its load when the run began."""
    return {
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "loadavg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def versions() -> dict[str, str | None]:
    """Installed versions of :data:`KEY_PACKAGES`, plus the git revision of the checkout.

    ``lapak_git`` is the commit hash, suffixed ``-dirty`` when the work tree has changes, or
    ``None`` when git is unavailable.
    """
    found: dict[str, str | None] = {}
    for name in KEY_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    found["lapak_git"] = _git_revision()
    return found


def _git_revision() -> str | None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        revision = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{revision}-dirty" if dirty else revision


def run_benchmark(
    name: str,
    inputs: Mapping[str, Any],
    measure: Callable[[Mapping[str, Any]], Figures],
    *,
    results_dir: Path = RESULTS_DIR,
) -> dict[str, Any]:
    """Run ``measure(inputs)`` once, write ``<results_dir>/<name>.json`` and print a table.

    The JSON is pretty-printed with sorted keys and replaced atomically, so a failed run never
    leaves a half-written file (nor overwrites the previous result). Returns the record written.
    """
    started, host = datetime.now(UTC), machine()
    clock = time.perf_counter()
    figures = measure(inputs)
    record = {
        "name": name,
        "timestamp": started.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - clock, 1),
        "machine": host,
        "versions": versions(),
        "inputs": dict(inputs),
        "figures": figures,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    partial.replace(path)
    print(render(record), flush=True)
    print(f"\nwritten: {_shown(path)}", flush=True)
    return record


def render(record: Mapping[str, Any]) -> str:
    """The human-readable form of a record: context lines, then the figures."""
    m, v = record["machine"], record["versions"]
    lines = [
        f"== {record['name']}  {record['timestamp']}  ({record['duration_s']} s)",
        f"machine: {m['hostname']}, {m['cpu_count']} CPUs, {m['platform']}, "
        f"{m['python_implementation']} {m['python']}, load {m['loadavg_1m']}",
        "versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val is not None),
        "inputs: " + ", ".join(f"{k}={val}" for k, val in record["inputs"].items()),
    ]
    for key, value in record["figures"].items():
        if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
            lines += ["", f"{key}:", *_table(value)]
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


def _table(rows: list[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    cells = [[_cell(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    left = [isinstance(rows[0].get(col), str) for col in columns]

    def line(values: list[str]) -> str:
        return "  ".join(
            val.ljust(w) if is_left else val.rjust(w)
            for val, w, is_left in zip(values, widths, left, strict=True)
        ).rstrip()

    return [line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)]


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":  # pragma: no cover - a quick look at what gets recorded
    json.dump({"machine": machine(), "versions": versions()}, sys.stdout, indent=2)
    print()


def run_as_command(name: str, inputs: Mapping[str, Any], measure: Callable[..., Figures]) -> int:
    """:func:`run_benchmark` for a ``main()``: the exit code, and no server left behind.

    The servers a benchmark starts run in their own sessions, so nothing but this process will
    stop them: SIGTERM and SIGHUP (a CI timeout, a closed terminal) unwind through the
    ``finally`` blocks that stop them, as Ctrl-C does.
    """
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _exit_on_signal)
    try:
        run_benchmark(name, inputs, measure)
    except KeyboardInterrupt:
        print("interrupted: servers stopped, no result written", file=sys.stderr)
        return 130
    return 0


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


#: argon2id at OWASP's minimum: benchmarks that create many users need not wait on the
#: production cost (bench/auth measures that cost on purpose and does not use this).
FAST_PASSWORDS = {
    "password_memory_kib": "19456",
    "password_time_cost": "2",
    "password_parallelism": "1",
}


def bench_settings(workdir: Path, secret: str, **overrides: Any) -> Any:
    """Settings for a throw-away Lapak in ``workdir``: exactly these, no environment, no .env."""
    from app.config import Settings

    return Settings.from_env(
        environ={},
        overrides={
            "secret_key": secret,
            "instance_path": workdir / "instance",
            "log_level": "WARNING",
            **overrides,
        },
        dotenv_path=workdir / ".env",  # none: the settings are exactly these
    )
