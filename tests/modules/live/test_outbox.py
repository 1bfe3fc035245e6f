"""The feed reads committed events in id order and never moves past an id that may still
commit: on PostgreSQL a transaction that took a lower id can commit after a higher one."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from flask import Flask

from app.db import Session, transaction
from app.events import emit
from modules.live.audience import Viewer
from modules.live.hub import Hub, Subscriber
from modules.live.outbox import Committed, Frontier, Snapshot, settled_newest_id
from tests.modules.marketplace.conftest import primary_dsn
from tests.servers import Services

from .conftest import Sse, open_stream, person, position_reached


def committed(*ids: int) -> list[Committed]:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    return [Committed(i, uuid.uuid4(), "live.probe", moment, {}) for i in ids]


def taken(frontier: Frontier, rows: list[Committed], snapshot: Snapshot | None) -> list[int]:
    return [row.id for row in frontier.advance(rows, snapshot)]


def test_events_in_a_row_are_taken_in_order() -> None:
    frontier = Frontier(4, gap_timeout_seconds=30)

    assert taken(frontier, committed(5, 6, 7), Snapshot(100)) == [5, 6, 7]
    assert frontier.position == 7
    assert not frontier.wants_horizon
    assert taken(frontier, committed(6, 7), Snapshot(100)) == []  # read again: no repeat


def test_on_sqlite_a_missing_id_is_skipped_at_once() -> None:
    frontier = Frontier(4, gap_timeout_seconds=30)

    assert taken(frontier, committed(5, 7, 8), None) == [5, 7, 8]


def test_a_missing_id_holds_the_feed_until_every_transaction_that_may_hold_it_has_ended() -> None:
    frontier = Frontier(4, gap_timeout_seconds=30)
    rows = committed(5, 7)

    # First seen: transaction 50 and later ones may still be running.
    assert taken(frontier, rows, Snapshot(xmin=50)) == [5]
    assert frontier.wants_horizon
    # Next poll: the transactions that may hold 6 are all below the horizon 61; 50 still runs.
    assert taken(frontier, rows, Snapshot(xmin=50, horizon=61)) == []
    assert not frontier.wants_horizon
    assert taken(frontier, rows, Snapshot(xmin=58)) == []
    # 6 committed meanwhile: taken in order, before 7.
    assert taken(frontier, committed(6, 7), Snapshot(xmin=58)) == [6, 7]


def test_a_missing_id_of_a_rolled_back_transaction_is_skipped_once_older_ones_ended() -> None:
    frontier = Frontier(4, gap_timeout_seconds=30)
    rows = committed(7, 8)

    assert taken(frontier, rows, Snapshot(xmin=50)) == []
    assert taken(frontier, rows, Snapshot(xmin=55, horizon=61)) == []
    assert taken(frontier, rows, Snapshot(xmin=61)) == [7, 8]


def test_a_missing_id_is_skipped_after_the_gap_timeout(caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    frontier = Frontier(4, gap_timeout_seconds=30, clock=lambda: now[0])
    rows = committed(6)

    assert taken(frontier, rows, Snapshot(xmin=50)) == []
    now[0] += 29
    assert taken(frontier, rows, Snapshot(xmin=50, horizon=61)) == []
    now[0] += 1
    assert taken(frontier, rows, Snapshot(xmin=50)) == [6]
    assert "event ids 5 to 5 were still missing after 30s" in caplog.text


# -- on a real PostgreSQL, through the stream ----------------------------------------------------


def insert_event(connection: psycopg.Connection, name: str) -> int:
    row = connection.execute(
        "INSERT INTO core_outbox_event (event_id, name, payload, status, attempts, delivered_to,"
        " created_at, next_attempt_at) VALUES (%s, %s, %s, 'pending', 0, '[]', now(), now())"
        " RETURNING id",
        (uuid.uuid4(), name, json.dumps({"name": name})),
    ).fetchone()
    assert row is not None
    return row[0]


def heartbeats(sse: Sse, count: int) -> list[str]:
    """Read until ``count`` heartbeats came; the events seen meanwhile (by name)."""
    seen: list[str] = []
    beats = 0
    while beats < count:
        message = sse.next()
        assert message is not None
        if message.data:
            seen.append(message.json["type"])
        beats += "heartbeat" in message.comments
    return seen


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_an_event_committed_after_a_later_one_is_sent_first_and_a_rolled_back_one_never(
    app: Flask, services: Services, serve: Callable[[Flask], str], outcome: str
) -> None:
    base = serve(app)
    admin = person(app, "admin")
    sse = open_stream(base, admin)
    assert sse.status == 200
    sse.next()
    with (
        psycopg.connect(primary_dsn(services)) as slow,
        psycopg.connect(primary_dsn(services), autocommit=True) as quick,
    ):
        first = insert_event(slow, "live.first")  # not committed yet
        second = insert_event(quick, "live.second")
        assert first < second

        held_back = heartbeats(sse, 3)  # the feed polls many times meanwhile
        assert "live.second" not in held_back
        getattr(slow, outcome)()

        received = sse.events(position_reached(second))
    sse.close()

    names = [m.json["type"] for m in received if m.json["type"].startswith("live.")]
    assert names == (["live.first", "live.second"] if outcome == "commit" else ["live.second"])


def test_an_event_whose_transaction_began_writing_after_the_next_ones_is_not_skipped(
    app: Flask, services: Services, serve: Callable[[Flask], str]
) -> None:
    """The transaction holding the missing id has a transaction id newer than every one ended
    when the next event commits: PostgreSQL's snapshot leaves it out of ``xmin`` and ``xmax``."""
    base = serve(app)
    admin = person(app, "admin")
    sse = open_stream(base, admin)
    assert sse.status == 200
    sse.next()
    with (
        psycopg.connect(primary_dsn(services)) as earlier,
        psycopg.connect(primary_dsn(services)) as later,
    ):
        earlier.execute("SELECT pg_current_xact_id()")  # began writing first
        later.execute("SELECT pg_current_xact_id()")  # then this one
        first = insert_event(later, "live.first")  # but it takes its outbox id first
        second = insert_event(earlier, "live.second")
        earlier.commit()  # the newest transaction ended; the later one runs on
        assert first < second

        held_back = heartbeats(sse, 3)
        assert "live.second" not in held_back
        later.commit()

        received = sse.events(position_reached(second))
    sse.close()

    assert [m.json["type"] for m in received if m.json["type"].startswith("live.")] == [
        "live.first",
        "live.second",
    ]


def test_a_feed_does_not_start_before_a_transaction_newer_than_every_ended_one(
    app: Flask, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="modules.live.outbox")
    with psycopg.connect(primary_dsn(services)) as running:
        running.execute("SELECT pg_current_xact_id()")  # no transaction ended after it
        with app.app_context():
            settled_newest_id(Session(), wait_seconds=1)
        running.rollback()

    assert "the feed starts after event" in caplog.text


def test_events_the_feed_could_not_filter_are_read_again_not_skipped(
    app: Flask, services: Services, serve: Callable[[Flask], str]
) -> None:
    base = serve(app)
    admin, customer = person(app, "admin"), person(app, "customer")
    streams = [open_stream(base, admin), open_stream(base, customer)]
    for sse in streams:
        sse.next()
    with psycopg.connect(primary_dsn(services), autocommit=True) as connection:
        connection.execute("SET lock_timeout = '10s'")
        # The customers' lookup reads the orders: with the table away, every poll fails.
        connection.execute("ALTER TABLE marketplace_sale_order RENAME TO live_test_away")
        try:
            with app.app_context(), transaction():
                emit("order.confirmed", {"order": str(uuid.uuid4())})
            held_back = heartbeats(streams[0], 2)
        finally:
            connection.execute("ALTER TABLE live_test_away RENAME TO marketplace_sale_order")

        [received] = streams[0].events(lambda m: m.event == "order.confirmed")
    for sse in streams:
        sse.close()

    assert "order.confirmed" not in held_back
    assert received.json["type"] == "order.confirmed"


def test_a_feed_that_starts_beside_a_long_transaction_waits_apart_from_the_hub_then_warns(
    make_app: Callable[..., Flask],
    config: dict[str, Any],
    services: Services,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(module_env={**config["module_env"], "live_gap_timeout_seconds": "3"})
    caplog.set_level(logging.WARNING, logger="modules.live.outbox")
    admin = person(app, "admin")
    hub: Hub = app.extensions["live.hub"]
    started: list[tuple[Subscriber, int]] = []

    def subscribe() -> None:
        with app.app_context():
            started.append(hub.subscribe(Viewer(admin.user_id, "admin")))

    with psycopg.connect(primary_dsn(services)) as running:
        running.execute("SELECT pg_current_xact_id()")  # it may yet commit an event's lower id
        with psycopg.connect(primary_dsn(services), autocommit=True) as later:
            later.execute("SELECT pg_current_xact_id()")  # one newer, ended
        starting = threading.Thread(target=subscribe)
        starting.start()
        starting.join(0.5)
        assert starting.is_alive()  # waiting on that transaction
        # Meanwhile streams close (and the process may stop) without waiting for that start.
        hub.unsubscribe(Subscriber(Viewer(admin.user_id, "admin")))
        assert hub.subscriber_count == 0
        assert starting.is_alive()  # and still waiting
        starting.join(30)
        running.rollback()

    [(subscriber, start)] = started
    hub.unsubscribe(subscriber)
    assert "the feed starts after event" in caplog.text
    assert f"after event {start} " in caplog.text
