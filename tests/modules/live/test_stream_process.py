"""The stream process's handover (``app/stream_host.py``) with the live module's streams, run in
this process on the test servers: a worker's side opens, starts or abandons, and the process
answers, refuses, writes the stream and gives everything back."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from app.db import transaction
from app.errors import ServiceUnavailable
from app.events import emit
from app.security import authenticate
from app.stream_host import (
    HANDOVER,
    HandedOver,
    Handover,
    StreamHostClient,
    StreamProcessDown,
    handing_over,
    response_head,
    serve,
)

from .conftest import person


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Callable[[Flask], StreamHostClient]]:
    """``host(app)``: ``app`` served as the stream process (on a thread of this process)."""
    running: list[tuple[threading.Event, threading.Thread]] = []

    def start(app: Flask) -> StreamHostClient:
        path = str(tmp_path / f"streams-{len(running)}.sock")
        stop = threading.Event()
        thread = threading.Thread(target=serve, args=(app, path, stop), daemon=True)
        thread.start()
        running.append((stop, thread))
        deadline = time.monotonic() + 10
        while not Path(path).exists():
            assert time.monotonic() < deadline, "the stream process did not listen"
            time.sleep(0.01)
        return StreamHostClient(path)

    try:
        yield start
    finally:
        for stop, thread in running:
            stop.set()
            thread.join(15)


def params_of(app: Flask, role: str, last_event_id: int | None = None) -> dict:
    caller = person(app, role)
    return {
        "user_id": caller.user_id,
        "user_uuid": str(caller.uuid),
        "email": caller.email,
        "role": role,
        "session_id": session_of(app, caller.token),
        "last_event_id": last_event_id,
    }


def session_of(app: Flask, token: str) -> str:
    """The session id a login's token carries."""
    with app.test_request_context(headers={"Authorization": f"Bearer {token}"}):
        return str(authenticate().session_id)


def wait_until(condition: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.05)


def read_until(sock: socket.socket, marker: bytes, seconds: float = 15) -> bytes:
    sock.settimeout(seconds)
    seen = b""
    while marker not in seen:
        chunk = sock.recv(65536)
        assert chunk, f"closed before {marker!r}: {seen!r}"
        seen += chunk
    return seen


def test_a_started_stream_is_written_by_the_process_and_released_when_the_client_goes(
    make_app: Callable[..., Flask], host: Callable[[Flask], StreamHostClient]
) -> None:
    app = make_app(web_streams=2)
    client = host(app)
    streams = app.extensions["lapak.streams"]
    handover = client.open("live", params_of(app, "admin"))
    assert streams.open_count == 1

    browser, worker_end = socket.socketpair()
    answered = [("Content-Type", "text/event-stream"), ("X-Request-Id", "r1")]
    head = response_head("200 OK", [*answered, ("Content-Length", "0")])  # the app's empty body
    handover.start(worker_end, head)
    worker_end.close()  # the worker lets go of its copy; the process holds its own
    with app.app_context(), transaction():
        emit("live.probe", {"n": 1})
    seen = read_until(browser, b"event: live.probe")

    assert seen.startswith(b"HTTP/1.1 200 OK\r\nDate: ")
    assert b"\r\nContent-Type: text/event-stream\r\n" in seen
    assert b"\r\nX-Request-Id: r1\r\n" in seen
    assert b"Content-Length" not in seen
    assert b"Connection: close\r\n\r\nretry: 2000\n" in seen
    browser.close()  # noticed at the next write (a heartbeat, every second here)
    wait_until(lambda: streams.open_count == 0)
    assert app.extensions["live.hub"].subscriber_count == 0


def test_an_abandoned_handover_gives_its_slot_and_subscription_back(
    make_app: Callable[..., Flask], host: Callable[[Flask], StreamHostClient]
) -> None:
    app = make_app(web_streams=1)
    client = host(app)
    streams = app.extensions["lapak.streams"]
    handover: Handover = client.open("live", params_of(app, "staff"))
    assert streams.open_count == 1

    handover.abandon()  # the app answered something else after all

    wait_until(lambda: streams.open_count == 0)
    assert app.extensions["live.hub"].subscriber_count == 0
    client.open("live", params_of(app, "staff")).abandon()  # the slot is free again


def test_the_processs_refusals_reach_the_worker_as_its_own_errors(
    make_app: Callable[..., Flask], host: Callable[[Flask], StreamHostClient]
) -> None:
    app = make_app(web_streams=1)
    client = host(app)
    held = client.open("live", params_of(app, "admin"))

    with pytest.raises(ServiceUnavailable) as full:
        client.open("live", params_of(app, "admin"))

    assert full.value.code == "streams-full"
    assert full.value.headers == {"Retry-After": "2"}
    assert "LAPAK_WEB_STREAMS" in str(full.value)
    held.abandon()


def test_a_ping_is_answered_without_taking_a_stream(
    make_app: Callable[..., Flask], host: Callable[[Flask], StreamHostClient], tmp_path: Path
) -> None:
    app = make_app(web_streams=1)
    client = host(app)
    streams = app.extensions["lapak.streams"]

    assert client.ping() is True
    assert streams.open_count == 0
    client.open("live", params_of(app, "staff")).abandon()  # the one slot was still free
    assert StreamHostClient(str(tmp_path / "nobody.sock")).ping(answer_seconds=0.5) is False


def test_a_process_that_is_not_there_is_a_503_with_retry_after(tmp_path: Path) -> None:
    client = StreamHostClient(str(tmp_path / "nobody.sock"))

    with pytest.raises(StreamProcessDown) as down:
        client.open("live", {})

    assert down.value.headers["Retry-After"] == "2"
    assert down.value.code == "stream-process-down"


def answering(status: str, handover: Handover) -> Callable[..., list[bytes]]:
    """A WSGI app whose view opened ``handover`` and answered ``status``."""

    def app(environ: dict, start_response: Callable[..., object]) -> list[bytes]:
        environ[HANDOVER] = handover
        headers = [
            ("Content-Type", "text/event-stream"),
            ("Content-Length", "0"),
            ("X-Request-Id", "r1"),
        ]
        start_response(status, headers)
        return [b""]

    return app


def test_a_200_is_handed_over_with_its_head_and_the_connection() -> None:
    worker, process = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    browser, connection = socket.socketpair()
    answered: list[str] = []

    with pytest.raises(HandedOver):
        handing_over(answering("200 OK", Handover(worker)))(
            {"gunicorn.socket": connection}, lambda status, *_: answered.append(status)
        )

    assert answered == []  # the server heard of no answer: it is the stream process's to write
    message, fds, _, _ = socket.recv_fds(process, 65536, 1)
    head = json.loads(message)["head"]
    assert head.startswith("HTTP/1.1 200 OK\r\nDate: ")
    assert "\r\nContent-Type: text/event-stream\r\n" in head
    assert "Content-Length" not in head
    with socket.socket(fileno=fds[0]) as handed:  # the same connection
        handed.sendall(b"hello")
        assert browser.recv(5) == b"hello"
    for sock in (process, browser, connection):
        sock.close()


def test_another_answer_abandons_the_handover_and_goes_out_as_usual() -> None:
    worker, process = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    answered: list[str] = []

    body = handing_over(answering("500 INTERNAL SERVER ERROR", Handover(worker)))(
        {"gunicorn.socket": None}, lambda status, *_: answered.append(status)
    )

    assert answered == ["500 INTERNAL SERVER ERROR"]
    assert body == [b""]
    assert process.recv(65536) == b""  # closed: the stream process releases the stream
    process.close()


def test_a_stream_process_gone_before_the_start_is_a_503_with_retry_after() -> None:
    worker, process = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    process.close()
    browser, connection = socket.socketpair()
    answered: list[tuple[str, list[tuple[str, str]]]] = []

    body = handing_over(answering("200 OK", Handover(worker)))(
        {"gunicorn.socket": connection},
        lambda status, headers, *_: answered.append((status, headers)),
    )

    [(status, headers)] = answered  # the server heard of the 503 only, not of the 200 first
    assert status == "503 Service Unavailable"
    assert ("Retry-After", "2") in headers
    assert ("X-Request-Id", "r1") in headers
    assert ("Content-Type", "application/problem+json") in headers
    assert ("Content-Type", "text/event-stream") not in headers
    assert json.loads(b"".join(body))["type"] == "urn:lapak:problem:stream-process-down"
    browser.close()
    connection.close()


def test_a_client_gone_before_the_head_is_written_gives_its_stream_back(
    make_app: Callable[..., Flask], host: Callable[[Flask], StreamHostClient]
) -> None:
    app = make_app(web_streams=1)
    client = host(app)
    streams = app.extensions["lapak.streams"]
    handover = client.open("live", params_of(app, "customer"))
    browser, connection = socket.socketpair()
    browser.close()  # reset while the worker authorised it

    handover.start(connection, response_head("200 OK", [("Content-Type", "text/event-stream")]))
    connection.close()

    wait_until(lambda: streams.open_count == 0)
    assert app.extensions["live.hub"].subscriber_count == 0
