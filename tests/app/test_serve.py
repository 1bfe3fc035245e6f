"""`lapak serve` really serves: gunicorn (production mode) and the development server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from app.http import SAFE_HEADERS
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def embedded_environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    """This process's environment with no ``LAPAK_*`` but these (instance folder in tmp_path)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LAPAK_")}
    environment.update(LAPAK_INSTANCE_PATH=str(tmp_path / "instance"), PYTHONPATH=str(ROOT))
    environment.update({f"LAPAK_{name.upper()}": value for name, value in variables.items()})
    return environment


def migrated(tmp_path: Path, environment: dict[str, str]) -> dict[str, str]:
    """``environment``, once ``lapak db upgrade`` has run with it."""
    subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "upgrade"],
        cwd=tmp_path,
        env=environment,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return environment


def serve(
    tmp_path: Path, *extra: str, migrate: bool = True, **variables: str
) -> tuple[subprocess.Popen, str]:
    """Start ``lapak serve`` on a free port with these ``LAPAK_*`` variables; wait until live.

    ``migrate``: run ``lapak db upgrade`` before.
    """
    port = free_port()
    environment = embedded_environment(tmp_path, **{"web_workers": "1", **variables})
    if migrate:
        migrated(tmp_path, environment)
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), *extra],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_answers(process, f"{base}/health/live")
    return process, base


def wait_until_answers(process: subprocess.Popen, url: str) -> None:
    """Wait until ``url`` answers 200 (60 s at most; the server's output if it never does)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # still booting
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(process.stdout.read().decode())
        time.sleep(0.1)


def stop(process: subprocess.Popen) -> str:
    process.terminate()
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output.decode()


@pytest.mark.slow
@pytest.mark.parametrize("mode", [(), ("--dev",)], ids=["gunicorn", "development"])
def test_serve_answers_on_the_embedded_default(tmp_path: Path, mode: tuple[str, ...]) -> None:
    process, base = serve(tmp_path, *mode)
    try:
        ready = requests.get(f"{base}/health/ready", timeout=5)
        assert ready.status_code == 200
        assert ready.json()["checks"]["redis"] == {"ok": True, "mode": "embedded"}
        docs = requests.get(f"{base}/api/v1/docs", timeout=5)
        assert docs.status_code == 200
        assert "/api/v1/docs/assets/swagger-ui-bundle.js" in docs.text
        missing = requests.get(f"{base}/nowhere", headers={"X-Request-ID": "trace-1"}, timeout=5)
        assert missing.status_code == 404
        assert missing.headers["Content-Type"] == "application/problem+json"
        assert missing.headers["X-Request-ID"] == "trace-1"
    finally:
        output = stop(process)
    assert f"{base}/api/v1/docs" in output
    access = [line for line in output.splitlines() if '"event": "request"' in line]
    assert any('"request_id": "trace-1"' in line and '"status": 404' in line for line in access)


@pytest.mark.slow
def test_serve_upgrade_migrates_only_a_database_that_is_behind(tmp_path: Path) -> None:
    starts = []
    for _ in range(2):
        process, base = serve(tmp_path, "--upgrade", migrate=False)
        try:
            assert requests.get(f"{base}/health/ready", timeout=5).status_code == 200
        finally:
            starts.append(stop(process))

    migrating = "bringing the database to the newest revision"
    assert [migrating in output for output in starts] == [True, False]


def test_serve_refuses_a_database_that_is_not_migrated(tmp_path: Path) -> None:
    environment = embedded_environment(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "run `lapak db upgrade`" in result.stderr


TITLES = {400: "Bad Request", 414: "URI Too Long", 431: "Request Header Fields Too Large"}


def raw_request(base: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as bytes on a new connection; the status, headers and body answered."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body


def test_a_taken_port_is_refused_before_the_banner(tmp_path: Path) -> None:
    environment = embedded_environment(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode == 2
    assert result.stderr == f"lapak: port {port} in use on 127.0.0.1: set LAPAK_PORT (or --port)\n"
    assert result.stdout == ""


@pytest.mark.slow
def test_gunicorns_own_errors_are_problems_within_the_configured_limits(tmp_path: Path) -> None:
    process, base = serve(
        tmp_path,
        web_workers="2",
        limit_request_line="1000",
        limit_request_field_size="2000",
        limit_request_fields="20",
    )
    host = b"Host: localhost\r\n"
    try:
        below = raw_request(
            base,
            b"GET /health/live HTTP/1.1\r\n" + host + b"X-Big: " + b"a" * 1900 + b"\r\n"
            b"Connection: close\r\n\r\n",
        )
        answers = {
            "long request line": raw_request(
                base, b"GET /health/live?" + b"q" * 1000 + b" HTTP/1.1\r\n" + host + b"\r\n"
            ),
            "large header": raw_request(
                base, b"GET / HTTP/1.1\r\n" + host + b"X-Big: " + b"a" * 3000 + b"\r\n\r\n"
            ),
            "many headers": raw_request(
                base,
                b"GET / HTTP/1.1\r\n"
                + host
                + b"".join(b"X-H%d: 1\r\n" % n for n in range(25))
                + b"\r\n",
            ),
            "control character": raw_request(
                base, b"GET / HTTP/1.1\r\n" + host + b"X-Bad: a\x01b\r\n\r\n"
            ),
        }
    finally:
        stop(process)

    assert below[0] == 200
    statuses = {case: status for case, (status, _, _) in answers.items()}
    assert statuses == {
        "long request line": 414,
        "large header": 431,
        "many headers": 431,
        "control character": 400,
    }
    for case, (status, headers, body) in answers.items():
        assert headers["Content-Type"] == "application/problem+json", case
        assert {name: headers.get(name) for name in SAFE_HEADERS} == SAFE_HEADERS, case
        problem = json.loads(body)
        assert problem["status"] == status, case
        assert problem["title"] == TITLES[status], case
        assert problem["detail"], case


@pytest.mark.slow
def test_each_warning_is_logged_once_per_start_not_once_per_worker(tmp_path: Path) -> None:
    process, base = serve(tmp_path, web_workers="2", web_workres="4")
    try:
        assert requests.get(f"{base}/health/live", timeout=5).status_code == 200
    finally:
        output = stop(process)

    assert output.count("LAPAK_SECRET_KEY is not set") == 1, output
    assert output.count("LAPAK_VAULT_KEYS is not set") == 1, output
    assert output.count("LAPAK_WEB_WORKRES is not a Lapak setting") == 1, output
    assert "did you mean LAPAK_WEB_WORKERS?" in output


@pytest.mark.slow
def test_a_worker_takes_a_connection_only_when_a_thread_is_free(tmp_path: Path) -> None:
    # Two workers of one thread; one is kept busy. Every request sent meanwhile must reach the
    # other: a worker that accepted it anyway would queue it behind the held one.
    port = free_port()
    environment = embedded_environment(tmp_path, web_workers="2", web_threads="1")
    environment["HOLDING_DIR"] = str(tmp_path)
    command = [sys.executable, "-m", "bench.serve_floor", "tests.app.holding_app:app"]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    held: dict[str, requests.Response] = {}
    holder = threading.Thread(
        target=lambda: held.update(answer=requests.get(f"{base}/hold", timeout=90))
    )
    try:
        wait_until_answers(process, f"{base}/pid")
        holder.start()
        deadline = time.monotonic() + 30
        while not (tmp_path / "held").exists():
            assert time.monotonic() < deadline, "the held request never started"
            time.sleep(0.01)
        busy = (tmp_path / "held").read_text()
        answered = [requests.get(f"{base}/pid", timeout=20).text for _ in range(12)]
    finally:
        (tmp_path / "release").touch()
        if holder.ident is not None:
            holder.join(timeout=90)
        stop(process)

    assert held["answer"].text == busy
    assert busy not in answered
    assert len(set(answered)) == 1
