"""Fan-out: each committed event becomes one delivery per enabled endpoint that wants it.

Runs as a subscriber to every event (``hooks.subscribe_all``), inside the outbox dispatch's
transaction: the deliveries commit with the event's "delivered" mark or not at all. Idempotent
on (event, endpoint): a redispatch adds only the deliveries still missing. The send jobs are
queued after the commit (the periodic sweep queues any that were lost); nothing is sent from
here.
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, exists, func, insert, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB

from app.db import Session, after_commit, get_database, utcnow
from app.events import CommittedEvent
from app.jobs import enqueue_later
from modules.user.models import User

from .audience import sellers_concerned
from .models import PENDING, WebhookDelivery, WebhookEndpoint, WebhookMessage


def fan_out(event: CommittedEvent) -> None:
    """Record ``event`` for every enabled endpoint of an active owner that may see it (admins,
    and the sellers it concerns) and that wants it (its event filter names it or is empty)."""
    session = Session()
    sellers = sellers_concerned(session, event.name, event.payload)
    audience = User.role == "admin"
    if sellers:
        audience = or_(audience, WebhookEndpoint.owner_id.in_(sorted(sellers)))
    targets = list(
        session.scalars(
            select(WebhookEndpoint.id)
            .join(User, User.id == WebhookEndpoint.owner_id)
            .where(
                WebhookEndpoint.enabled.is_(True),
                User.active.is_(True),
                audience,
                wants(event.name),
            )
            .order_by(WebhookEndpoint.id)
        )
    )
    if targets:
        queue_deliveries(message_for(event), targets)


def wants(event_type: str) -> ColumnElement[bool]:
    """Endpoints whose event filter is empty (every event) or names ``event_type``, in SQL:
    jsonb containment on PostgreSQL, ``json_each`` on SQLite."""
    column = WebhookEndpoint.event_types
    if get_database().primary.dialect.name == "postgresql":
        document = type_coerce(column, JSONB)
        return or_(func.jsonb_array_length(document) == 0, document.contains([event_type]))
    items = func.json_each(column).table_valued("value")
    return or_(
        func.json_array_length(column) == 0,
        exists(select(1).select_from(items).where(items.c.value == event_type)),
    )


#: Integer keys of rows, which stay inside Lapak (public ids are UUIDs): left out of webhooks.
INTERNAL_KEYS = frozenset({"user_id", "customer_id"})


def message_for(event: CommittedEvent) -> int:
    """The id of ``event``'s message row, written if it is not there yet (its data without
    :data:`INTERNAL_KEYS`)."""
    session = Session()
    found = session.scalar(
        select(WebhookMessage.id).where(WebhookMessage.event_id == event.event_id)
    )
    if found is not None:
        return found
    message = WebhookMessage(
        event_id=event.event_id,
        event_type=event.name,
        occurred_at=event.created_at,
        payload={key: value for key, value in event.payload.items() if key not in INTERNAL_KEYS},
    )
    session.add(message)
    session.flush()
    return message.id


def queue_deliveries(message_id: int, endpoint_ids: list[int]) -> list[int]:
    """Add the deliveries of ``message_id`` to the endpoints that do not have one yet, and queue
    their sending after the commit; their ids."""
    session = Session()
    existing = set(
        session.scalars(
            select(WebhookDelivery.endpoint_id).where(WebhookDelivery.message_id == message_id)
        )
    )
    now = utcnow()
    rows = [
        {"message_id": message_id, "endpoint_id": endpoint_id, "status": PENDING, "series": 1,
         "attempts": 0, "next_attempt_at": now, "queued_at": now, "created_at": now}
        for endpoint_id in endpoint_ids
        if endpoint_id not in existing
    ]  # fmt: skip
    if not rows:
        return []
    for row in rows:  # a Core INSERT: the ORM's Python defaults are given here
        row["uuid"] = uuid.uuid4()
    ids = list(session.scalars(insert(WebhookDelivery).returning(WebhookDelivery.id), rows))
    for delivery_id in ids:
        after_commit(lambda delivery_id=delivery_id: queue_send(delivery_id, 1, 0))
    return ids


#: The sends' own queue: a receiver slow to answer holds up other receivers, not the outbox.
SEND_QUEUE = "webhooks"


def queue_send(delivery_id: int, series: int, attempts: int) -> None:
    """Queue the next attempt of a delivery (``attempts`` made in ``series`` so far), once: the
    job's id names the attempt, so while it waits in the queue the sweep does not add it again."""
    from .jobs import send_delivery

    enqueue_later(
        send_delivery,
        delivery_id,
        queue=SEND_QUEUE,
        recovered_by="the webhook sweep",
        job_id=f"webhook-send-{delivery_id}-{series}-{attempts + 1}",
    )
