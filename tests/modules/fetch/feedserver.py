"""Real HTTP servers on 127.0.0.1 for the fetch tests: a feed server with per-path routes and a
fake Frankfurter-style rate API. Both count what they were asked and are stopped by the tests.

    with running(FeedServer()) as feed:
        feed.routes["/list"] = serve(FIXTURE_BYTES)
        ...
        assert feed.hits["/list"] == 1
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "commodities.json"

Route = Callable[["FeedHandler"], None]


class _Quiet:
    """Do not print a traceback when a client hangs up first (a refused or timed-out fetch)."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
            return
        super().handle_error(request, client_address)  # type: ignore[misc]


class FeedHandler(BaseHTTPRequestHandler):
    server: FeedServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.hits[path] += 1
            self.server.requests.append(self.path)
        route = self.server.routes.get(path)
        if route is None:
            self.reply(404, b'{"error": "not found"}')
        else:
            route(self)

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        # The client may give up first (a refused or failed answer): not the server's problem.
        with suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.reply(302, b"", {"Location": location})

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FeedServer(_Quiet, ThreadingHTTPServer):
    """Answers each path with its route; ``hits`` counts requests per path (404 included)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FeedHandler)
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.requests: list[str] = []
        self.lock = threading.Lock()
        #: Set at teardown so slow handlers stop waiting.
        self.stopping = threading.Event()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    @property
    def total_hits(self) -> int:
        return sum(self.hits.values())


class RateHandler(BaseHTTPRequestHandler):
    server: RateServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests.append(self.path)
        status, body = self.server.answer
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        with suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class RateServer(_Quiet, ThreadingHTTPServer):
    """A Frankfurter-style API: every GET gets ``answer`` (status, JSON-able or raw bytes)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, rate: float = 0.0000625) -> None:
        super().__init__(("127.0.0.1", 0), RateHandler)
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.answer: tuple[int, Any] = (200, {"base": "IDR", "rates": {"USD": rate}})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/latest"

    def stop(self) -> None:
        """Stop answering and release the port now (the provider is down); safe to repeat."""
        self.stopping.set()
        self.shutdown()
        self.server_close()


_Server = TypeVar("_Server", FeedServer, RateServer)


@contextmanager
def running(server: _Server) -> Iterator[_Server]:
    """Serve ``server`` on a thread for the block, then stop it and release its port."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- routes -----------------------------------------------------------------------------------


def serve(body: bytes | Any, status: int = 200) -> Route:
    """A route answering ``status`` with ``body`` (bytes as they are, anything else as JSON)."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return lambda handler: handler.reply(status, payload)


def fail(status: int = 500) -> Route:
    return serve({"error": "upstream broke"}, status)


def redirect_to(location: str) -> Route:
    return lambda handler: handler.redirect(location)


def slow(seconds: float = 5.0) -> Route:
    """A route that answers nothing for ``seconds`` (or until the server stops)."""

    def wait(handler: FeedHandler) -> None:
        handler.server.stopping.wait(seconds)

    return wait


# -- app configuration ------------------------------------------------------------------------


def with_env(**values: str) -> pytest.MarkDecorator:
    """Give one test extra settings through the ``env`` fixture (``{port}``: the feed port)."""
    return pytest.mark.parametrize("env", [values], indirect=True, ids=["env"])


def fetch_env(server: FeedServer, extra: dict[str, str] | None = None) -> dict[str, str]:
    """``module_env`` for an app reading ``server``: ``/list`` as source ``feed``, ``/other``
    as ``other``; loopback allowed, no retries, short timeouts. In ``extra`` values, ``{port}``
    is the server's port."""
    sources = {"feed": server.url("/list"), "other": server.url("/other")}
    return {
        "fetch_sources": json.dumps(sources),
        "fetch_allow_loopback": "true",
        "fetch_retries": "0",
        "fetch_connect_timeout": "1",
        "fetch_total_timeout": "2",
        "fetch_fresh_seconds": "300",
        "fetch_retry_seconds": "30",
        "fetch_url_hosts": "localhost",
        **{
            name: value.replace("{port}", str(server.port)) for name, value in (extra or {}).items()
        },
    }
