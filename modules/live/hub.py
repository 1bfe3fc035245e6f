"""One feed per process: a thread reads the outbox and hands each stream what it may see.

Why one poller for all streams rather than a query per stream: 200 open streams then cost the
database one indexed range scan (``WHERE id > :position ORDER BY id LIMIT 500``) every
``LAPAK_LIVE_POLL_MS`` per process, plus a few batched audience lookups when there are new
events, whatever the number of streams. Why polling rather than a Redis pub/sub wake-up after
each commit: it needs no Redis (the embedded default has none), cannot miss a message (a
notification lost while a subscriber reconnects is an event late until the next poll anyway),
adds nothing to the write path, and the outbox must be read in id order with its gaps handled
(:mod:`.outbox`) whatever wakes the reader; the price is up to half a second of latency.

The thread runs while at least one stream is subscribed, and starts again (from the newest
event) with the next one. Each event is rendered once, as the SSE message every stream sends,
and given to the streams whose viewer may see it (:mod:`.audience`). A stream that does not
keep up (:data:`MAX_QUEUED` messages waiting) is ended; its client reconnects with
``Last-Event-ID`` and replays from the database.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from flask import Flask
from sqlalchemy.orm import Session as OrmSession

from app.db import Session
from app.errors import Unauthenticated
from app.log import WarningsEvery
from modules.auth.services import check_sessions
from modules.webhook.fanout import INTERNAL_KEYS

from .audience import Audience, Viewer, audiences
from .config import LiveSettings
from .outbox import PAGE_SIZE, Committed, Frontier, read_polled, settled_newest_id

log = logging.getLogger(__name__)

#: Messages a stream may have waiting before it is ended as too slow.
MAX_QUEUED = 10_000


@dataclass(frozen=True)
class Message:
    """One event as every stream sends it (``text``), with who may see it."""

    id: int
    audience: Audience
    text: bytes


def render(event: Committed) -> bytes:
    """``event`` as an SSE message: the outbox id as its id, the event type as its type, and
    ``{"id", "type", "time", "payload"}`` as its data (one line of JSON)."""
    data = {
        "id": str(event.event_id),
        "type": event.name,
        "time": event.created_at.isoformat(),
        # Without the integer keys of rows, as webhooks: public ids are UUIDs.
        "payload": {k: v for k, v in event.payload.items() if k not in INTERNAL_KEYS},
    }
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.id}\nevent: {event.name}\ndata: {body}\n\n".encode()


def messages(
    session: OrmSession,
    events: Sequence[Committed],
    *,
    sellers: bool = True,
    customers: bool = True,
) -> list[Message]:
    """``events`` rendered, with their audiences (see :func:`.audience.audiences` for
    ``sellers`` and ``customers``).

    The feed always resolves every audience of a batch: the streams it hands the batch to are
    those subscribed when the batch is handed over, and one may subscribe while the batch is
    read (its replay ends where the feed stood before the batch). An audience found only for
    the viewers connected when the read began would leave that stream's events out, and its
    next heartbeat would move it past them for good.
    """  # fmt: skip
    if not events:
        return []
    found = audiences(session, events, sellers=sellers, customers=customers)
    return [
        Message(event.id, audience, render(event))
        for event, audience in zip(events, found, strict=True)
    ]


#: Why the hub ends a stream whose session may no longer be used (see :meth:`Hub.subscribe`).
SESSION_ENDED = "session-ended"


class Subscriber:
    """A stream's mailbox: the hub puts, the stream takes and waits."""

    def __init__(self, viewer: Viewer, session: tuple[uuid.UUID, uuid.UUID] | None = None) -> None:
        self.viewer = viewer
        #: ``(sid, user_uuid)`` of the stream's login session, which the hub checks.
        self.session = session
        #: Why the hub ended this stream (``None`` while it runs).
        self.ended: str | None = None
        #: ``(reason, detail)`` when it ended for :data:`SESSION_ENDED`.
        self.session_ending: tuple[str, str] | None = None
        self._waiting: deque[Message] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()

    def put(self, message: Message) -> None:
        with self._lock:
            if self.ended is not None:
                return
            if len(self._waiting) >= MAX_QUEUED:
                self.ended = "too-slow"
                self._waiting.clear()
            else:
                self._waiting.append(message)
            self._wake.set()

    def end(self, reason: str) -> None:
        with self._lock:
            if self.ended is None:
                self.ended = reason
            self._wake.set()

    def end_session(self, reason: str, detail: str) -> None:
        """End the stream because its session may no longer be used (``reason``: the code)."""
        with self._lock:
            if self.ended is None:
                self.ended = SESSION_ENDED
                self.session_ending = (reason, detail)
            self._wake.set()

    def take(self) -> list[Message]:
        """Every message waiting, in order (and clear the wake-up)."""
        with self._lock:
            self._wake.clear()
            taken = list(self._waiting)
            self._waiting.clear()
        return taken

    def wait(self, seconds: float) -> None:
        """Sleep until a message comes, the stream is ended, or ``seconds`` pass."""
        self._wake.wait(max(seconds, 0))


class Hub:
    """The process's feed (see the module)."""

    def __init__(self, app: Flask, settings: LiveSettings) -> None:
        self.app = app
        self.settings = settings
        #: Events up to here have been handed to every subscriber of the time.
        self.position = 0
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()
        #: Held while the feed finds where it starts (see :meth:`subscribe`).
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._warnings = WarningsEvery(log, 60)
        #: Turns to replay (see :mod:`.stream`): a reconnect storm reads the outbox a few
        #: streams at a time, leaving the database's connections to the API.
        self.replays = threading.BoundedSemaphore(settings.replays)

    def subscribe(
        self, viewer: Viewer, session: tuple[uuid.UUID, uuid.UUID] | None = None
    ) -> tuple[Subscriber, int]:
        """A new subscriber, and the position after which the hub hands it events (the events
        up to there are the stream's to replay). Call inside an app context.

        With ``session`` (its ``(sid, user_uuid)``), the hub checks that session every
        ``LAPAK_LIVE_SESSION_CHECK_SECONDS``, with every other subscriber's in one query, and
        ends the subscriber (:data:`SESSION_ENDED`) once it is replaced, ended or expired, or
        its role is no longer the viewer's (whose filter would then be wrong).

        When the feed is not running, it starts from the newest event, once no lower id can
        still commit (:func:`.outbox.settled_newest_id`, which may wait on a transaction
        running): that wait holds the start lock, which only the streams that need the start
        wait for, never the hub's lock (streams closing, the process stopping).
        """
        subscriber = Subscriber(viewer, session)
        with self._lock:
            if self._thread is not None:
                return self._add(subscriber)
        with self._start_lock:
            with self._lock:
                if self._thread is not None:  # started while this one waited for the lock
                    return self._add(subscriber)
            position = settled_newest_id(Session(), self.settings.gap_timeout_seconds)
            with self._lock:
                # Only a holder of the start lock starts the thread: it is still not running.
                self.position = position
                self._thread = threading.Thread(
                    target=self._run,
                    args=(Frontier(position, self.settings.gap_timeout_seconds),),
                    name="lapak-live-hub",
                    daemon=True,
                )
                self._thread.start()
                return self._add(subscriber)

    def _add(self, subscriber: Subscriber) -> tuple[Subscriber, int]:
        """(Under the lock.) ``subscriber`` fed from now on, and where that starts."""
        self._subscribers.add(subscriber)
        if self._closed.is_set():
            subscriber.end("server-stopping")
        return subscriber, self.position

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def close_all(self) -> None:
        """End every stream and the thread (the process or the app is stopping)."""
        self._closed.set()
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber.end("server-stopping")

    def _run(self, frontier: Frontier) -> None:
        next_check = time.monotonic() + self.settings.session_check_seconds
        while not self._closed.is_set():
            with self._lock:
                if not self._subscribers:
                    self._thread = None
                    return
            if time.monotonic() >= next_check:
                self._check_sessions()
                next_check = time.monotonic() + self.settings.session_check_seconds
            try:
                batch, full = self._poll(frontier)
            except Exception as error:  # the database down: try again at the next poll
                self._warnings.warn("poll", "live: reading the outbox failed: %s", error)
                batch, full = [], False
            with self._lock:
                for message in batch:
                    for subscriber in self._subscribers:
                        if message.audience.visible_to(subscriber.viewer):
                            subscriber.put(message)
                # Published after the messages are handed over (streams rely on it).
                self.position = frontier.position
            if not full:
                self._closed.wait(self.settings.poll_seconds)

    def _check_sessions(self) -> None:
        """End the subscribers whose session may no longer be used (see :meth:`subscribe`):
        one query for all, where a check per stream would cost each of a process's streams a
        round trip to the cache or the database every few seconds."""
        with self._lock:
            checked = [
                (subscriber, session)
                for subscriber in self._subscribers
                if (session := subscriber.session) is not None and subscriber.ended is None
            ]
        if not checked:
            return
        try:
            with self.app.app_context():
                verdicts = check_sessions(session for _, session in checked)
        except Exception as error:  # the database down: no events flow either; try again
            self._warnings.warn("check", "live: checking the streams' sessions failed: %s", error)
            return
        for subscriber, (sid, _) in checked:
            verdict = verdicts[sid]
            if isinstance(verdict, Unauthenticated):
                subscriber.end_session(verdict.code, verdict.detail or verdict.title)
            elif verdict.role != subscriber.viewer.role:
                subscriber.end_session("role-changed", "your role changed; connect again")

    def _poll(self, frontier: Frontier) -> tuple[list[Message], bool]:
        """The next events as messages; whether a whole page was read (more may be waiting)."""
        with self.app.app_context():
            session = Session()
            rows, snapshot = read_polled(
                session, frontier.position, PAGE_SIZE, horizon=frontier.wants_horizon
            )
            position = frontier.position
            taken = frontier.advance(rows, snapshot)
            try:
                return messages(session, taken), len(taken) == PAGE_SIZE
            except Exception:
                frontier.position = position  # read them again at the next poll
                raise
