"""The transactional outbox against real PostgreSQL and Redis."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from redis import Redis
from rq import Queue
from sqlalchemy import func, select, update

from app.db import Session, transaction, utcnow
from app.events import DELIVERED, FAILED, PENDING, OutboxEvent, dispatch_outbox, emit
from app.jobs import PeriodicTicker
from tests.conftest import redis_outage_app, run_jobs
from tests.sample_modules.notes.models import Note, NoteDelivery
from tests.sample_modules.notes.services import RefusedTitle, create_note
from tests.servers import RedisServer, free_port


def events_queue(app: Flask) -> Queue:
    return app.extensions["lapak.jobs"].queue("events")


def outbox(app: Flask) -> list[OutboxEvent]:
    with app.app_context():
        Session.remove()
        return list(Session().scalars(select(OutboxEvent).order_by(OutboxEvent.id)))


def deliveries(app: Flask) -> list[str]:
    with app.app_context():
        Session.remove()
        return list(Session().scalars(select(NoteDelivery.title).order_by(NoteDelivery.id)))


def make_due(app: Flask) -> None:
    with app.app_context(), transaction() as session:
        session.execute(update(OutboxEvent).values(next_attempt_at=utcnow()))


def test_committed_event_is_delivered_by_the_dispatch_job(app: Flask) -> None:
    with app.app_context():
        create_note("hello")
    assert events_queue(app).count == 1  # enqueued after the commit
    [event] = outbox(app)
    assert (event.name, event.status, event.payload["title"]) == ("note.created", PENDING, "hello")

    run_jobs(app)

    [event] = outbox(app)
    assert event.status == DELIVERED
    assert event.attempts == 1
    assert event.delivered_at is not None
    notes = [name for name in event.delivered_to if name.startswith("tests.sample_modules.notes")]
    assert len(notes) == 2
    assert deliveries(app) == ["hello"]


def test_rolled_back_change_emits_nothing(app: Flask) -> None:
    with app.app_context(), pytest.raises(RefusedTitle):
        create_note("rollback me")
    assert outbox(app) == []
    assert events_queue(app).count == 0
    with app.app_context():
        assert dispatch_outbox() == 0
    assert deliveries(app) == []


def test_failing_subscriber_is_retried_with_backoff_without_repeating_the_others(
    app: Flask,
) -> None:
    with app.app_context():
        create_note("fail once")
        assert dispatch_outbox() == 0
    [event] = outbox(app)
    assert event.status == PENDING
    assert event.attempts == 1
    assert "subscriber refuses 'fail once'" in event.last_error
    assert event.next_attempt_at > utcnow() + timedelta(seconds=3)
    assert [n for n in event.delivered_to if n.startswith("tests.sample_modules.notes")] == [
        "tests.sample_modules.notes.services.record_delivery"
    ]

    with app.app_context():
        assert dispatch_outbox() == 0  # not due yet: nothing runs
    assert outbox(app)[0].attempts == 1

    make_due(app)
    with app.app_context():
        dispatch_outbox()
    assert outbox(app)[0].attempts == 2
    assert deliveries(app) == ["fail once"]  # the successful subscriber ran exactly once


def test_event_is_marked_failed_after_the_last_attempt(make_app: Callable[..., Flask]) -> None:
    app = make_app(outbox_max_attempts=2)
    with app.app_context():
        create_note("fail forever")
        dispatch_outbox()
    make_due(app)
    with app.app_context():
        dispatch_outbox()
    [event] = outbox(app)
    assert (event.status, event.attempts) == (FAILED, 2)
    make_due(app)
    with app.app_context():
        assert dispatch_outbox() == 0
    assert outbox(app)[0].attempts == 2  # a failed event is not retried any more


def test_concurrent_dispatchers_deliver_each_event_once(app: Flask) -> None:
    with app.app_context(), transaction():
        for index in range(40):
            note = Note(title=f"note {index}")
            Session().add(note)
            Session().flush()
            emit("note.created", {"note_id": note.id, "title": note.title})

    delivered: list[int] = []

    def dispatch() -> None:
        with app.app_context():
            delivered.append(dispatch_outbox(batch_size=7))

    threads = [threading.Thread(target=dispatch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(delivered) == 40
    assert sorted(deliveries(app)) == sorted(f"note {i}" for i in range(40))
    assert {e.status for e in outbox(app)} == {DELIVERED}


def test_event_survives_redis_being_down_at_commit(
    make_app: Callable[..., Flask], app: Flask
) -> None:
    offline = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = offline.test_client().post("/api/v1/notes/notes", json={"title": "while down"})
    assert response.status_code == 201  # the enqueue failed after the commit, not the request
    [event] = outbox(app)
    assert event.status == PENDING

    # The worker's periodic sweep picks it up once Redis is back.
    from app.jobs import PeriodicTicker

    started = PeriodicTicker(app).tick(app.extensions["lapak.registry"].wiring.periodic)
    assert "app.events.dispatch_outbox" in started
    run_jobs(app)
    assert outbox(app)[0].status == DELIVERED
    assert deliveries(app) == ["while down"]


def test_emit_keeps_money_as_strings(app: Flask) -> None:
    from decimal import Decimal

    with app.app_context(), transaction():
        emit("price.changed", {"amount": Decimal("10000.50"), "when": utcnow()})
    [event] = outbox(app)
    assert event.payload["amount"] == "10000.50"
    assert isinstance(event.payload["when"], str)
    with app.app_context():
        assert dispatch_outbox() == 1  # no subscribers: delivered at once
        count = Session().scalar(select(func.count()).select_from(OutboxEvent))
    assert count == 1


def test_redis_queue_is_named_events(app: Flask) -> None:
    with app.app_context():
        create_note("queued")
    redis = app.extensions["lapak.jobs"].redis
    assert isinstance(redis, Redis)
    [job] = events_queue(app).jobs
    assert job.func_name == "app.events.dispatch_outbox"


def test_events_committed_while_redis_is_stopped_are_delivered_once_it_is_back(
    make_app: Callable[..., Flask], own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = redis_outage_app(make_app, own_redis)
    client = app.test_client()
    own_redis.stop()
    caplog.set_level(logging.WARNING)
    for title in ("first while down", "second while down"):
        response = client.post("/api/v1/notes/notes", json={"title": title})
        assert response.status_code == 201
    assert [event.status for event in outbox(app)] == [PENDING, PENDING]
    # Warned, naming what recovers the events; no traceback of a failed after-commit callback.
    assert any("outbox sweep" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.exc_info]

    own_redis.start()
    started = PeriodicTicker(app).tick(app.extensions["lapak.registry"].wiring.periodic)
    assert "app.events.dispatch_outbox" in started
    run_jobs(app)
    assert [event.status for event in outbox(app)] == [DELIVERED, DELIVERED]
    assert deliveries(app) == ["first while down", "second while down"]


def test_a_subscriber_to_every_event_gets_each_whole_once(app: Flask) -> None:
    from app.events import CommittedEvent

    seen: list[CommittedEvent] = []

    def record_every(event: CommittedEvent) -> None:
        seen.append(event)

    wiring = app.extensions["lapak.registry"].wiring
    wiring.every_event.append(record_every)
    try:
        with app.app_context(), transaction():
            first = emit("price.changed", {"amount": "1.00"})
            second = emit("note.other", {})
        with app.app_context():
            assert dispatch_outbox() == 2
            make_due(app)
            assert dispatch_outbox() == 0  # delivered: not again
    finally:
        wiring.every_event.remove(record_every)

    assert [(e.event_id, e.name, e.payload) for e in seen] == [
        (first, "price.changed", {"amount": "1.00"}),
        (second, "note.other", {}),
    ]
    assert all(e.created_at.tzinfo is not None for e in seen)
    [event, _] = outbox(app)
    assert f"{__name__}.{record_every.__qualname__}" in event.delivered_to
