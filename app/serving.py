"""``lapak serve`` in production: gunicorn with our app factory and problem+json for its errors.

Why threads, and a stream process: the API answers in milliseconds, but a Server-Sent Events
stream (the web client's live updates) stays open for up to an hour, mostly waiting. A sync
worker serves one request at a time, so each open stream would take a whole worker process
away from the API (and gunicorn kills a sync worker whose request outlives ``timeout``). So each
worker process is gunicorn's threaded worker (``gthread``) with ``LAPAK_WEB_THREADS`` threads
for ordinary requests, and the streams are served by one stream process beside the workers
(:mod:`app.stream_host`): a worker authorises a stream's request like any other, then hands
the connection over, so streams never hold a worker's thread nor wake up in its interpreter,
where the requests of that worker would wait for them. The browser reaches a stream on the
same origin and port as everything else, with nothing to route. The other ways were worse here:
a second server for streams on its own port needs a proxy in front to share the origin (the
embedded default has none), and an async worker (gevent) would patch the database drivers
under every request for the sake of one endpoint. With ``LAPAK_WEB_STREAM_PROCESS=0`` each
worker serves its streams itself, on ``LAPAK_WEB_STREAMS`` threads more than the API's
(:mod:`app.streaming` refuses one more with a 503, so streams never take the API's threads).
Kept-alive connections wait in the worker's poller, not on a thread. When told to stop, a worker
ends its streams at once (:meth:`app.streaming.Streams.stop`; clients reconnect with
``Last-Event-ID``) instead of waiting ``graceful_timeout`` for them.

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
import os
import socket
from typing import Any

from flask import Flask
from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker

from app.config import Settings
from app.http import PROBLEM_MIMETYPE, SAFE_HEADERS
from app.stream_host import (
    HandedOver,
    StreamHostClient,
    StreamProcess,
    drop_connection,
    handing_over,
)


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


class ProblemWorker(ThreadWorker):
    """gunicorn's threaded worker whose own error answers are problem+json, which takes a
    connection only when a thread is free to serve it, hands streams to the stream process
    (:func:`app.stream_host.handing_over`), ends the app's own streams when it is told to
    stop, and which closes quietly a connection whose write timed out (a stream's client that
    stopped reading)."""

    #: Connections handed to the thread pool and not finished (read on the main thread only).
    in_flight = 0

    # gunicorn's gthread worker accepts every connection it can (up to worker_connections) and
    # queues it for its threads, so under load one worker may hold a dozen requests in its
    # queue while another has a thread idle: those wait for nothing but their worker (at 32
    # clients on 4 workers of 4 threads, the slowest orders waited about three times the median).
    # Taking a new connection only with a thread free leaves the others in the listening
    # socket's backlog, for whichever worker frees a thread first. A kept-alive connection
    # that sends its next request is still queued here (it is this worker's already); with
    # streams on the workers' threads (LAPAK_WEB_STREAM_PROCESS=0) the threads include the
    # streams', so the limit seldom applies.

    def accept(self, listener: Any) -> None:
        # One select() may report the listener after a callback of the same batch took the
        # last thread: leave that connection in the backlog too.
        if self.in_flight < self.cfg.threads:
            super().accept(listener)

    def enqueue_req(self, conn: Any) -> None:
        self.in_flight += 1
        super().enqueue_req(conn)
        if self.in_flight >= self.cfg.threads:
            self.set_accept_enabled(False)

    def finish_request(self, conn: Any, fs: Any) -> None:
        self.in_flight -= 1
        super().finish_request(conn, fs)

    def set_accept_enabled(self, enabled: bool) -> None:
        # run() asks again at each turn of its loop, and a finished request is one.
        super().set_accept_enabled(enabled and self.in_flight < self.cfg.threads)

    def init_process(self) -> None:
        # handle_error (gunicorn.workers.base) looks write_error up in gunicorn.util at each
        # error; replacing it there, in this worker process only, changes the answer's format
        # and keeps gunicorn's choice of status, reason and logging.
        util.write_error = write_problem
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.flask_app = self.wsgi
        self.wsgi = handing_over(self.wsgi)

    def handle_request(self, req: Any, conn: Any) -> bool:
        try:
            return super().handle_request(req, conn)
        except HandedOver:
            # The stream process owns the connection now: close nothing it would see.
            drop_connection(conn.sock)
            return False
        except TimeoutError:
            # A write that waited past the socket's timeout: a stream's client that stopped
            # reading (modules/live sets the timeout). The answer was closed on the way out;
            # the connection goes as quietly as one the client hung up, not as a socket error.
            self.log.info("closed a connection whose client stopped reading")
            return False

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)  # stop accepting; wait for open responses
        extensions = getattr(getattr(self, "flask_app", None), "extensions", {})
        streams = extensions.get("lapak.streams")
        if streams is not None:
            streams.stop()


def threads_per_worker(settings: Settings) -> int:
    """Each worker's threads: the API's, and one per stream it may serve when it serves them."""
    if settings.web_stream_process:
        return settings.web_threads
    return settings.web_threads + settings.web_streams


def run_gunicorn(
    settings: Settings, host: str, port: int, build: Any, *, streams: bool = True
) -> None:
    """Serve ``build()`` (called once in each worker process) with gunicorn until stopped;
    with ``streams`` (a Lapak app) and ``LAPAK_WEB_STREAM_PROCESS``, beside a stream process
    that serves ``LAPAK_WEB_STREAMS`` streams per worker."""
    options = {
        "bind": f"{host}:{port}",
        "workers": settings.web_workers,
        "worker_class": ProblemWorker,
        "threads": threads_per_worker(settings),
        # Open connections a worker holds (streams, requests, kept-alive ones): gunicorn's
        # default, and at least room for every thread.
        "worker_connections": max(1000, threads_per_worker(settings) * 2),
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
            if process is not None:
                app.extensions["lapak.streams"].host = StreamHostClient(process.path)
            # The app's startup objects (modules, mappers, schemas, the spec) live as long as
            # the worker: kept out of the collector's sight, a full collection no longer walks
            # some 200,000 of them (tens of milliseconds, on some unlucky request).
            gc.collect()
            gc.freeze()
            return app

    process = None
    if streams and settings.web_stream_process:
        capacity = settings.web_streams * settings.web_workers
        process = StreamProcess({**os.environ, "LAPAK_WEB_STREAMS": str(capacity)})
    try:
        if process is not None:
            process.start()
        Application().run()
    finally:
        if process is not None:
            process.stop()
