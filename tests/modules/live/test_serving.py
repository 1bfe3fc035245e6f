"""``lapak serve`` as production runs it (gunicorn's threaded worker) on the embedded default:
streams are served beside the API (by the stream process, or with LAPAK_WEB_STREAM_PROCESS=0 by
the workers' threads), the cap answers 503, a stop ends them; the stream process that stops
answering is a 503 with Retry-After, and one that dies is started again. And the server's side
of the stream process (``StreamProcess``) on its own: one that stays frozen is killed and
started again."""

from __future__ import annotations

import json
import os
import re
import signal
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

from app.stream_host import StreamHostClient, StreamProcess
from tests.app.test_serve import embedded_environment, migrated, serve, stop
from tests.modules.conftest import Caller

from .conftest import STREAM, Sse, open_stream

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


def log_in(base: str, email: str, password: str) -> Caller:
    credentials = {"email": email, "password": password}
    logged_in = requests.post(f"{base}/api/v1/auth/login", json=credentials, timeout=30)
    assert logged_in.status_code == 200, logged_in.text
    return Caller(email, None, 0, logged_in.json()["access_token"])  # type: ignore[arg-type]


def stream_process(server: subprocess.Popen) -> int:
    """The pid of the stream process of the ``lapak serve`` running as ``server``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == server.pid and b"app.stream_host" in command:
                return int(entry.name)
        time.sleep(0.1)
    raise AssertionError("no stream process")


def write_probes(tmp_path: Path, count: int, blob: str = "") -> None:
    """``count`` events written to the served database, behind the app's back."""
    with sqlite3.connect(tmp_path / "instance" / "lapak.db") as database:
        database.executemany(
            "INSERT INTO core_outbox_event (event_id, name, payload, status, attempts,"
            " delivered_to, created_at, next_attempt_at) VALUES (?, 'live.probe', ?,"
            " 'delivered', 0, '[]', datetime('now'), datetime('now'))",
            [(uuid.uuid4().hex, json.dumps({"blob": blob})) for _ in range(count)],
        )


@pytest.mark.slow
@pytest.mark.parametrize("stream_process", ["1", "0"], ids=["stream-process", "worker-threads"])
def test_lapak_serve_streams_beside_the_api_and_ends_the_streams_when_it_stops(
    tmp_path: Path, stream_process: str
) -> None:
    process, base = serve(tmp_path, **SETTINGS, web_stream_process=stream_process)
    try:
        admin = log_in(base, *demo_admin(tmp_path))
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
        admin = log_in(base, *demo_admin(tmp_path))
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
        write_probes(tmp_path, 60, "x" * 100_000)

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


@pytest.mark.slow
def test_1000_events_through_the_stream_process_with_a_reconnect_lose_and_repeat_nothing(
    tmp_path: Path,
) -> None:
    process, base = serve(tmp_path, **SETTINGS)
    try:
        admin = log_in(base, *demo_admin(tmp_path))
        first = open_stream(base, admin)
        assert first.status == 200
        start = first.next()
        assert start is not None
        assert start.id is not None
        origin = int(start.id)
        write_probes(tmp_path, 400)
        got = first.events(lambda m: m.event == "live.probe" and int(m.id or 0) >= origin + 300)
        first.close()
        write_probes(tmp_path, 600)  # some while nobody listens

        again = open_stream(base, admin, last_event_id=int(got[-1].id))  # type: ignore[arg-type]
        assert again.status == 200
        newest = origin + 1000
        got += again.events(lambda m: m.id is not None and int(m.id) >= newest)
        again.close()
    finally:
        output = stop(process)

    probes = [int(m.id) for m in got if m.event == "live.probe"]  # type: ignore[arg-type]
    assert len(probes) == 1000
    assert sorted(set(probes)) == probes == list(range(origin + 1, newest + 1))
    assert "Traceback" not in output, output


@pytest.mark.slow
def test_a_second_login_ends_a_stream_of_the_stream_process_with_the_reason(
    tmp_path: Path,
) -> None:
    process, base = serve(tmp_path, **SETTINGS, live_session_check_seconds="1")
    try:
        email, password = demo_admin(tmp_path)
        admin = log_in(base, email, password)
        sse = open_stream(base, admin)
        assert sse.status == 200
        sse.next()

        log_in(base, email, password)  # elsewhere

        [ended] = sse.events(lambda m: m.event == "session-ended")
        assert ended.json["reason"] == "session-replaced"
        assert sse.next() is None
        sse.close()
    finally:
        output = stop(process)

    assert "Traceback" not in output, output


@pytest.mark.slow
def test_a_stream_process_that_stops_answering_is_a_503_and_one_that_dies_is_started_again(
    tmp_path: Path,
) -> None:
    process, base = serve(tmp_path, **SETTINGS)
    try:
        admin = log_in(base, *demo_admin(tmp_path))
        host = stream_process(process)
        sse = open_stream(base, admin)
        assert sse.status == 200
        sse.next()
        asked = requests.head(f"{base}{STREAM}", headers=admin.headers, timeout=30)
        assert asked.status_code == 200
        assert asked.headers["Content-Type"].startswith("text/event-stream")

        os.kill(host, signal.SIGSTOP)
        try:
            down = open_stream(base, admin)
            assert down.status == 503
            assert down.response.getheader("Retry-After") == "2"
            assert down.problem()["type"] == "urn:lapak:problem:stream-process-down"
            down.close()
            asked = requests.head(f"{base}{STREAM}", headers=admin.headers, timeout=30)
            assert asked.status_code == 503  # HEAD is answered as GET would be
            assert asked.headers["Retry-After"] == "2"
            api = requests.get(f"{base}/api/v1/auth/session", headers=admin.headers, timeout=10)
            assert api.status_code == 200  # the API does not wait for streams
        finally:
            os.kill(host, signal.SIGCONT)

        os.kill(host, signal.SIGKILL)
        assert ends(sse, within=100)  # its connections die with it
        sse.close()
        deadline = time.monotonic() + 30
        while True:  # 503 until it is started again
            again = open_stream(base, admin)
            if again.status == 200 or time.monotonic() > deadline:
                break
            assert again.status == 503, again.status
            again.close()
            time.sleep(0.2)
        assert again.status == 200
        assert stream_process(process) != host
        write_probes(tmp_path, 1)
        assert [m.event for m in again.events(lambda m: m.event == "live.probe")] == ["live.probe"]
        again.close()
    finally:
        output = stop(process)

    assert "starting it again" in output
    assert "Traceback" not in output, output


@pytest.mark.slow
def test_a_stream_process_that_stays_frozen_is_killed_and_started_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    environment = migrated(tmp_path, embedded_environment(tmp_path, **SETTINGS))
    process = StreamProcess(
        environment, ping_seconds=0.3, ping_answer_seconds=2, missed_pings=2, startup_seconds=30
    )
    client = StreamHostClient(process.path)
    process.start()
    try:
        deadline = time.monotonic() + 60
        while not client.ping():
            assert time.monotonic() < deadline, "the stream process never answered"
            time.sleep(0.1)
        time.sleep(1)  # the server's pings are answered too: its misses count from the first
        frozen = process._process
        assert frozen is not None
        caplog.set_level("WARNING", logger="app.stream_host")

        os.kill(frozen.pid, signal.SIGSTOP)

        frozen.wait(timeout=60)  # two pings missed: about 5 s
        assert frozen.returncode == -signal.SIGKILL
        deadline = time.monotonic() + 60
        while not client.ping():
            assert time.monotonic() < deadline, "the stream process was not started again"
            time.sleep(0.1)
    finally:
        process.stop()

    warned = [r.getMessage() for r in caplog.records]
    assert any("did not answer a ping within 2 s (2 of 2)" in m for m in warned), warned
    assert any(f"killing the stream process (pid {frozen.pid})" in m for m in warned), warned
    assert any("was killed by signal 9; starting it again" in m for m in warned), warned
