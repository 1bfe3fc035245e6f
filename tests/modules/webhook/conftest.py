"""Helpers for the webhook tests: a real receiver on 127.0.0.1, signature checks with the
Standard Webhooks reference library, endpoints made over HTTP, and the clock moved to a time.

The app allows loopback addresses through the fetch module's own setting
(``LAPAK_FETCH_ALLOW_LOOPBACK``), as a developer's machine would; nothing else is relaxed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from standardwebhooks.webhooks import Webhook
from werkzeug.test import TestResponse

from app import clock
from app.db import transaction
from app.events import emit
from modules.webhook.jobs import send_due_deliveries
from tests.conftest import run_jobs, wait_for_replica
from tests.modules.conftest import Caller
from tests.modules.marketplace.conftest import make_product  # noqa: F401 - fixture
from tests.modules.web.conftest import browser, page, served  # noqa: F401 - fixtures
from tests.servers import Services

API = "/api/v1/webhooks"
PROBLEM = "application/problem+json"

#: (status, headers, body) for the n-th request (1-based) a receiver gets.
Answer = Callable[[int], tuple[int, dict[str, str], bytes]]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def signatures(self) -> list[str]:
        return self.headers["webhook-signature"].split(" ")


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 in a thread that records every request and answers with
    ``answer(n)``."""

    answer: Answer
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                status, headers, answer = receiver.answer(len(receiver.received))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def answering(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Answer:
    return lambda _n: (status, headers or {}, body)


@pytest.fixture
def make_receiver() -> Iterator[Callable[[Answer], Receiver]]:
    started: list[Receiver] = []

    def make(answer: Answer | None = None) -> Receiver:
        receiver = Receiver(answer or answering(200, body=b"ok"))
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.stop()


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    config["module_env"] = {**config["module_env"], "fetch_allow_loopback": "true"}
    return config


@pytest.fixture
def admin(admin: Caller, app: Flask) -> Caller:
    """An admin, whose own ``user.created`` is dispatched before any endpoint exists."""
    run_jobs(app)
    return admin


def signed_by(secret: str, received: Received) -> bool:
    """Whether one of the delivery's signatures is the reference library's for ``secret``
    (at the delivery's own timestamp, which a moved clock puts outside the library's window)."""
    timestamp = datetime.fromtimestamp(int(received.headers["webhook-timestamp"]), UTC)
    expected = Webhook(secret).sign(
        received.headers["webhook-id"], timestamp, received.body.decode()
    )
    return expected in received.signatures


def verify_now(secret: str, received: Received) -> Any:
    """The reference library's whole check (headers, 5 minute window, signature); the body."""
    return Webhook(secret).verify(received.body, received.headers)


def call(client: FlaskClient, caller: Caller | None, method: str, path: str = "", **kw: Any):
    headers = caller.headers if caller is not None else {}
    return client.open(f"{API}{path}", method=method, headers=headers, **kw)


def ok(response: TestResponse, status: int = 200) -> Any:
    assert response.status_code == status, response.get_json()
    return response.get_json()


def problem(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    body = response.get_json()
    assert response.status_code == status, body
    assert response.content_type == PROBLEM
    assert body["type"] == f"urn:lapak:problem:{code}", body
    return body


def create_endpoint(client: FlaskClient, caller: Caller, url: str, **body: Any) -> dict[str, Any]:
    return ok(call(client, caller, "POST", "/endpoints", json={"url": url, **body}), 201)


_replicated: list[Services] = []


@pytest.fixture(autouse=True)
def _harness(services: Services) -> Iterator[None]:
    _replicated.append(services)
    yield
    _replicated.clear()


def caught_up() -> None:
    """Wait for the replica: the API reads there, and the jobs' writes carry no client LSN."""
    for services in _replicated:
        wait_for_replica(services)


def deliveries(client: FlaskClient, caller: Caller, **query: Any) -> list[dict[str, Any]]:
    caught_up()
    return ok(call(client, caller, "GET", "/deliveries", query_string=query))["items"]


def delivery(client: FlaskClient, caller: Caller, delivery_id: str) -> dict[str, Any]:
    caught_up()
    return ok(call(client, caller, "GET", f"/deliveries/{delivery_id}"))


def endpoint_now(client: FlaskClient, caller: Caller, endpoint_id: str) -> dict[str, Any]:
    caught_up()
    return ok(call(client, caller, "GET", f"/endpoints/{endpoint_id}"))


@contextmanager
def at(when: datetime) -> Iterator[None]:
    """Move the app clock to ``when`` (from outside any other travel)."""
    with clock.travel(when - clock.now()):
        yield


def emit_now(app: Flask, name: str, payload: dict[str, Any]) -> None:
    """Commit an event at the app clock's time (the API's tokens expire on a moved clock)."""
    with app.app_context(), transaction():
        emit(name, payload)


def sweep(app: Flask) -> None:
    """The periodic job at the app clock's time, then the sends it queued."""
    with app.app_context():
        send_due_deliveries()
    run_jobs(app)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
