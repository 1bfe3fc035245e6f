"""What a receiver cannot break: odd answers (NUL bytes, a lower-case or absurd Retry-After),
quiet failures days apart, a deactivated owner, and the sweep queueing a send once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app import clock
from app.db import Session, transaction
from modules.user.services import deactivate_user
from modules.webhook.jobs import send_due_deliveries
from modules.webhook.models import WebhookDelivery, WebhookEndpoint
from tests.conftest import run_jobs
from tests.modules.conftest import Caller

from .conftest import (
    Receiver,
    answering,
    at,
    call,
    create_endpoint,
    delivery,
    emit_now,
    endpoint_now,
    ok,
    parse_time,
)


def ping(client: FlaskClient, caller: Caller, endpoint: dict[str, Any]) -> dict[str, Any]:
    return ok(call(client, caller, "POST", f"/endpoints/{endpoint['id']}/test"), 202)


def test_an_answer_with_nul_bytes_is_recorded_without_them_and_retried(
    client: FlaskClient, app: Flask, admin: Caller, make_receiver: Callable[..., Receiver]
) -> None:
    # PostgreSQL refuses NUL in text: stored as it came, the attempt could never be recorded
    # and the delivery would be resent after every lease, for ever.
    receiver = make_receiver(answering(500, body=b"bad\x00news \xff"))
    endpoint = create_endpoint(client, admin, receiver.url)
    queued = ping(client, admin, endpoint)
    run_jobs(app)

    shown = delivery(client, admin, queued["id"])
    assert (shown["status"], shown["attempts"]) == ("pending", 1)
    [attempt] = shown["attempt_log"]
    assert (attempt["status_code"], attempt["outcome"]) == (500, "retry")
    assert attempt["response_excerpt"] == "badnews \ufffd"


def test_a_lower_case_retry_after_is_honoured(
    client: FlaskClient, app: Flask, admin: Caller, make_receiver: Callable[..., Receiver]
) -> None:
    receiver = make_receiver(answering(503, {"retry-after": "600"}))
    endpoint = create_endpoint(client, admin, receiver.url)
    queued = ping(client, admin, endpoint)
    run_jobs(app)

    shown = delivery(client, admin, queued["id"])
    waited = parse_time(shown["next_attempt_at"]) - parse_time(
        shown["attempt_log"][0]["attempted_at"]
    )
    assert waited == timedelta(minutes=10)


def test_an_absurd_retry_after_waits_a_day_at_most(
    client: FlaskClient, app: Flask, admin: Caller, make_receiver: Callable[..., Receiver]
) -> None:
    receiver = make_receiver(answering(429, {"Retry-After": "9" * 10}))
    endpoint = create_endpoint(client, admin, receiver.url)
    queued = ping(client, admin, endpoint)
    run_jobs(app)

    shown = delivery(client, admin, queued["id"])
    waited = parse_time(shown["next_attempt_at"]) - parse_time(
        shown["attempt_log"][0]["attempted_at"]
    )
    assert waited == timedelta(days=1)


def test_one_old_failure_and_a_new_one_days_later_do_not_disable_the_endpoint(
    client: FlaskClient, app: Flask, admin: Caller, make_receiver: Callable[..., Receiver]
) -> None:
    answers = {1: 400}  # refused once (not retried), then silence, then a passing outage
    receiver = make_receiver(lambda n: (answers.get(n, 503), {}, b""))
    endpoint = create_endpoint(client, admin, receiver.url)
    start = clock.now()
    ping(client, admin, endpoint)
    run_jobs(app)
    later = start + timedelta(days=6)
    with at(later):
        emit_now(app, "user.updated", {"user_id": admin.user_id, "changed": ["name"]})
        run_jobs(app)
    assert len(receiver.received) == 2

    shown = endpoint_now(client, admin, endpoint["id"])
    assert shown["enabled"] is True
    # The failing stretch starts again after the silence: days of it are still to come.
    assert parse_time(shown["failing_since"]) - later < timedelta(minutes=1)


def test_a_deactivated_owners_endpoints_are_disabled_and_get_nothing(
    client: FlaskClient,
    app: Flask,
    admin: Caller,
    log_in_as: Callable[..., Caller],
    make_receiver: Callable[..., Receiver],
) -> None:
    seller = log_in_as("seller")
    run_jobs(app)
    receiver = make_receiver()
    endpoint = create_endpoint(client, seller, receiver.url)
    with app.app_context():
        deactivate_user(seller.uuid)
    run_jobs(app)

    shown = endpoint_now(client, admin, endpoint["id"])
    assert (shown["enabled"], shown["disabled_reason"]) == (False, "owner_deactivated")
    with app.app_context(), transaction() as session:
        # Enabled again behind the API's back: the owner's being inactive still keeps it quiet.
        session.get(WebhookEndpoint, _endpoint_key(endpoint["id"])).enabled = True
    emit_now(app, "settlement.created", {"seller": str(seller.uuid)})
    run_jobs(app)
    assert receiver.received == []
    with app.app_context():
        assert Session().scalar(select(func.count()).select_from(WebhookDelivery)) == 0


def test_the_sweep_queues_a_due_retry_once_and_leaves_new_deliveries_to_their_job(
    client: FlaskClient, app: Flask, admin: Caller, make_receiver: Callable[..., Receiver]
) -> None:
    receiver = make_receiver(answering(500))
    endpoint = create_endpoint(client, admin, receiver.url)
    queued = ping(client, admin, endpoint)
    sends = app.extensions["lapak.jobs"].queue("webhooks")
    assert sends.count == 1  # queued by the ping itself
    with app.app_context():
        send_due_deliveries()  # new: its own job is waiting
    assert sends.count == 1
    run_jobs(app)

    due = parse_time(delivery(client, admin, queued["id"])["next_attempt_at"])
    with at(due), app.app_context():
        send_due_deliveries()
        send_due_deliveries()
        assert sends.count == 1
    with at(due):
        run_jobs(app)
    assert len(receiver.received) == 2


def _endpoint_key(endpoint_uuid: str) -> int:
    import uuid

    return Session().scalar(
        select(WebhookEndpoint.id).where(WebhookEndpoint.uuid == uuid.UUID(endpoint_uuid))
    )
