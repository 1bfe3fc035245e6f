"""Helpers for the live tests: the app served over real HTTP on 127.0.0.1 (PostgreSQL and the
embedded default), an SSE client that reads the stream as a browser's EventSource does, and
people of each role logged in through the real login endpoint."""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import make_server

from app.db import Session, transaction
from app.events import OutboxEvent
from modules.marketplace.models import Product
from modules.user.services import create_user
from tests.conftest import run_jobs
from tests.modules.conftest import PASSWORD, Caller, login
from tests.modules.web.conftest import browser, page  # noqa: F401 - fixtures

STREAM = "/api/v1/events/stream"
#: No read of a stream waits longer for its next line (a hung stream fails the test).
READ_TIMEOUT = 20.0
_emails = itertools.count()


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    """Quick feeds: a poll every 50 ms, heartbeats and session checks every second."""
    config["module_env"] = {
        **config["module_env"],
        "live_poll_ms": "50",
        "live_heartbeat_seconds": "1",
        "live_session_check_seconds": "1",
    }
    return config


@pytest.fixture(params=["postgresql", "sqlite"])
def live_app(
    request: pytest.FixtureRequest, make_app: Callable[..., Flask], make_embedded_app: Callable
) -> Flask:
    """The app on the harness's PostgreSQL and Redis, then on the embedded default."""
    return make_app() if request.param == "postgresql" else make_embedded_app()


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], str]]:
    """``serve(app)``: the app over real HTTP on a free 127.0.0.1 port (a thread per request,
    as gunicorn's threaded worker); its base URL. Its streams are ended and the server stopped
    after the test."""
    running: list[tuple[Flask, Any, threading.Thread]] = []

    def start(application: Flask) -> str:
        server = make_server("127.0.0.1", 0, application, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.append((application, server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    try:
        yield start
    finally:
        for application, server, thread in running:
            application.extensions["lapak.streams"].stop()
            server.shutdown()
            server.server_close()
            thread.join(10)


def person(app: Flask, role: str) -> Caller:
    """A new user with ``role``, logged in through the login endpoint."""
    with app.app_context():
        user = create_user(f"live.{role}.{next(_emails)}@example.test", role=role,
                           password=PASSWORD)  # fmt: skip
        email, user_uuid, user_id = user.email, user.uuid, user.id
    response = login(app.test_client(), email)
    assert response.status_code == 200, response.get_json()
    return Caller(email, user_uuid, user_id, response.get_json()["access_token"])


@dataclass
class Message:
    """One SSE message as EventSource parses it (``event`` "message" when none is named)."""

    id: str | None
    event: str
    data: str
    comments: list[str] = field(default_factory=list)

    @property
    def json(self) -> Any:
        return json.loads(self.data)


class Sse:
    """A stream read line by line (``http.client`` undoes the chunked encoding)."""

    def __init__(self, base: str, headers: dict[str, str], query: str = "") -> None:
        address = urlsplit(base)
        self.connection = http.client.HTTPConnection(
            address.hostname, address.port, timeout=READ_TIMEOUT
        )
        self.connection.request("GET", STREAM + query, headers=headers)
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.last_id: str | None = None

    @property
    def content_type(self) -> str:
        return self.response.getheader("Content-Type", "")

    def problem(self) -> dict[str, Any]:
        return json.loads(self.response.read())

    def next(self) -> Message | None:
        """The next message (an id, an event with data, or comments alone); None at the end."""
        message = Message(None, "message", "")
        data: list[str] = []
        seen = False
        while True:
            line = self.response.readline()
            if not line:
                return None
            text = line.decode().rstrip("\n")
            if text == "":
                if seen:
                    message.data = "\n".join(data)
                    if message.id is not None:
                        self.last_id = message.id
                    return message
                continue
            seen = True
            name, _, value = text.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                message.comments.append(value)
            elif name == "id":
                message.id = value
            elif name == "event":
                message.event = value
            elif name == "data":
                data.append(value)

    def events(self, until: Callable[[Message], bool], limit: int = 5000) -> list[Message]:
        """Messages that carry data, read until ``until(message)`` holds for one (included);
        at most ``limit`` messages in all, and the stream must not end before."""
        found = []
        deadline = time.monotonic() + 120
        for _ in range(limit):
            message = self.next()
            assert message is not None, "the stream ended"
            if message.data:
                found.append(message)
            if until(message):
                return found
            assert time.monotonic() < deadline, "the stream did not get there in time"
        raise AssertionError(f"no end after {limit} messages")

    def close(self) -> None:
        """Hang up (the response's file holds the socket open until it is closed too)."""
        self.response.close()
        self.connection.close()


def open_stream(base: str, caller: Caller | None = None, last_event_id: int | None = None,
                query: str = "") -> Sse:  # fmt: skip
    headers = dict(caller.headers) if caller is not None else {}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    return Sse(base, headers, query)


def position_reached(event_id: int) -> Callable[[Message], bool]:
    """Until a message (a heartbeat's id included) says the client is up to ``event_id``."""
    return lambda message: message.id is not None and int(message.id) >= event_id


def make_product(app: Flask, seller: Caller, name: str = "BANDENG") -> str:
    """An active product of ``seller`` at IDR 10000; its id."""
    with app.app_context(), transaction() as session:
        product = Product(
            name=name,
            province="BALI",
            city="BULELENG",
            size=Decimal(40),
            list_price=Decimal("10000"),
            active=True,
            seller_id=seller.user_id,
        )
        session.add(product)
        session.flush()
        return str(product.uuid)


def settle(app: Flask) -> None:
    """Deliver every event to its subscribers (which may add events of their own)."""
    jobs = app.extensions["lapak.jobs"]
    if jobs.embedded:
        jobs.wait_embedded()
    else:
        run_jobs(app)


def outbox(app: Flask, after: int = 0) -> list[tuple[int, str, dict[str, Any]]]:
    """Every committed event after ``after``: (id, type, payload), in id order."""
    with app.app_context():
        rows = Session().execute(
            select(OutboxEvent.id, OutboxEvent.name, OutboxEvent.payload)
            .where(OutboxEvent.id > after)
            .order_by(OutboxEvent.id)
        )
        return [(row.id, row.name, row.payload) for row in rows]
