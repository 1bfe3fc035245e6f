"""Domain events through a transactional outbox.

``emit(name, payload)`` inside a service's transaction adds a row to ``core_outbox_event``; the
row commits or rolls back with the business change, so no event is delivered for a change that
did not happen and none is lost if Redis or the workers are down. After the commit a dispatch job
is enqueued on the ``events`` queue; a periodic sweep catches anything whose enqueue failed.

Delivery is per subscriber and at least once: each subscriber runs in a savepoint of the same
transaction that records it as delivered, so a subscriber that only writes to the database sees
its effect exactly once. Failures are retried with exponential backoff, then the event is marked
``failed`` with the reason. A module may also subscribe to every event whatever its name
(``hooks.subscribe_all``, e.g. the webhook fan-out): it is given the whole
:class:`CommittedEvent` (id, name, time, payload), by the same rules.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import Index, Integer, String, Text, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, DriverStatement, JsonDocument, Session, after_commit, transaction, utcnow

log = logging.getLogger(__name__)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
SWEEP_EVERY = timedelta(seconds=15)
DISPATCH_QUEUED_KEY = "lapak:outbox:dispatch-queued"
DISPATCH_QUEUED_SECONDS = 60
BASE_BACKOFF_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 3600.0


class OutboxEvent(Base):
    """One business fact waiting for (or done with) delivery to subscribers."""

    __tablename__ = "core_outbox_event"
    __table_args__ = (Index("ix_core_outbox_event_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    status: Mapped[str] = mapped_column(String(12), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivered_to: Mapped[list[str]] = mapped_column(JsonDocument, default=list)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()


@dataclass(frozen=True)
class CommittedEvent:
    """What a subscriber to every event (``hooks.subscribe_all``) is given: the event whole."""

    event_id: uuid.UUID
    name: str
    created_at: datetime
    payload: dict[str, Any]


def emit(name: str, payload: dict[str, Any]) -> uuid.UUID:
    """Record ``name`` with ``payload`` in the current transaction (call inside ``transaction()``).

    Decimals, UUIDs and datetimes become strings: money never turns into a float on the way.
    Written at once with a plain INSERT (a savepoint rolled back takes it with it); returns the
    event's id.
    """
    return emit_many([(name, payload)])[0]


def emit_many(events: Sequence[tuple[str, dict[str, Any]]]) -> list[uuid.UUID]:
    """Record several events with one INSERT, in this order; see :func:`emit`."""
    session = Session()
    now = utcnow()
    rows = [
        {
            "event_id": uuid.uuid4(),
            "name": name,
            "payload": json.loads(json.dumps(payload, default=_jsonable)),
            "status": PENDING,
            "attempts": 0,
            "delivered_to": [],
            "created_at": now,
            "next_attempt_at": now,
        }
        for name, payload in events
    ]
    if not rows:
        return []
    session.info["primary_wrote"] = True  # Core on the session's connection: no ORM event
    if len(rows) == 1:  # most writes emit one at a time
        _INSERT_EVENT.rows(session.connection(), rows[0])
    else:
        _INSERT_EVENT.run_many(session.connection(), rows)
    if _schedule_dispatch not in session.info.get("after_commit", []):
        after_commit(_schedule_dispatch)
    listeners = current_app.extensions["lapak.registry"].wiring.on_commit
    for row in rows:
        for listener in listeners.get(row["name"], []):
            after_commit(functools.partial(listener, dict(row["payload"])))
    return [row["event_id"] for row in rows]


#: Built once: the outbox INSERT is on every write path.
_INSERT_EVENT = DriverStatement(insert(OutboxEvent.__table__))


def _jsonable(value: Any) -> str:
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"event payload value of type {type(value).__name__} is not JSON")


def _schedule_dispatch() -> None:
    from app.jobs import enqueue_later, get_jobs

    jobs = get_jobs()
    redis = jobs.redis
    if redis is not None:
        # One queued dispatch is enough: it delivers every event committed before it starts
        # (it clears the flag first). Saves a job per commit under load; the flag expires
        # in case its job is lost, and the periodic sweep covers the rest.
        first = jobs.outage.guarded(
            "events wait for the outbox sweep",
            lambda: redis.set(DISPATCH_QUEUED_KEY, "1", nx=True, ex=DISPATCH_QUEUED_SECONDS),
            lambda: True,
        )
        if not first:
            return
    enqueue_later(dispatch_outbox, queue="events", recovered_by="the outbox sweep")


def _clear_dispatch_queued() -> None:
    from app.jobs import get_jobs

    redis = get_jobs().redis
    if redis is not None:
        with contextlib.suppress(RedisError):
            redis.delete(DISPATCH_QUEUED_KEY)


def subscribers() -> dict[str, list[Callable[[dict[str, Any]], None]]]:
    return current_app.extensions["lapak.registry"].wiring.subscribers


def _calls(event: OutboxEvent) -> list[tuple[Callable[..., None], Callable[[], None]]]:
    """Each subscriber of ``event`` and how to call it: the named ones with the payload, then
    the subscribers to every event with the whole :class:`CommittedEvent`."""
    wiring = current_app.extensions["lapak.registry"].wiring
    calls: list[tuple[Callable[..., None], Callable[[], None]]] = [
        (subscriber, functools.partial(subscriber, dict(event.payload)))
        for subscriber in wiring.subscribers.get(event.name, [])
    ]
    if wiring.every_event:
        committed = CommittedEvent(
            event.event_id, event.name, event.created_at, dict(event.payload)
        )
        calls.extend(
            (subscriber, functools.partial(subscriber, committed))
            for subscriber in wiring.every_event
        )
    return calls


def dispatch_outbox(batch_size: int = 100) -> int:
    """Deliver every due event; returns how many became ``delivered``. Safe to run concurrently."""
    _clear_dispatch_queued()
    delivered = 0
    while True:
        now = utcnow()
        with transaction() as session:
            due_ids = list(
                session.scalars(
                    select(OutboxEvent.id)
                    .where(OutboxEvent.status == PENDING, OutboxEvent.next_attempt_at <= now)
                    .order_by(OutboxEvent.id)
                    .limit(batch_size)
                )
            )
        if not due_ids:
            return delivered
        for event_id in due_ids:
            delivered += _deliver_one(event_id)
        if len(due_ids) < batch_size:
            return delivered


def _deliver_one(event_id: int) -> int:
    max_attempts = current_app.extensions["lapak.settings"].outbox_max_attempts
    with transaction() as session:
        event = session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.id == event_id, OutboxEvent.status == PENDING)
            .with_for_update(skip_locked=True)
        ).one_or_none()
        if event is None or event.next_attempt_at > utcnow():
            return 0
        # Claim it: on SQLite there is no row lock, so a concurrent dispatcher loses here instead.
        claimed = session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == event.id, OutboxEvent.attempts == event.attempts)
            .values(attempts=event.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:
            return 0
        event.attempts += 1
        done = list(event.delivered_to or [])
        failures = []
        for subscriber, call in _calls(event):
            subscriber_name = f"{subscriber.__module__}.{subscriber.__qualname__}"
            if subscriber_name in done:
                continue
            try:
                with session.begin_nested():
                    call()
            except Exception as error:
                log.warning(
                    "event %s #%s: subscriber %s failed: %s",
                    event.name,
                    event.id,
                    subscriber_name,
                    error,
                )
                failures.append(f"{subscriber_name}: {type(error).__name__}: {error}"[:500])
            else:
                done.append(subscriber_name)
        event.delivered_to = done
        if not failures:
            event.status, event.delivered_at, event.last_error = DELIVERED, utcnow(), None
            return 1
        event.last_error = "; ".join(failures)[:2000]
        if event.attempts >= max_attempts:
            event.status = FAILED
            log.error(
                "event %s #%s failed %d times; giving up: %s",
                event.name,
                event.id,
                event.attempts,
                event.last_error,
            )
        else:
            event.next_attempt_at = utcnow() + timedelta(seconds=backoff_seconds(event.attempts))
        return 0


def backoff_seconds(attempts: int) -> float:
    """5 s, 10 s, 20 s ... capped at an hour, with 20 % jitter so retries do not stampede."""
    base = min(BASE_BACKOFF_SECONDS * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
    return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security
