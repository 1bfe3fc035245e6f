"""One client's event stream: replay what it missed, then the live feed, until it must end.

The stream opens with ``retry:`` (how soon the browser reconnects) and ``id:`` set to where it
starts, so even a client that received no event reconnects with a ``Last-Event-ID`` and misses
nothing. With a ``Last-Event-ID`` (or ``?last_event_id=``) it first replays the events after that
id that its viewer may see, up to where the process's feed stood when it subscribed; then it
sends what the feed hands it. Without one it starts at the feed's position ("now"). An id beyond
the newest event (a database reset) also starts now.

A replay is bounded, so that no client can make a process read the whole outbox for it (the
outbox keeps every event): it reads pages of :data:`.outbox.PAGE_SIZE` events from a replica
that has replayed what the stream starts after (the primary when none has), checks the
session before each page after the first, and at most ``LAPAK_LIVE_REPLAYS`` streams of a
process replay at once (the others wait their turn, with a comment line now and then). A client
more than ``LAPAK_LIVE_REPLAY_MAX_EVENTS`` event ids behind gets no replay but an ``event:
replay-truncated`` whose ``id:`` is where the stream starts (``data``: ``after``, ``until``,
``detail``): the events in between are not sent, so it should reload what it shows (a page, its
figures) rather than trust its feed.

It ends, and the client reconnects with ``Last-Event-ID``, when it has run
``LAPAK_LIVE_STREAM_MAX_SECONDS``, when the process stops, or when it falls too far behind. It
ends for good when its session does: every ``LAPAK_LIVE_SESSION_CHECK_SECONDS`` the process's
feed checks the sessions of all its streams in one query, as a request's would be checked
(``modules.auth.services.check_sessions``; a replay checks its own between pages), and a
replaced, ended or expired session (or a changed role, whose filter is no longer right) gets an
``event: session-ended`` with the reason before the stream closes; reconnecting then answers
401. A heartbeat comment every ``LAPAK_LIVE_HEARTBEAT_SECONDS`` keeps proxies from closing a
quiet stream and finds clients that are gone; it carries the feed's position as the SSE id, so a
reconnect does not replay events the viewer was never going to see.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import time
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, g, request

from app.db import Session, get_database, read_only
from app.errors import Unauthenticated
from app.log import WarningsEvery
from app.security import Principal
from app.stream_host import HostedStream
from app.streaming import StreamSlot, get_streams, hand_over
from modules.auth.services import check_session

from .audience import Viewer
from .config import LiveSettings, hub, live_settings
from .hub import Hub, Message, Subscriber, messages
from .outbox import Committed, newest_id, read_after

log = logging.getLogger(__name__)
_warnings = WarningsEvery(log, 60)

#: How soon (ms) a browser reconnects after the stream ends (the SSE ``retry:`` field).
RECONNECT_MS = 2000
MIMETYPE = "text/event-stream"


@dataclass
class Stream:
    """What one open stream needs while it runs, outside of any request."""

    app: Flask
    settings: LiveSettings
    hub: Hub
    principal: Principal
    viewer: Viewer
    subscriber: Subscriber
    slot: StreamSlot
    #: The last id the client has been given (sent, or known to be none of its business).
    cursor: int
    #: Where the feed stood when this stream subscribed: replayed up to here, fed after it.
    start: int
    #: The primary's WAL position once the stream subscribed: a replica that has replayed it
    #: has every event to replay (None: no replica, or nothing to replay).
    min_lsn: int | None = None
    #: Whether the server took the answer (see :func:`release_unsent`).
    handed_over: bool = False


class StreamResponse(Response):
    """A stream's answer, which notes when the server takes it."""

    def __init__(self, stream: Stream, **kwargs: Any) -> None:
        super().__init__(_run(stream), **kwargs)
        self.stream = stream
        # The server closes every answer it took, also one whose body it never read (a HEAD
        # request): a generator that never started would not run its own cleanup.
        self.call_on_close(lambda: _release(stream))

    def __call__(self, environ: Any, start_response: Any) -> Any:
        self.stream.handed_over = True
        return super().__call__(environ, start_response)


def release_unsent(_error: BaseException | None = None) -> None:
    """(A ``teardown_request`` hook.) Release the stream opened by this request if its answer
    never reached the server: something after the view failed (an ``after_request`` hook) and
    Flask answered an error instead, so neither the body nor ``close`` will ever run."""
    stream = g.pop("live_stream", None)
    if stream is not None and not stream.handed_over:
        _release(stream)


def open_stream(principal: Principal, last_event_id: int | None) -> Response:
    """The caller's event stream (see the module); 503 when the process serves as many streams
    as it may, 429 when the caller holds as many as one user may
    (``LAPAK_LIVE_STREAMS_PER_USER``: a stream closed elsewhere is noticed at its next write,
    within a heartbeat, hence the ``Retry-After``).

    Under ``lapak serve`` the server's stream process opens and serves it
    (:func:`open_hosted`), and this answer only gives the head of the response it writes."""
    # no-store: nothing caches a stream; no buffering by a proxy (nginx reads this).
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    if get_streams().host is not None:
        hand_over("live", {**_principal_params(principal), "last_event_id": last_event_id})
        return Response(mimetype=MIMETYPE, headers=headers)
    stream = _open(principal, last_event_id)
    g.live_stream = stream
    _bound_writes(stream.settings.write_timeout_seconds)
    return StreamResponse(stream, mimetype=MIMETYPE, headers=headers)


def open_hosted(params: dict[str, Any]) -> HostedStream:
    """The stream process's opener of ``"live"`` streams (see :func:`app.streaming.hand_over`):
    the stream a worker authorised for the principal in ``params``."""
    principal = Principal(
        user_id=params["user_id"],
        user_uuid=uuid.UUID(params["user_uuid"]),
        email=params["email"],
        role=params["role"],
        session_id=uuid.UUID(params["session_id"]) if params["session_id"] else None,
    )
    stream = _open(principal, params["last_event_id"])
    return HostedStream(
        _run(stream), stream.settings.write_timeout_seconds, lambda: _release(stream)
    )


def _principal_params(principal: Principal) -> dict[str, Any]:
    return {
        "user_id": principal.user_id,
        "user_uuid": str(principal.user_uuid),
        "email": principal.email,
        "role": principal.role,
        "session_id": str(principal.session_id) if principal.session_id else None,
    }


def _open(principal: Principal, last_event_id: int | None) -> Stream:
    """A slot, a subscription and where the stream starts (in an app context)."""
    settings = live_settings()
    slot = get_streams().open(
        owner=("user", principal.user_id),
        per_owner=settings.streams_per_user,
        retry_after=settings.heartbeat_seconds,
    )
    try:
        feed = hub()
        viewer = Viewer.of(principal)
        session = (principal.session_id, principal.user_uuid) if principal.session_id else None
        subscriber, start = feed.subscribe(viewer, session)
        try:
            cursor = start
            if last_event_id is not None and last_event_id <= newest_id(Session()):
                cursor = last_event_id
        except BaseException:
            feed.unsubscribe(subscriber)
            raise
    except BaseException:
        slot.close()
        raise
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    stream = Stream(app, settings, feed, principal, viewer, subscriber, slot, cursor, start)
    if _replay_needed(stream) == "pages":
        database = get_database()
        try:
            stream.min_lsn = database.primary_lsn() if database.replicas else None
        except BaseException:
            _release(stream)
            raise
    return stream


def _bound_writes(seconds: float) -> None:
    """Let a write to this request's socket wait at most ``seconds``: a client that stops
    reading (its window shut, the connection open) would otherwise hold the stream's thread and
    slot in a blocked ``send`` for as long as the kernel keeps the connection, and neither the
    stream's end, its session check nor a stopping process would be looked at. The server then
    drops the connection, which closes the stream. The socket is gunicorn's or Werkzeug's."""
    environ = request.environ
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        sock.settimeout(seconds)


def _run(stream: Stream) -> Iterator[bytes]:
    """The stream's body: its messages, as they come."""
    settings = stream.settings
    stopping = stream.app.extensions["lapak.streams"].stopping
    try:
        yield f"retry: {RECONNECT_MS}\nid: {stream.cursor}\n\n".encode()
        replayed = yield from _replay(stream)
        if not replayed:  # ended meanwhile: the client resumes where the replay stopped
            return
        now = time.monotonic()
        ends_at = now + settings.stream_max_seconds
        # The first beat comes at a random point of its interval (earlier, never later):
        # streams opened together (a restart's reconnects, a benchmark) would otherwise beat in
        # step for as long as they run, a burst of work on the worker that the requests
        # arriving then wait behind. (Their sessions the hub checks, all at once.)
        next_heartbeat = now + settings.heartbeat_seconds * random.random()  # noqa: S311
        while True:
            fed = _fed(stream)
            if fed:
                yield fed
            if stream.subscriber.ended is not None or stopping.is_set():
                if ending := _ending(stream):
                    yield ending
                return
            now = time.monotonic()
            if now >= ends_at:
                return
            if now >= next_heartbeat:
                beat = _heartbeat(stream)
                if beat:
                    yield beat
                next_heartbeat = now + settings.heartbeat_seconds
            stream.subscriber.wait(min(ends_at, next_heartbeat) - now)
    finally:
        _release(stream)


def _release(stream: Stream) -> None:
    """Give the stream's subscription and slot back (again: a no-op)."""
    stream.hub.unsubscribe(stream.subscriber)
    stream.slot.close()


def _replay_needed(stream: Stream) -> str | None:
    """None (the client is up to date), ``"pages"`` or ``"truncated"`` (too far behind)."""
    if stream.cursor >= stream.start:
        return None
    if stream.start - stream.cursor > stream.settings.replay_max_events:
        return "truncated"
    return "pages"


def _replay(stream: Stream) -> Generator[bytes, None, bool]:
    """The events after the client's id, up to where the feed took over, that it may see (see
    the module for the bounds); whether the stream may go on (False: it ended meanwhile)."""
    needed = _replay_needed(stream)
    if needed is None:
        return True
    if needed == "truncated":
        yield _truncated(stream)
        stream.cursor = stream.start
        return True
    stopping = stream.app.extensions["lapak.streams"].stopping
    turns = stream.hub.replays
    while not turns.acquire(timeout=stream.settings.heartbeat_seconds):
        if stream.subscriber.ended is not None or stopping.is_set():
            if ending := _ending(stream):
                yield ending
            return False
        ended = _session_ended(stream)
        if ended is not None:
            yield ended
            return False
        yield b": waiting to replay\n\n"  # keeps proxies, and finds a client gone
    try:
        first = True
        while stream.cursor < stream.start:
            if stream.subscriber.ended is not None or stopping.is_set():
                if ending := _ending(stream):
                    yield ending
                return False
            if not first:
                ended = _session_ended(stream)
                if ended is not None:
                    yield ended
                    return False
            first = False
            with stream.app.app_context():
                events, rendered = read_only(min_lsn=stream.min_lsn)(_replay_page)(stream)
            if not events:
                break
            for message in rendered:
                if message.audience.visible_to(stream.viewer):
                    yield message.text
            stream.cursor = events[-1].id
    finally:
        turns.release()
    return True


def _replay_page(stream: Stream) -> tuple[list[Committed], list[Message]]:
    """The next page of the replay, with the audiences its viewer's role needs."""
    session = Session()
    events = read_after(session, stream.cursor, upto=stream.start)
    role = stream.viewer.role
    return events, messages(session, events, sellers=role == "seller", customers=role == "customer")


def _truncated(stream: Stream) -> bytes:
    """``replay-truncated``, with where the stream starts as its id (see the module)."""
    body = json.dumps(
        {
            "after": str(stream.cursor),
            "until": str(stream.start),
            "detail": f"more than {stream.settings.replay_max_events} events were missed; they "
            "are not sent: reload what you show",
        }
    )
    return f"id: {stream.start}\nevent: replay-truncated\ndata: {body}\n\n".encode()


def _fed(stream: Stream) -> bytes:
    """What the feed has handed this stream since the last call (the hub hands a stream only
    what its viewer may see)."""
    sent = []
    for message in stream.subscriber.take():
        if message.id > stream.cursor:  # a client ahead of this process's feed has these
            stream.cursor = message.id
            sent.append(message.text)
    return b"".join(sent)


def _heartbeat(stream: Stream) -> bytes:
    """A comment, with the feed's position as the id: the hub hands over the events up to a
    position before it publishes it, so once they are taken the client is up to date there,
    whether it was sent any of them or not.

    Not so once the hub has ended the stream: it drops what it hands over from then on (and a
    stream too slow loses what was waiting), so the position may be past messages this stream
    never got. Then only what was taken is sent, and the client reconnects from its last id.
    The position is read before the messages are taken and the end checked after: a stream
    still running then had every message up to that position put in its mailbox.
    """
    position = stream.hub.position
    fed = _fed(stream)
    if stream.subscriber.ended is not None:
        return fed
    stream.cursor = max(stream.cursor, position)
    return fed + f": heartbeat\nid: {stream.cursor}\n\n".encode()


def _ending(stream: Stream) -> bytes | None:
    """The ``session-ended`` message if the hub ended the stream for its session (see
    :meth:`.hub.Hub.subscribe`)."""
    ending = stream.subscriber.session_ending
    return _ended(*ending) if ending is not None else None


def _session_ended(stream: Stream) -> bytes | None:
    """The ``session-ended`` message if the stream's session may no longer be used."""
    principal = stream.principal
    if principal.session_id is None:  # no session to check (never let in: see api.py)
        return _ended("no-session", "this stream needs a logged-in session")
    try:
        with stream.app.app_context():
            state = check_session(principal.session_id, principal.user_uuid)
    except Unauthenticated as refused:
        return _ended(refused.code, refused.detail or refused.title)
    except Exception as error:  # the database or Redis down: no events flow either; try again
        _warnings.warn("check", "live: a stream's session check failed: %s", error)
        return None
    if state.role != principal.role:
        return _ended("role-changed", "your role changed; connect again")
    return None


def _ended(reason: str, detail: str) -> bytes:
    body = json.dumps({"reason": reason, "detail": detail})
    return f"event: session-ended\ndata: {body}\n\n".encode()
