"""Fan-out: each committed event becomes one delivery per enabled endpoint that wants it.

Runs as a subscriber to every event (``hooks.subscribe_all``), inside the outbox dispatch's
transaction: the deliveries commit with the event's "delivered" mark or not at all. Idempotent
on (event, endpoint): a redispatch adds only the deliveries still missing. The send jobs are
queued after the commit (the periodic sweep queues any that were lost); nothing is sent from
here.
"""

from __future__ import annotations

import uuid

from sqlalchemy import insert, select

from app.db import Session, after_commit, utcnow
from app.events import CommittedEvent
from app.jobs import enqueue_later
from modules.user.models import User

from .audience import sellers_concerned
from .models import PENDING, WebhookDelivery, WebhookEndpoint, WebhookMessage


def fan_out(event: CommittedEvent) -> None:
    """Record ``event`` for every enabled endpoint whose owner may see it and that wants it."""
    session = Session()
    endpoints = session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.owner_id, WebhookEndpoint.event_types,
               User.role)
        .join(User, User.id == WebhookEndpoint.owner_id)
        .where(WebhookEndpoint.enabled.is_(True))
    ).all()  # fmt: skip
    wanted = [row for row in endpoints if not row.event_types or event.name in row.event_types]
    if not wanted:
        return
    sellers: set[int] | None = None
    targets = []
    for row in wanted:
        if row.role != "admin":
            if sellers is None:
                sellers = sellers_concerned(session, event.name, event.payload)
            if row.owner_id not in sellers:
                continue
        targets.append(row.id)
    if targets:
        queue_deliveries(message_for(event), targets)


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
        after_commit(lambda delivery_id=delivery_id: queue_send(delivery_id))
    return ids


def queue_send(delivery_id: int) -> None:
    from .jobs import send_delivery

    enqueue_later(send_delivery, delivery_id, queue="events", recovered_by="the webhook sweep")
