"""``lapak serve`` as production runs it (gunicorn's threaded worker) on the embedded default:
streams are served beside the API, the process's cap answers 503, and a stop ends them."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.app.test_serve import embedded_environment, serve, stop
from tests.modules.conftest import Caller

from .conftest import Sse, open_stream

SETTINGS = {
    "web_threads": "2",
    "web_streams": "2",
    "live_heartbeat_seconds": "1",
    "live_poll_ms": "100",
}


def demo_admin(tmp_path: Path) -> tuple[str, str]:
    """``lapak demo`` on the served instance: the admin's email and password it printed."""
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "demo"],
        cwd=tmp_path,
        env=embedded_environment(tmp_path, **SETTINGS),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = re.search(r"^\s+admin\s+(\S+)\s+password: (\S+)$", result.stdout, re.MULTILINE)
    assert found is not None, result.stdout
    return found.group(1), found.group(2)


def ends(sse: Sse, within: int = 10) -> bool:
    """Whether the stream ends within ``within`` more messages."""
    return any(sse.next() is None for _ in range(within))


@pytest.mark.slow
def test_lapak_serve_streams_beside_the_api_and_ends_the_streams_when_it_stops(
    tmp_path: Path,
) -> None:
    process, base = serve(tmp_path, **SETTINGS)
    try:
        email, password = demo_admin(tmp_path)
        credentials = {"email": email, "password": password}
        logged_in = requests.post(f"{base}/api/v1/auth/login", json=credentials, timeout=30)
        assert logged_in.status_code == 200, logged_in.text
        admin = Caller(email, None, 0, logged_in.json()["access_token"])  # type: ignore[arg-type]
        streams = [open_stream(base, admin) for _ in range(2)]
        assert [sse.status for sse in streams] == [200, 200]
        for sse in streams:
            sse.next()

        refused = open_stream(base, admin)
        assert refused.status == 503
        assert refused.response.getheader("Retry-After") == "2"
        assert refused.problem()["type"] == "urn:lapak:problem:streams-full"
        refused.close()
        # Both streams hold their threads; the API's two are free.
        for _ in range(5):
            session = requests.get(f"{base}/api/v1/auth/session", headers=admin.headers, timeout=10)
            assert session.status_code == 200, session.text
        user = {"email": "new.one@example.test", "name": "New One"}
        created = requests.post(f"{base}/api/v1/users", json=user, headers=admin.headers,
                                timeout=30)  # fmt: skip
        assert created.status_code == 201, created.text

        [event] = streams[0].events(lambda m: m.event == "user.created")
        assert event.json["payload"]["uuid"] == created.json()["id"]
    finally:
        output = stop(process)

    for sse in streams:  # ended by the stop, after what was sent before it
        assert ends(sse)
        sse.close()
    assert "Traceback" not in output, output


@pytest.mark.slow
def test_a_client_that_stops_reading_releases_its_stream_under_gunicorn(tmp_path: Path) -> None:
    process, base = serve(tmp_path, **{**SETTINGS, "web_streams": "1"})
    try:
        email, password = demo_admin(tmp_path)
        credentials = {"email": email, "password": password}
        logged_in = requests.post(f"{base}/api/v1/auth/login", json=credentials, timeout=30)
        assert logged_in.status_code == 200, logged_in.text
        admin = Caller(email, None, 0, logged_in.json()["access_token"])  # type: ignore[arg-type]
        address = urlsplit(base)
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
        stalled.connect((address.hostname, address.port))
        head = f"GET /api/v1/events/stream HTTP/1.1\r\nHost: {address.netloc}\r\n"
        stalled.sendall(f"{head}Authorization: Bearer {admin.token}\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:  # its head, then it reads no more
            answer += stalled.recv(1)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        busy = open_stream(base, admin)
        assert busy.status == 503  # the stalled client holds the only slot
        busy.close()
        # 6 MB of events, more than the kernel's buffers hold, written to the served database.
        with sqlite3.connect(tmp_path / "instance" / "lapak.db") as database:
            database.executemany(
                "INSERT INTO core_outbox_event (event_id, name, payload, status, attempts,"
                " delivered_to, created_at, next_attempt_at) VALUES (?, 'live.probe', ?,"
                " 'delivered', 0, '[]', datetime('now'), datetime('now'))",
                [(uuid.uuid4().hex, json.dumps({"blob": "x" * 100_000})) for _ in range(60)],
            )

        deadline = time.monotonic() + 60  # writes give up after two heartbeats (2 s)
        while True:
            again = open_stream(base, admin)
            if again.status == 200 or time.monotonic() > deadline:
                break
            again.close()
            time.sleep(0.2)
        assert again.status == 200
        again.close()
        stalled.close()
    finally:
        output = stop(process)

    assert "Traceback" not in output, output
    assert "closed a connection whose client stopped reading" in output
