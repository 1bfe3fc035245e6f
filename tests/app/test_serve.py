"""`lapak serve` really serves: gunicorn (production mode) and the development server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def serve(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LAPAK_")}
    environment.update(
        LAPAK_INSTANCE_PATH=str(tmp_path / "instance"),
        LAPAK_WEB_WORKERS="1",
        PYTHONPATH=str(ROOT),
    )
    subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "upgrade"],
        cwd=tmp_path,
        env=environment,
        check=True,
        capture_output=True,
        timeout=120,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), *extra],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/health/live", timeout=2).status_code == 200:
                return process, base
        except requests.ConnectionError:
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


def test_serve_refuses_a_database_that_is_not_migrated(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LAPAK_")}
    environment.update(LAPAK_INSTANCE_PATH=str(tmp_path / "instance"), PYTHONPATH=str(ROOT))
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
