"""Deliveries to a real receiver on 127.0.0.1: signatures, the retry schedule on a moved
clock, what each answer does, redirects, Retry-After, SSRF, rotation and redelivery."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import clock
from app.db import Session
from app.events import OutboxEvent
from modules.webhook.config import parse_schedule
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
    problem,
    signed_by,
    sweep,
    verify_now,
)


def ping(client: FlaskClient, caller: Caller, endpoint: dict[str, Any]) -> dict[str, Any]:
    return ok(call(client, caller, "POST", f"/endpoints/{endpoint['id']}/test"), 202)


def attempt_times(shown: dict[str, Any]) -> list[Any]:
    return [parse_time(a["attempted_at"]) for a in shown["attempt_log"]]


def test_a_ping_is_delivered_signed_as_the_reference_library_verifies(
    client: FlaskClient, app: Flask, admin: Caller, make_receiver: Callable[..., Receiver]
) -> None:
    receiver = make_receiver()
    endpoint = create_endpoint(client, admin, receiver.url, description="ERP")
    assert endpoint["secret"].startswith("whsec_")
    queued = ping(client, admin, endpoint)
    assert queued["status"] == "pending"

    run_jobs(app)

    [received] = receiver.received
    body = verify_now(endpoint["secret"], received)
    assert body["type"] == "ping"
    assert body["id"] == received.headers["webhook-id"] == queued["event_id"]
    assert body["data"]["endpoint"] == endpoint["id"]
    assert received.headers["content-type"] == "application/json"
    shown = delivery(client, admin, queued["id"])
    assert (shown["status"], shown["attempts"], shown["last_status_code"]) == ("sent", 1, 200)
    [attempt] = shown["attempt_log"]
    assert (attempt["number"], attempt["status_code"], attempt["outcome"]) == (1, 200, "sent")
    assert attempt["response_excerpt"] == "ok"
    assert attempt["latency_ms"] >= 0


@pytest.mark.parametrize("schedule", ["5s,5m,30m,2h,5h,10h,10h", "2m,4m,8m"])
def test_a_failing_receiver_gets_exactly_the_scheduled_attempts_then_the_delivery_fails(
    schedule: str,
    make_app: Callable[..., Flask],
    config: dict[str, Any],
    log_in_as: Callable[..., Caller],
    make_receiver: Callable[..., Receiver],
) -> None:
    app = make_app(module_env={**config["module_env"], "webhook_retry_schedule": schedule})
    client = app.test_client()
    # The fixtures' client is another app's: log in on this one.
    from tests.modules.conftest import login

    admin = log_in_as("admin")
    token = login(client, admin.email).get_json()["access_token"]
    admin = Caller(admin.email, admin.uuid, admin.user_id, token)
    run_jobs(app)  # the admin's user.created goes before any endpoint exists
    receiver = make_receiver(answering(500, body=b"down for maintenance"))
    endpoint = create_endpoint(client, admin, receiver.url)
    queued = ping(client, admin, endpoint)
    run_jobs(app)
    assert len(receiver.received) == 1

    for number, wait in enumerate(parse_schedule(schedule), start=2):
        shown = delivery(client, admin, queued["id"])
        assert shown["status"] == "pending"
        due = attempt_times(shown)[-1] + wait
        assert parse_time(shown["next_attempt_at"]) == due
        with at(due - timedelta(seconds=1)):
            sweep(app)
        assert len(receiver.received) == number - 1  # not before its time
        with at(due):
            sweep(app)
        assert len(receiver.received) == number

    shown = delivery(client, admin, queued["id"])
    assert shown["status"] == "failed"
    assert shown["next_attempt_at"] is None
    times = attempt_times(shown)
    assert len(times) == 1 + len(parse_schedule(schedule))
    for before, after, wait in zip(times, times[1:], parse_schedule(schedule), strict=False):
        assert wait <= after - before < wait + timedelta(seconds=5)
    assert [a["status_code"] for a in shown["attempt_log"]] == [500] * len(times)
    assert [a["outcome"] for a in shown["attempt_log"]][-1] == "failed"
    assert shown["attempt_log"][0]["response_excerpt"] == "down for maintenance"
    assert {r.headers["webhook-id"] for r in receiver.received} == {queued["event_id"]}
    assert all(signed_by(endpoint["secret"], r) for r in receiver.received)
    with at(times[-1] + timedelta(days=2)):
        sweep(app)
    assert len(receiver.received) == len(times)  # nothing after the schedule


def test_a_receiver_that_recovers_on_the_third_attempt_ends_sent_with_three_attempts(
    client: FlaskClient, app: Flask, admin: Caller, make_receiver: Callable[..., Receiver]
) -> None:
    receiver = make_receiver(lambda n: (503, {}, b"") if n < 3 else (200, {}, b"thanks"))
    endpoint = create_endpoint(client, admin, receiver.url)
    queued = ping(client, admin, endpoint)
    run_jobs(app)
    for _ in range(2):
        shown = delivery(client, admin, queued["id"])
        with at(parse_time(shown["next_attempt_at"])):
            sweep(app)

    shown = delivery(client, admin, queued["id"])
    assert (shown["status"], shown["attempts"]) == ("sent", 3)
    assert [a["outcome"] for a in shown["attempt_log"]] == ["retry", "retry", "sent"]
    assert len(receiver.received) == 3


def test_410_disables_the_endpoint_and_tells_its_owner(
    client: FlaskClient, app: Flask, admin: Caller, make_receiver: Callable[..., Receiver]
) -> None:
    receiver = make_receiver(answering(410))
    endpoint = create_endpoint(client, admin, receiver.url)
    queued = ping(client, admin, endpoint)
    run_jobs(app)

    shown = delivery(client, admin, queued["id"])
    assert shown["status"] == "failed"
    assert [a["outcome"] for a in shown["attempt_log"]] == ["disabled"]
    now = endpoint_now(client, admin, endpoint["id"])
    assert (now["enabled"], now["disabled_reason"]) == (False, "gone")
    with app.app_context():
        Session.remove()
        events = Session().query(OutboxEvent).filter_by(name="webhook_endpoint.disabled").all()
        assert [e.payload["endpoint"] for e in events] == [endpoint["id"]]
        assert events[0].payload["owner"] == str(admin.uuid)
        assert events[0].payload["reason"] == "gone"
    problem(
        call(client, admin, "POST", f"/endpoints/{endpoint['id']}/test"),
        409,
        "webhook-endpoint-disabled",
    )


def test_a_redirect_is_not_followed_and_fails_without_retry(
    client: FlaskClient, app: Flask, admin: Caller, make_receiver: Callable[..., Receiver]
) -> None:
    target = make_receiver()
    redirecting = make_receiver(answering(302, {"Location": target.url}))
    endpoint = create_endpoint(client, admin, redirecting.url)
    queued = ping(client, admin, endpoint)
    run_jobs(app)

    assert target.received == []
    assert len(redirecting.received) == 1
    shown = delivery(client, admin, queued["id"])
    assert shown["status"] == "failed"
    assert [(a["status_code"], a["outcome"]) for a in shown["attempt_log"]] == [(302, "failed")]


@pytest.mark.parametrize("header", ["600", "date"])
def test_retry_after_postpones_the_next_attempt(
    header: str,
    client: FlaskClient,
    app: Flask,
    admin: Caller,
    make_receiver: Callable[..., Receiver],
) -> None:
    from email.utils import format_datetime

    def answer(_n: int) -> tuple[int, dict[str, str], bytes]:
        value = header
        if header == "date":
            value = format_datetime(clock.now() + timedelta(minutes=10), usegmt=True)
        return 429, {"Retry-After": value}, b""

    receiver = make_receiver(answer)
    endpoint = create_endpoint(client, admin, receiver.url)
    queued = ping(client, admin, endpoint)
    run_jobs(app)

    shown = delivery(client, admin, queued["id"])
    waited = parse_time(shown["next_attempt_at"]) - attempt_times(shown)[0]
    # The schedule says 5 s; the receiver asked for 10 minutes.
    assert timedelta(minutes=9, seconds=55) <= waited <= timedelta(minutes=10, seconds=5)
    with at(parse_time(shown["next_attempt_at"]) - timedelta(minutes=1)):
        sweep(app)
    assert len(receiver.received) == 1


def test_a_private_address_is_refused_at_creation(client: FlaskClient, admin: Caller) -> None:
    for url in (
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest",
        "ftp://example.com/",
        "http://user:pw@127.0.0.1/",
    ):
        body = problem(
            call(client, admin, "POST", "/endpoints", json={"url": url}), 422, "webhook-url-refused"
        )
        assert "url" in body["errors"]
    assert ok(call(client, admin, "GET", "/endpoints"))["items"] == []


def test_an_address_refused_at_delivery_is_never_contacted(
    client: FlaskClient,
    app: Flask,
    admin: Caller,
    make_app: Callable[..., Flask],
    config: dict[str, Any],
    make_receiver: Callable[..., Receiver],
) -> None:
    receiver = make_receiver()
    endpoint = create_endpoint(client, admin, receiver.url)
    queued = ping(client, admin, endpoint)
    # Workers of a deployment that does not allow loopback (the default) pick it up.
    strict = make_app(module_env={**config["module_env"], "fetch_allow_loopback": "false"})
    run_jobs(strict)

    assert receiver.received == []
    shown = delivery(client, admin, queued["id"])
    assert shown["status"] == "failed"
    [attempt] = shown["attempt_log"]
    assert attempt["status_code"] is None
    # Not which address, nor what kind: the log is the endpoint owner's to read.
    assert "is not a public address" in attempt["error"]
    assert "loopback" not in attempt["error"]


def test_rotation_signs_with_both_secrets_during_the_overlap_then_the_new_one(
    client: FlaskClient, app: Flask, admin: Caller, make_receiver: Callable[..., Receiver]
) -> None:
    receiver = make_receiver()
    endpoint = create_endpoint(client, admin, receiver.url)
    rotated = ok(call(client, admin, "POST", f"/endpoints/{endpoint['id']}/rotate-secret"))
    assert rotated["secret"] != endpoint["secret"]
    assert rotated["previous_secret_until"] is not None
    assert "secret" not in endpoint_now(client, admin, endpoint["id"])

    ping(client, admin, endpoint)
    run_jobs(app)
    [during] = receiver.received
    assert len(during.signatures) == 2
    assert signed_by(endpoint["secret"], during)
    assert signed_by(rotated["secret"], during)
    verify_now(endpoint["secret"], during)
    verify_now(rotated["secret"], during)

    with at(parse_time(rotated["previous_secret_until"]) + timedelta(seconds=1)):
        emit_now(app, "user.updated", {"user_id": admin.user_id, "changed": ["name"]})
        run_jobs(app)
    after = receiver.received[1]
    assert len(after.signatures) == 1
    assert signed_by(rotated["secret"], after)
    assert not signed_by(endpoint["secret"], after)


def test_redelivery_starts_a_new_series_with_the_same_webhook_id(
    client: FlaskClient, app: Flask, admin: Caller, make_receiver: Callable[..., Receiver]
) -> None:
    receiver = make_receiver(lambda n: (400, {}, b"bad") if n == 1 else (200, {}, b"ok"))
    endpoint = create_endpoint(client, admin, receiver.url)
    queued = ping(client, admin, endpoint)
    run_jobs(app)
    assert delivery(client, admin, queued["id"])["status"] == "failed"

    again = ok(call(client, admin, "POST", f"/deliveries/{queued['id']}/redeliver"), 202)
    assert (again["status"], again["series"], again["attempts"]) == ("pending", 2, 0)
    problem(
        call(client, admin, "POST", f"/deliveries/{queued['id']}/redeliver"),
        409,
        "webhook-delivery-pending",
    )
    run_jobs(app)

    shown = delivery(client, admin, queued["id"])
    assert (shown["status"], shown["series"], shown["attempts"]) == ("sent", 2, 1)
    assert [(a["series"], a["number"], a["status_code"]) for a in shown["attempt_log"]] == [
        (1, 1, 400),
        (2, 1, 200),
    ]
    assert [r.headers["webhook-id"] for r in receiver.received] == [queued["event_id"]] * 2


def test_an_endpoint_failing_for_days_is_disabled_and_its_owner_told(
    make_app: Callable[..., Flask],
    config: dict[str, Any],
    log_in_as: Callable[..., Caller],
    make_receiver: Callable[..., Receiver],
) -> None:
    from tests.modules.conftest import login

    env = {
        **config["module_env"],
        "webhook_retry_schedule": "1h",
        "webhook_disable_after_days": "2",
    }
    app = make_app(module_env=env)
    client = app.test_client()
    admin = log_in_as("admin")
    admin = Caller(
        admin.email,
        admin.uuid,
        admin.user_id,
        login(client, admin.email).get_json()["access_token"],
    )
    run_jobs(app)
    receiver = make_receiver(answering(500))
    endpoint = create_endpoint(client, admin, receiver.url)
    start = clock.now()
    ping(client, admin, endpoint)
    run_jobs(app)
    with at(start + timedelta(days=1)):
        emit_now(app, "user.updated", {"user_id": admin.user_id, "changed": ["name"]})
        run_jobs(app)
    assert endpoint_now(client, admin, endpoint["id"])["enabled"] is True
    with at(start + timedelta(days=2, minutes=1)):
        emit_now(app, "user.updated", {"user_id": admin.user_id, "changed": ["phone"]})
        run_jobs(app)
    shown = endpoint_now(client, admin, endpoint["id"])
    assert (shown["enabled"], shown["disabled_reason"]) == (False, "failing")
    assert parse_time(shown["failing_since"]) - start < timedelta(minutes=1)
    with app.app_context():
        names = [e.name for e in Session().query(OutboxEvent).order_by(OutboxEvent.id)]
    assert names.count("webhook_endpoint.disabled") == 1
    # Enabling again clears the record: the next failure starts a new count.
    enabled = ok(
        call(client, admin, "PATCH", f"/endpoints/{endpoint['id']}", json={"enabled": True})
    )
    assert (enabled["enabled"], enabled["failing_since"], enabled["disabled_reason"]) == (
        True,
        None,
        None,
    )


def test_no_answer_is_retried_and_a_second_sender_finds_nothing_due(
    client: FlaskClient, app: Flask, admin: Caller
) -> None:
    from modules.webhook.jobs import send_delivery
    from modules.webhook.models import WebhookDelivery
    from tests.servers import free_port

    endpoint = create_endpoint(client, admin, f"http://127.0.0.1:{free_port()}/hook")
    queued = ping(client, admin, endpoint)
    run_jobs(app)

    shown = delivery(client, admin, queued["id"])
    assert (shown["status"], shown["attempts"]) == ("pending", 1)
    [attempt] = shown["attempt_log"]
    assert (attempt["status_code"], attempt["outcome"]) == (None, "retry")
    assert "connection refused" in attempt["error"]
    with app.app_context():
        delivery_id = Session().query(WebhookDelivery.id).filter_by(uuid=queued["id"]).scalar()
        assert send_delivery(delivery_id) is None  # its retry is not due yet: nothing sent
    assert len(delivery(client, admin, queued["id"])["attempt_log"]) == 1
