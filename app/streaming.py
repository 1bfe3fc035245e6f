"""Long-lived responses (Server-Sent Events): how many a process serves, and when they end.

A streamed response holds the thread that serves it for as long as it is open. ``lapak serve``
gives each worker process ``LAPAK_WEB_THREADS`` threads for ordinary requests and
``LAPAK_WEB_STREAMS`` more for streams (``app/serving.py``); :class:`Streams` is what keeps the
streams to their share: a view that streams opens a :class:`StreamSlot` first, and when the
process already serves ``LAPAK_WEB_STREAMS`` streams it is refused with :class:`StreamsFull`
(503 with ``Retry-After``), so the API always has its threads. The development server and the
tests' servers count the same way. A view may also name the stream's owner (a user) and how
many streams one owner may hold in the process: one more is refused with
:class:`TooManyStreams` (429 with ``Retry-After``), so one person's tabs or a script cannot
take every slot from everyone else.

A stream also has to end when its process stops: gunicorn waits ``graceful_timeout`` for open
responses, which a stream would fill to the last second. :meth:`Streams.stop` (called by the
worker when it is told to stop, and by the app's closers) sets :attr:`Streams.stopping` and calls
what the streaming modules registered with :meth:`Streams.on_stop` to wake their streams.

Under ``lapak serve`` the workers serve no stream themselves: a view that streams calls
:func:`hand_over`, and the server's stream process (``app/stream_host.py``) serves the stream
with the opener the module registered in :attr:`Streams.openers`, counting slots as above in
that one process. The development server and the tests' servers keep the threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any

from flask import Flask, current_app, request

from app.errors import ServiceUnavailable, TooManyRequests
from app.stream_host import HANDOVER, Opener, StreamHostClient

log = logging.getLogger(__name__)


class StreamsFull(ServiceUnavailable):
    code = "streams-full"
    title = "This server serves as many streams as it may"


class TooManyStreams(TooManyRequests):
    code = "too-many-streams"
    title = "You have as many streams open as you may"


class Streams:
    """The stream slots of one app in one process (see the module)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.stopping = threading.Event()
        self._open = 0
        self._owned: dict[Hashable, int] = {}
        self._lock = threading.Lock()
        self._on_stop: list[Callable[[], None]] = []
        #: The server's stream process, when one serves this worker's streams (``lapak serve``).
        self.host: StreamHostClient | None = None
        #: What the stream process opens for each kind of stream (see :func:`hand_over`).
        self.openers: dict[str, Opener] = {}

    @property
    def open_count(self) -> int:
        return self._open

    def open(
        self, owner: Hashable | None = None, per_owner: int | None = None, retry_after: int = 2
    ) -> StreamSlot:
        """A slot for one stream, to close when it ends; :class:`StreamsFull` if none is free
        (or the process is stopping), :class:`TooManyStreams` (with ``Retry-After:
        retry_after``) if ``owner`` holds ``per_owner`` slots already."""
        with self._lock:
            if self.stopping.is_set():
                raise StreamsFull("this server is stopping; connect again", headers=_RETRY_SOON)
            owned = self._owned.get(owner, 0) if owner is not None else 0
            if per_owner is not None and owned >= per_owner:
                raise TooManyStreams(
                    f"you have {per_owner} streams open on this server process already; close "
                    "one (a browser tab) and connect again",
                    headers={"Retry-After": str(retry_after)},
                )
            if self._open >= self.capacity:
                raise StreamsFull(
                    f"this server process serves {self.capacity} streams already "
                    "(LAPAK_WEB_STREAMS); connect again in a few seconds",
                    headers=_RETRY_SOON,
                )
            self._open += 1
            if owner is not None:
                self._owned[owner] = owned + 1
        return StreamSlot(self, owner)

    def owned_by(self, owner: Hashable) -> int:
        """How many slots ``owner`` holds."""
        return self._owned.get(owner, 0)

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the process begins to stop (quick; it may run in a signal
        handler): wake the streams so that they end."""
        self._on_stop.append(callback)

    def stop(self) -> None:
        """End every stream of this app (the process is stopping); new ones are refused."""
        self.stopping.set()
        for callback in self._on_stop:
            try:
                callback()
            except Exception:  # one module's failure must not keep the others' streams open
                log.exception("stream stop callback %r failed", callback)

    def _release(self, owner: Hashable | None) -> None:
        with self._lock:
            self._open -= 1
            if owner is not None:
                left = self._owned.pop(owner) - 1
                if left:
                    self._owned[owner] = left


#: A full server tells the client to come back soon: a stream elsewhere may end any moment.
_RETRY_SOON = {"Retry-After": "2"}


class StreamSlot:
    """One open stream's place; :meth:`close` it (once) when the stream ends."""

    def __init__(self, streams: Streams, owner: Hashable | None = None) -> None:
        self._streams: Streams | None = streams
        self._owner = owner

    def close(self) -> None:
        streams, self._streams = self._streams, None
        if streams is not None:
            streams._release(self._owner)


def install(app: Flask, capacity: int) -> Streams:
    """The app's :class:`Streams`, stopped by the app's closers too."""
    streams = Streams(capacity)
    app.extensions["lapak.streams"] = streams
    app.extensions.setdefault("lapak.closers", []).append(streams.stop)
    return streams


def get_streams() -> Streams:
    return current_app.extensions["lapak.streams"]


def hand_over(kind: str, params: dict[str, Any]) -> None:
    """Have the stream process serve this request's stream: it opens one with the opener of
    ``kind`` (its refusal is raised here: 503 when full, 429 per owner, 503 when it is down),
    and takes the connection once the view has answered 200 (the view's answer gives the head;
    its body is never sent by the worker); for HEAD it opens and gives the stream back at once.
    Only when :attr:`Streams.host` is set."""
    host = get_streams().host
    if host is None:
        raise RuntimeError("no stream process serves this app")
    if request.method == "HEAD":  # the GET's answer, without a stream: refusals included
        host.open(kind, params).abandon()
        return
    request.environ[HANDOVER] = host.open(kind, params)
