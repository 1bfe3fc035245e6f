"""The stream process of ``lapak serve``: every long-lived response of the host, in one process.

Why: an event stream is mostly asleep, but each one wakes when there is something to send, and
a worker serving forty of them next to the API had forty threads waking together after each
poll of the outbox, holding the interpreter lock that the worker's requests then waited for
(about +2 ms at the 99th percentile with 200 streams open on a host, one client). Here the API
workers serve no stream at all: a worker authenticates and authorises ``GET
/api/v1/events/stream`` as any request, then hands the client's connection (its file
descriptor, over a Unix socket) to this process, which writes the answer and the stream
itself. One feed per host instead of one per worker polls the outbox, and the browser still
reaches the stream on the API's origin and port, with no proxy to configure.

The handover, between a worker's thread and this process (``SOCK_SEQPACKET``, JSON messages):

1. ``open`` (in the view): the stream's kind and parameters. This process takes a slot
   (:class:`app.streaming.Streams`: its capacity, the per-user cap) and opens the stream with
   the opener that kind registered (``Streams.openers``), then answers ``ok``, or a problem
   that the worker raises as its own error (503 full, 429 too many, ...). Nothing is down when
   it answers; when it does not (not running, stopped, hung: :data:`ANSWER_SECONDS`), the
   worker answers 503 ``stream-process-down`` with ``Retry-After``.
2. ``start`` (once the app has answered, :func:`handing_over`): the response head the app
   made (status, every header its hooks added) and the connection's descriptor. The worker
   then drops its own copy of the connection without closing it, and this process writes
   the head, then the stream, on a thread of its own, until the stream ends.

A worker that never sends ``start`` (the app answered something else after all, an error in a
hook) closes the Unix connection instead: the stream is released and never written.

``lapak serve`` starts this process before its workers and starts it again if it exits, or if
it stops answering (:class:`StreamProcess` asks it every :data:`PING_SECONDS`; a ``ping`` is
answered ``pong`` by a handover thread, as ``open`` is, so a frozen process or a stuck
listener goes unanswered); it ends with the server, or by itself when its parent is gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from flask import Flask

from app import errors
from app.errors import DomainError, ServiceUnavailable
from app.log import WarningsEvery

log = logging.getLogger(__name__)
_warnings = WarningsEvery(log, 60)

#: How long a worker waits to reach this process, then for its answer to ``open``, before it
#: answers 503 (an API thread waits meanwhile).
CONNECT_SECONDS = 1.0
ANSWER_SECONDS = 5.0
#: How long this process waits for ``start`` after answering ``ok``.
START_SECONDS = 30.0
#: Largest message of the handover (a response head is a few hundred bytes).
MESSAGE_BYTES = 65536
#: How often the server asks the process whether it answers, how long each ask waits (longer
#: than a worker waits: nothing waits on a ping, and the process has a lower CPU priority, so it
#: is slow first when the host is overloaded), and how many in a row may go unanswered before
#: it is killed and started again: a process frozen for over a minute, not one busy for a while.
PING_SECONDS = 10.0
PING_ANSWER_SECONDS = 15.0
MISSED_PINGS = 3
#: Until it has answered once, a process that starts (its app, then its socket) is given this
#: long before its missed pings count.
STARTUP_SECONDS = 120.0
#: How much less CPU priority the stream process has than the workers (see :func:`main`).
NICENESS = 10
#: The ``environ`` key under which a view leaves its :class:`Handover` for :func:`handing_over`.
HANDOVER = "lapak.handover"


class StreamProcessDown(ServiceUnavailable):
    code = "stream-process-down"
    title = "The stream process is not answering"


class HandedOver(Exception):
    """Raised by :func:`handing_over` to tell the worker that the connection is no longer its
    own: it must neither answer on it nor close it (see ``app/serving.py``)."""


@dataclass
class HostedStream:
    """What an opener gives this process for one stream: its body, how long one write may
    wait, and how to give the stream back if it never starts."""

    body: Iterator[bytes]
    write_timeout: float
    release: Callable[[], None]


#: An opener: in an app context of this process, a stream for these parameters (or a
#: :class:`DomainError`, sent back to the worker as its answer).
Opener = Callable[[dict[str, Any]], HostedStream]


# --- the worker's side ---------------------------------------------------------------------


class StreamHostClient:
    """A worker's way to this process (``Streams.host`` under ``lapak serve``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def open(self, kind: str, params: dict[str, Any]) -> Handover:
        """Step 1 of the handover (see the module); raises the process's refusal as the
        worker's own error, or :class:`StreamProcessDown`."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.settimeout(CONNECT_SECONDS)
            sock.connect(self.path)
            sock.settimeout(ANSWER_SECONDS)
            sock.sendall(_encode({"op": "open", "kind": kind, "params": params}))
            answer = sock.recv(MESSAGE_BYTES)
        except OSError as error:
            sock.close()
            _warnings.warn("open", "the stream process did not answer: %s", error)
            raise StreamProcessDown(
                "streams are not served for a moment; connect again",
                headers={"Retry-After": "2"},
            ) from None
        if not answer:  # it closed: it is stopping
            sock.close()
            raise StreamProcessDown(
                "the stream process is restarting; connect again", headers={"Retry-After": "2"}
            )
        reply = json.loads(answer)
        if "problem" in reply:
            sock.close()
            raise _relayed(reply["problem"])
        return Handover(sock)

    def ping(self, answer_seconds: float = PING_ANSWER_SECONDS) -> bool:
        """Whether the process answers a ``ping`` within ``answer_seconds``."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
                sock.settimeout(min(CONNECT_SECONDS, answer_seconds))
                sock.connect(self.path)
                sock.settimeout(answer_seconds)
                sock.sendall(_encode({"op": "ping"}))
                return sock.recv(MESSAGE_BYTES) == _PONG
        except OSError:
            return False


class Handover:
    """An opened stream waiting for its ``start`` (or to be abandoned)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock: socket.socket | None = sock

    def start(self, client: socket.socket, head: bytes) -> None:
        """Step 2: give the process the connection and the head it is to write first."""
        sock, self._sock = self._sock, None
        if sock is None:
            raise RuntimeError("this handover is over")
        try:
            message = _encode({"op": "start", "head": head.decode("latin-1")})
            socket.send_fds(sock, [message], [client.fileno()])
        finally:
            sock.close()

    def abandon(self) -> None:
        """The stream is not to start: the process releases it (again: a no-op)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def handing_over(app: Callable[..., Any]) -> Callable[..., Any]:
    """WSGI middleware for gunicorn's worker: once ``app`` has answered a request whose view
    opened a :class:`Handover` (under :data:`HANDOVER`) with a 200, start it with the head of
    that answer and raise :class:`HandedOver`; any other answer abandons it and goes out as
    usual."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        held: list[Any] = []

        def holding(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            # While a handover is pending the answer may never go out, or go out as another
            # (a 503): the server hears of it only once that is known.
            if HANDOVER in environ:
                held[:] = [status, headers, exc_info]
                return _no_write
            return start_response(status, headers, exc_info)

        body = app(environ, holding)
        handover: Handover | None = environ.pop(HANDOVER, None)
        if handover is None:
            if held:
                start_response(*held)
            return body
        if not held or not held[0].startswith("200"):
            handover.abandon()
            if held:
                start_response(*held)
            return body
        status, headers, _ = held
        try:
            handover.start(environ["gunicorn.socket"], response_head(status, headers))
        except OSError as error:  # it went away since it opened the stream
            _warnings.warn("start", "a stream could not be handed to the stream process: %s", error)
            handover.abandon()
            return _down(start_response, headers)
        finally:
            closing = getattr(body, "close", None)
            if closing is not None:
                closing()  # the app's own end of the request (teardown, logs)
        raise HandedOver

    return wsgi


#: Headers of the app's answer that do not describe the stream the process writes: the answer's
#: own (empty) body's length and framing, and the connection's fate.
_NOT_THE_STREAMS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
#: Headers of the stream's answer that a problem in its place does not keep.
_OF_THE_BODY = _NOT_THE_STREAMS | {"content-type", "cache-control", "x-accel-buffering"}


def _no_write(_data: bytes) -> None:
    raise RuntimeError("a stream's answer is written by the stream process")


def _down(start_response: Callable[..., Any], answered: list[tuple[str, str]]) -> list[bytes]:
    """A 503 :class:`StreamProcessDown` in place of the 200 the app gave, with that answer's
    headers but those of its body (the request id, the security headers)."""
    problem = {
        "type": f"urn:lapak:problem:{StreamProcessDown.code}",
        "title": StreamProcessDown.title,
        "status": 503,
        "detail": "the stream process went away; connect again",
    }
    payload = json.dumps(problem).encode()
    headers = [
        *((name, value) for name, value in answered if name.lower() not in _OF_THE_BODY),
        ("Content-Type", "application/problem+json"),
        ("Content-Length", str(len(payload))),
        ("Retry-After", "2"),
    ]
    start_response("503 Service Unavailable", headers)
    return [payload]


def response_head(status: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """The HTTP/1.1 head of a response whose body ends when its connection closes."""
    lines = [f"HTTP/1.1 {status}", f"Date: {formatdate(usegmt=True)}"]
    lines.extend(
        f"{name}: {value}" for name, value in headers if name.lower() not in _NOT_THE_STREAMS
    )
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def drop_connection(sock: socket.socket) -> None:
    """Let go of a connection handed to the stream process without ending it: its descriptor
    now points at one end of a fresh socket pair (``dup2`` swaps it atomically), so the
    worker's closing (a half-close, a drain, a close) ends nothing the client sees."""
    left, right = socket.socketpair()
    try:
        os.dup2(left.fileno(), sock.fileno())
    finally:
        left.close()
        right.close()


def _relayed(problem: dict[str, Any]) -> DomainError:
    """The process's refusal as an error of the same family, code, title and detail."""
    family = getattr(errors, problem.get("family", ""), None)
    if not (isinstance(family, type) and issubclass(family, DomainError)):
        family = ServiceUnavailable
    relayed = type(family.__name__, (family,), {"code": problem["code"], "title": problem["title"]})
    return relayed(problem.get("detail"), headers=problem.get("headers") or {})


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


_PONG = _encode({"pong": True})


# --- this process --------------------------------------------------------------------------


def serve(app: Flask, path: str, stop: threading.Event) -> None:
    """Take handovers on ``path`` until ``stop`` is set (then end every stream and return)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(128)
    listener.settimeout(0.5)
    threads: set[threading.Thread] = set()
    try:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(
                target=_take, args=(app, conn, threads), name="lapak-stream", daemon=True
            )
            threads.add(thread)
            thread.start()
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        app.extensions["lapak.streams"].stop()
        deadline = time.monotonic() + 10
        for thread in list(threads):
            thread.join(max(deadline - time.monotonic(), 0))


def _take(app: Flask, conn: socket.socket, threads: set[threading.Thread]) -> None:
    """One handover: open, wait for start, then write the stream until it ends."""
    try:
        _handover(app, conn)
    except OSError as error:  # the worker went away mid-handover: it answers nothing more
        log.info("a handover ended early: %s", error)
    except Exception:
        log.exception("a stream of the stream process failed")
    finally:
        threads.discard(threading.current_thread())


def _handover(app: Flask, conn: socket.socket) -> None:
    with conn:
        hosted = _open(app, conn)
        if hosted is None:
            return
        try:
            conn.settimeout(START_SECONDS)
            message, fds, _, _ = socket.recv_fds(conn, MESSAGE_BYTES, 1)
        except OSError:
            message, fds = b"", []
        if not message or not fds:  # abandoned: the worker answered something else
            for fd in fds:
                os.close(fd)
            hosted.release()
            hosted.body.close()  # type: ignore[attr-defined]
            return
    client = socket.socket(fileno=fds[0])
    try:
        head = json.loads(message)["head"].encode("latin-1")
    except Exception:
        client.close()
        hosted.release()
        raise
    _write(client, head, hosted)


def _open(app: Flask, conn: socket.socket) -> HostedStream | None:
    """Step 1 on this side: the stream, or None once the refusal is sent."""
    conn.settimeout(ANSWER_SECONDS)
    received = conn.recv(MESSAGE_BYTES)
    if not received:  # the worker went away before it asked
        return None
    request = json.loads(received)
    if request.get("op") == "ping":
        conn.sendall(_PONG)
        return None
    streams = app.extensions["lapak.streams"]
    try:
        opener = streams.openers[request["kind"]]
        with app.app_context():
            hosted = opener(request["params"])
    except DomainError as refused:
        conn.sendall(_encode({"problem": _problem(refused)}))
        return None
    except Exception as error:
        log.exception("the stream process could not open a stream")
        down = StreamProcessDown(f"the stream could not be opened: {type(error).__name__}")
        conn.sendall(_encode({"problem": {**_problem(down), "headers": {"Retry-After": "2"}}}))
        return None
    try:
        conn.sendall(_encode({"ok": True}))
    except OSError:
        hosted.release()
        hosted.body.close()  # type: ignore[attr-defined]
        return None
    return hosted


def _problem(error: DomainError) -> dict[str, Any]:
    family = next(
        cls.__name__
        for cls in type(error).__mro__
        if cls.__module__ == errors.__name__ and issubclass(cls, DomainError)
    )
    return {
        "family": family,
        "code": error.code,
        "title": error.title,
        "detail": error.detail,
        "headers": error.headers,
    }


def _write(client: socket.socket, head: bytes, hosted: HostedStream) -> None:
    """The head, then the body, until it ends or the client is gone."""
    body = hosted.body
    try:
        client.settimeout(hosted.write_timeout)
        client.sendall(head)
        for chunk in body:
            client.sendall(chunk)
    except TimeoutError:
        log.info("closed a connection whose client stopped reading")
    except OSError:
        pass  # the client went away: nothing to tell anyone
    finally:
        body.close()  # type: ignore[attr-defined]
        hosted.release()  # a body that never started would not release it itself
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)
        client.close()


def main() -> None:
    """``python -m app.stream_host PATH``: this process, started by :class:`StreamProcess`."""
    from app import create_app, warned_elsewhere

    path = sys.argv[1]
    parent = os.getppid()
    # A stream's events wait for the next poll anyway (half a second): when the CPU is short,
    # the API's requests go first, and the streams' writes after each poll wait a little.
    os.nice(NICENESS)
    warned_elsewhere()
    app = create_app()
    stop = threading.Event()

    def stopping(_signal: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)

    def orphaned() -> None:  # the server was killed: nobody would stop this process
        while not stop.wait(1):
            if os.getppid() != parent:
                stop.set()

    threading.Thread(target=orphaned, name="lapak-stream-parent", daemon=True).start()
    serve(app, path, stop)


# --- the server's side ---------------------------------------------------------------------


class StreamProcess:
    """The stream process of one ``lapak serve``: started with it, started again when it exits
    (after a pause that grows while it keeps failing) or stops answering, stopped with it."""

    def __init__(
        self,
        environment: dict[str, str],
        *,
        ping_seconds: float = PING_SECONDS,
        ping_answer_seconds: float = PING_ANSWER_SECONDS,
        missed_pings: int = MISSED_PINGS,
        startup_seconds: float = STARTUP_SECONDS,
    ) -> None:
        self._folder = tempfile.mkdtemp(prefix="lapak-streams-")
        self.path = os.path.join(self._folder, "streams.sock")
        self._environment = environment
        self._process: subprocess.Popen[bytes] | None = None
        self._spawned_at = 0.0  # when _process was started (both set under _lock)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._pinger: threading.Thread | None = None
        self._ping_seconds = ping_seconds
        self._ping_answer_seconds = ping_answer_seconds
        self._missed_pings = missed_pings
        self._startup_seconds = startup_seconds

    def start(self) -> None:
        """Start the process and wait (up to 30 s) until it takes handovers."""
        self._spawn()
        deadline = time.monotonic() + 30
        while not os.path.exists(self.path) and time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                break
            time.sleep(0.05)
        self._watcher = threading.Thread(target=self._watch, name="lapak-streams", daemon=True)
        self._watcher.start()
        self._pinger = threading.Thread(target=self._ping, name="lapak-streams-ping", daemon=True)
        self._pinger.start()

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            # -P: the app from where it is installed, never an app/ of the current folder. Its
            # own session: a Ctrl-C or a stop sent to the server's process group stops the
            # server, which stops this process (a server gone, it stops by itself).
            self._process = subprocess.Popen(
                [sys.executable, "-P", "-m", "app.stream_host", self.path],
                env=self._environment,
                start_new_session=True,
            )
            self._spawned_at = time.monotonic()

    def _watch(self) -> None:
        pause = 0.5
        while not self._stopping.is_set():
            process = self._process
            if process is None:
                return
            started = time.monotonic()
            code = process.wait()
            if self._stopping.is_set():
                return
            how = f"was killed by signal {-code}" if code < 0 else f"exited ({code})"
            log.warning("the stream process %s; starting it again", how)
            pause = 0.5 if time.monotonic() - started > 60 else min(pause * 2, 30)
            if self._stopping.wait(pause):
                return
            self._spawn()

    def _ping(self) -> None:
        """Kill the process once it has missed ``missed_pings`` pings in a row: :meth:`_watch`
        then starts it again. A process that has not answered yet is given ``startup_seconds``
        first (until it listens, the socket is missing, or is a killed one's that refuses)."""
        client = StreamHostClient(self.path)
        watched, answered, missed = None, False, 0
        while not self._stopping.wait(self._ping_seconds):
            with self._lock:
                process, spawned_at = self._process, self._spawned_at
            if process is None or process.poll() is not None:
                continue  # exited: the watcher starts it again
            if process is not watched:
                watched, answered, missed = process, False, 0
            if client.ping(self._ping_answer_seconds):
                answered, missed = True, 0
                continue
            if process.poll() is not None:
                continue  # it exited meanwhile
            if not answered and time.monotonic() - spawned_at < self._startup_seconds:
                continue
            missed += 1
            log.warning(
                "the stream process (pid %s) did not answer a ping within %g s (%s of %s)",
                process.pid,
                self._ping_answer_seconds,
                missed,
                self._missed_pings,
            )
            if missed < self._missed_pings:
                continue
            with self._lock:  # not once stop() has begun: it ends the process gracefully
                if self._stopping.is_set():
                    return
                if process is self._process:
                    log.warning(
                        "killing the stream process (pid %s) to start it again", process.pid
                    )
                    with contextlib.suppress(OSError):
                        process.kill()  # a stopped (SIGSTOP) process dies too
            missed = 0

    def stop(self) -> None:
        """Stop the process (its streams end; clients reconnect elsewhere or later)."""
        with self._lock:
            self._stopping.set()
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self._folder, ignore_errors=True)


if __name__ == "__main__":
    main()
