"""The process's feed: a stream that subscribes while a batch is read still gets its events
(on PostgreSQL and on the embedded default), and a seller who keeps reconnecting loses none."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flask import Flask

from app.db import transaction
from app.events import emit
from modules.live.audience import Viewer
from modules.live.hub import Hub, Message, Subscriber
from modules.live.outbox import Frontier
from modules.live.stream import Stream, _heartbeat

from .conftest import Message as SseMessage
from .conftest import open_stream, outbox, person, position_reached


def taken_within(subscriber: Subscriber, seconds: float = 20) -> list[Message]:
    """What the feed hands ``subscriber`` (at least one message) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        subscriber.wait(0.1)
        found = subscriber.take()
        if found:
            return found
    raise AssertionError("the feed handed nothing over")


def test_a_stream_that_subscribes_while_the_feed_reads_a_batch_gets_the_batch(
    live_app: Flask,
) -> None:
    staff, seller = person(live_app, "staff"), person(live_app, "seller")
    hub: Hub = live_app.extensions["live.hub"]
    poll = hub._poll
    joined: list[tuple[Subscriber, int]] = []

    def poll_then_subscribe(frontier: Frontier) -> tuple[list[Message], bool]:
        """The feed's read, then the seller's stream subscribes: after the batch was read
        (for the viewers connected then, staff only) and before it is handed over."""
        batch, full = poll(frontier)
        if not joined and any(b"settlement.created" in message.text for message in batch):
            with live_app.app_context():
                joined.append(hub.subscribe(Viewer(seller.user_id, "seller")))
        return batch, full

    hub._poll = poll_then_subscribe  # type: ignore[method-assign]
    with live_app.app_context():
        watcher, _ = hub.subscribe(Viewer(staff.user_id, "staff"))
    try:
        with live_app.app_context(), transaction():
            emit("settlement.created", {"seller": str(seller.uuid), "name": "PAY/1"})
        [(event_id, _, _)] = outbox(live_app, outbox(live_app)[-1][0] - 1)

        assert event_id in [message.id for message in taken_within(watcher)]
        [(newcomer, start)] = joined
        # Its replay ends before the event, so the feed must hand it over.
        assert start < event_id
        assert event_id in [message.id for message in newcomer.take()]
    finally:
        hub._poll = poll  # type: ignore[method-assign]
        hub.unsubscribe(watcher)
        for subscriber, _ in joined:
            hub.unsubscribe(subscriber)


#: At most this many events: written one by one for as long as the seller reconnects.
SETTLEMENTS = 3000
RECONNECTS = 20


def test_a_seller_who_reconnects_again_and_again_beside_a_staff_stream_loses_nothing(
    app: Flask, serve: Callable[[Flask], str]
) -> None:
    """End to end, heartbeats' ids included. A reconnect lands in a batch's read only now and
    then: the test above is the one that pins that race down."""
    live_app = app
    base = serve(live_app)
    staff, seller = person(live_app, "staff"), person(live_app, "seller")
    hub: Hub = live_app.extensions["live.hub"]
    watcher = open_stream(base, staff)
    watcher.next()
    first = open_stream(base, seller)
    last = int(first.next().id)  # type: ignore[union-attr, arg-type]
    first.close()
    done = threading.Event()

    def write() -> None:
        with live_app.app_context():
            for n in range(SETTLEMENTS):
                if done.is_set():
                    return
                with transaction():
                    emit("settlement.created", {"seller": str(seller.uuid), "n": n})
                time.sleep(0.01)

    writer = threading.Thread(target=write)
    writer.start()
    received: list[SseMessage] = []
    try:
        for _ in range(RECONNECTS):
            # Only the staff stream left: the feed reads its batches for staff alone.
            deadline = time.monotonic() + 10
            while hub.subscriber_count > 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            sse = open_stream(base, seller, last_event_id=last)
            assert sse.status == 200
            for _ in range(3):  # where it starts, then events or a heartbeat
                message = sse.next()
                assert message is not None
                if message.data:
                    received.append(message)
            last = int(sse.last_id)  # type: ignore[arg-type]
            sse.close()
    finally:
        done.set()
        writer.join(60)
    watcher.close()
    written = [event_id for event_id, name, _ in outbox(live_app) if name == "settlement.created"]
    final = open_stream(base, seller, last_event_id=last)
    received += final.events(position_reached(written[-1]))
    final.close()

    assert [int(m.id) for m in received if m.event == "settlement.created"] == written  # type: ignore[arg-type]


def test_a_heartbeat_never_moves_an_ended_stream_past_what_the_feed_dropped(app: Flask) -> None:
    admin = person(app, "admin")
    hub: Hub = app.extensions["live.hub"]
    with app.app_context():
        viewer = Viewer(admin.user_id, "admin")
        subscriber, start = hub.subscribe(viewer)
    stream = Stream(app, hub.settings, hub, None, viewer, subscriber, None, start, start)  # type: ignore[arg-type]
    try:
        # Too slow (or the process stopping): the hub drops what it hands over from now on.
        subscriber.end("too-slow")
        with app.app_context(), transaction():
            emit("live.probe", {"n": 1})
        [(event_id, _, _)] = outbox(app, start)
        deadline = time.monotonic() + 20
        while hub.position < event_id:
            assert time.monotonic() < deadline, "the feed did not get there"
            time.sleep(0.05)

        beat = _heartbeat(stream)
    finally:
        hub.unsubscribe(subscriber)

    assert f"id: {event_id}".encode() not in beat
    assert stream.cursor == start  # the client reconnects from here: the event is replayed
