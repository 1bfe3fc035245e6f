"""``lapak serve`` in production: gunicorn with our app factory and problem+json for its errors.

gunicorn answers some requests itself, before any app sees them: a request line over
``LAPAK_LIMIT_REQUEST_LINE`` (414), a header over ``LAPAK_LIMIT_REQUEST_FIELD_SIZE`` or more
headers than ``LAPAK_LIMIT_REQUEST_FIELDS`` (431), a malformed request such as a control
character in a header (400). Its worker writes those with ``gunicorn.util.write_error`` as
text/html; :class:`ProblemWorker` writes them as ``application/problem+json`` like every other
error of the API.
"""

from __future__ import annotations

import errno
import gc
import json
import socket
from typing import Any

from flask import Flask
from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.workers.sync import SyncWorker

from app.config import Settings
from app.http import PROBLEM_MIMETYPE, SAFE_HEADERS


def port_in_use(host: str, port: int) -> bool:
    """True when another process listens on ``host:port`` (checked before the banner)."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror:
        return False  # a bad host is the server's to report
    with socket.socket(family, kind, protocol) as probe:
        # As gunicorn and Werkzeug bind: a port left in TIME_WAIT by a stopped server is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            return error.errno == errno.EADDRINUSE
    return False


def write_problem(sock: socket.socket, status: int, reason: str, message: str) -> None:
    """gunicorn's ``write_error``, answering problem+json instead of an HTML page."""
    body: dict[str, Any] = {"type": "about:blank", "title": reason, "status": status}
    body["detail"] = message or "An unexpected error occurred."
    payload = json.dumps(body).encode()  # ASCII: whatever the client sent is escaped
    headers = {
        "Connection": "close",
        "Content-Type": PROBLEM_MIMETYPE,
        **SAFE_HEADERS,  # as on every answer of the app
        "Content-Length": str(len(payload)),
    }
    head = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    util.write_nonblock(sock, "\r\n".join(head).encode("latin-1") + payload)


class ProblemWorker(SyncWorker):
    """gunicorn's sync worker whose own error answers are problem+json."""

    def init_process(self) -> None:
        # handle_error (gunicorn.workers.base) looks write_error up in gunicorn.util at each
        # error; replacing it there, in this worker process only, changes the answer's format
        # and keeps gunicorn's choice of status, reason and logging.
        util.write_error = write_problem
        super().init_process()


def run_gunicorn(settings: Settings, host: str, port: int, build: Any) -> None:
    """Serve ``build()`` (called once in each worker process) with gunicorn until stopped."""
    options = {
        "bind": f"{host}:{port}",
        "workers": settings.web_workers,
        "worker_class": ProblemWorker,
        "limit_request_line": settings.limit_request_line,
        "limit_request_field_size": settings.limit_request_field_size,
        "limit_request_fields": settings.limit_request_fields,
        "control_socket_disable": True,
        "accesslog": None,
        "errorlog": "-",
        "graceful_timeout": 20,
        "timeout": 60,
    }

    class Application(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            app = build()
            # The app's startup objects (modules, mappers, schemas, the spec) live as long as
            # the worker: kept out of the collector's sight, a full collection no longer walks
            # some 200,000 of them (tens of milliseconds, on some unlucky request).
            gc.collect()
            gc.freeze()
            return app

    Application().run()
