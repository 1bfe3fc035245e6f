"""Retention: finished deliveries, their attempts and messages are purged after the retention
period; pending deliveries and the messages they still need stay."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app import clock
from app.db import Session
from modules.webhook.models import WebhookAttempt, WebhookDelivery, WebhookMessage
from modules.webhook.retention import purge_expired
from tests.conftest import run_jobs
from tests.modules.conftest import Caller

from .conftest import Receiver, answering, at, create_endpoint, emit_now


def counts(app: Flask) -> tuple[int, int, int]:
    with app.app_context():
        session = Session()
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(model))
            for model in (WebhookMessage, WebhookDelivery, WebhookAttempt)
        )


def test_finished_deliveries_go_after_the_retention_period_and_pending_ones_stay(
    client: FlaskClient, app: Flask, admin: Caller, make_receiver: Callable[..., Receiver]
) -> None:
    healthy = make_receiver()
    down = make_receiver(answering(503))
    create_endpoint(client, admin, healthy.url, event_types=["user.updated"])
    create_endpoint(client, admin, down.url, event_types=["user.updated"])
    create_endpoint(client, admin, healthy.url, event_types=["user.activated"])
    emit_now(app, "user.updated", {"user": "shared by both endpoints"})
    emit_now(app, "user.activated", {"user": "one endpoint, answered"})
    run_jobs(app)
    assert len(healthy.received) == 2
    assert len(down.received) == 1
    assert counts(app) == (2, 3, 3)  # the failing delivery waits for its retry

    with at(clock.now() + timedelta(days=29)), app.app_context():
        assert purge_expired() == 0
    assert counts(app) == (2, 3, 3)

    with at(clock.now() + timedelta(days=31)), app.app_context():
        # Two sent deliveries and the message only they needed; the pending delivery and the
        # message it still sends stay, whatever their age.
        assert purge_expired(batch_rows=1) == 3
        assert purge_expired() == 0
    assert counts(app) == (1, 1, 1)
    with app.app_context():
        session = Session()
        [pending] = session.scalars(select(WebhookDelivery))
        assert pending.status == "pending"
        assert pending.message.event_type == "user.updated"
