"""Auth audit lines are stored as events (whatever the log level, without secrets) and read by
admins; rows and events older than the retention period are purged in bounded batches."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import clock
from app.log import audit
from modules.audit.services import purge_expired
from tests.conftest import wait_for_replica
from tests.modules.audit.conftest import (
    AUDIT,
    clear_logs,
    event_rows,
    flushed,
    insert_events,
    insert_requests,
    request_row,
    request_rows,
)
from tests.modules.conftest import PASSWORD, Caller, bearer, login
from tests.servers import Services

WRONG_PASSWORD = "wp-2b8c0e55-not-the-password"


def test_logins_lockouts_replaced_sessions_and_revocations_are_stored_events(
    app: Flask,
    client: FlaskClient,
    admin: Caller,
    staff: Caller,
    make_user: Callable[..., Any],
    services: Services,
) -> None:
    _, user_uuid, email = make_user(role="customer")
    _, _, locked_email = make_user(role="customer")
    clear_logs(app)

    for _ in range(6):  # five failures, then the account is locked
        login(client, locked_email, WRONG_PASSWORD)
    client.post("/api/v1/auth/login", json={"email": "nobody@example.test", "password": "x"})
    first = login(client, email).get_json()["access_token"]
    login(client, email)  # replaces the first session
    client.get("/api/v1/marketplace/orders", headers=bearer(first))  # refused: replaced
    revoked = client.post(f"/api/v1/auth/users/{user_uuid}/revoke-sessions", headers=admin.headers)
    assert revoked.status_code == 200

    flushed(app)
    events = event_rows(app)
    outcomes = [(e["event"], e["outcome"]) for e in events]
    assert outcomes.count(("auth.login", "failure")) == 6
    assert ("auth.login", "locked") in outcomes
    assert outcomes.count(("auth.login", "success")) == 2
    assert ("auth.session", "replaced") in outcomes
    assert ("auth.token", "refused") in outcomes
    (revocation,) = [e for e in events if e["event"] == "auth.revoke"]
    assert revocation["actor_user_id"] == admin.user_id
    assert revocation["fields"]["user"] == str(user_uuid)
    assert all(e["ip"] == "127.0.0.1" for e in events)
    assert all(e["request_id"] for e in events)
    stored = repr(events)
    for secret in (WRONG_PASSWORD, PASSWORD, first, email, locked_email):
        assert secret not in stored  # the email only as its hash

    wait_for_replica(services)
    listed = client.get(f"{AUDIT}/events?event=auth.login&outcome=locked", headers=admin.headers)
    assert listed.status_code == 200, listed.get_json()
    assert [(i["event"], i["outcome"]) for i in listed.get_json()["items"]] == [
        ("auth.login", "locked")
    ]
    everything = client.get(f"{AUDIT}/events?limit=200", headers=admin.headers).get_json()
    assert len(everything["items"]) == len(events)
    assert everything["items"][0]["event"] == "auth.revoke"
    assert everything["items"][0]["actor"] == str(admin.uuid)
    assert client.get(f"{AUDIT}/events", headers=staff.headers).status_code == 403


def test_fields_named_like_secrets_are_never_stored(app: Flask) -> None:
    clear_logs(app)
    with app.app_context():
        audit(
            logging.getLogger("test"),
            "auth.example",
            "success",
            password="p4ss",
            access_token="t0ken",
            X_Signature="s1g",
            client_secret="s3cret",
            user="someone",
            attempts=3,
        )

    flushed(app)
    (event,) = event_rows(app)
    assert event["fields"] == {"user": "someone", "attempts": 3}
    assert event["request_id"] is None  # no request: a job's or a command's line


def test_event_fields_are_stored_clean_at_any_depth(any_app: Flask) -> None:
    app = any_app
    clear_logs(app)
    with app.app_context():
        audit(
            logging.getLogger("test"),
            "auth.ex\x00ample",
            "success",
            detail={
                "note": "a\x00b",
                "ratio": math.nan,
                "limit": math.inf,
                "nested": [{"refresh_token": "t0ken", "kept": 1.5}],
                "Client-Secret": "s3cret",
            },
            ip="10.0.0.1\x00",
        )

    writer = flushed(app)
    (event,) = event_rows(app)
    assert event["event"] == "auth.example"
    assert event["ip"] == "10.0.0.1"
    assert event["fields"] == {
        "detail": {"note": "ab", "ratio": None, "limit": None, "nested": [{"kept": 1.5}]},
        "ip": "10.0.0.1",
    }
    assert writer.dropped == 0


@pytest.fixture(params=["postgresql", "sqlite"])
def any_app(
    request: pytest.FixtureRequest, app: Flask, make_embedded_app: Callable[..., Flask]
) -> Flask:
    return app if request.param == "postgresql" else make_embedded_app()


def test_rows_and_events_past_the_retention_period_are_purged_in_batches(any_app: Flask) -> None:
    app = any_app
    clear_logs(app)
    now = clock.now()
    old, recent = now - timedelta(days=30, minutes=1), now - timedelta(days=29, hours=23)
    insert_requests(app, [request_row(old, status=500 + n) for n in range(7)])
    insert_requests(app, [request_row(recent, status=200), request_row(now, status=201)])
    event = {"event": "auth.login", "outcome": "success", "actor_user_id": None, "ip": None,
             "request_id": None, "fields": {}}  # fmt: skip
    insert_events(app, [{**event, "at": old} for _ in range(3)] + [{**event, "at": recent}])

    with app.app_context():
        assert purge_expired(batch_rows=2) == 10
        assert purge_expired(batch_rows=2) == 0

    assert [row["status"] for row in request_rows(app)] == [200, 201]
    assert [row["at"] for row in event_rows(app)] == [recent]


def test_the_retention_period_is_a_setting_and_the_purge_is_periodic(
    make_embedded_app: Callable[..., Flask], config: dict[str, Any]
) -> None:
    app = make_embedded_app(module_env={**config["module_env"], "audit_retention_days": "7"})
    clear_logs(app)
    now = clock.now()
    insert_requests(app, [request_row(now - timedelta(days=8)), request_row(now)])

    with app.app_context():
        assert purge_expired() == 1
    periodic = app.extensions["lapak.registry"].wiring.periodic
    assert purge_expired in [entry.func for entry in periodic]
