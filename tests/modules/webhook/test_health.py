"""The webhook figures for the health endpoint equal recomputations from the table."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import psycopg
from flask import Flask
from flask.testing import FlaskClient

from app.db import Session, utcnow
from modules.webhook.health import figures, section
from tests.conftest import run_jobs
from tests.modules.conftest import Caller
from tests.servers import Services

from .conftest import Receiver, at, call, create_endpoint, ok


def test_figures_equal_a_recount_of_the_deliveries(
    app: Flask,
    client: FlaskClient,
    services: Services,
    admin: Caller,
    make_receiver: Callable[..., Receiver],
) -> None:
    good = create_endpoint(client, admin, make_receiver().url)
    gone = create_endpoint(client, admin, make_receiver(lambda _n: (404, {}, b"")).url)
    slow = create_endpoint(client, admin, make_receiver(lambda _n: (503, {}, b"")).url)
    for endpoint in (good, good, gone, slow):
        ok(call(client, admin, "POST", f"/endpoints/{endpoint['id']}/test"), 202)
    run_jobs(app)
    with at(utcnow() + timedelta(hours=2)):  # one more sent, later
        with app.app_context():
            from modules.webhook.models import WebhookEndpoint

            endpoint = Session().query(WebhookEndpoint).filter_by(uuid=good["id"]).one()
            principal_free_ping(app, endpoint.id)
        run_jobs(app)
        now = utcnow()
        with app.app_context():
            shown = figures(Session(), now)
            in_the_report = section()

    with psycopg.connect(services.database_url.replace("+psycopg", ""), autocommit=True) as c:

        def count(status: str, since: timedelta) -> int:
            return c.execute(
                "SELECT count(*) FROM webhook_delivery WHERE status = %s AND finished_at >= %s",
                (status, now - since),
            ).fetchone()[0]

        recount = {
            name: {"sent": count("sent", span), "failed": count("failed", span)}
            for name, span in (("last_hour", timedelta(hours=1)), ("last_day", timedelta(days=1)))
        }
        pending, oldest = c.execute(
            "SELECT count(*), min(queued_at) FROM webhook_delivery WHERE status = 'pending'"
        ).fetchone()
    assert (shown["last_hour"], shown["last_day"]) == (recount["last_hour"], recount["last_day"])
    assert shown["last_hour"] == {"sent": 1, "failed": 0}
    assert shown["last_day"] == {"sent": 3, "failed": 1}
    assert shown["pending"] == pending == 1
    assert abs(shown["oldest_pending_seconds"] - (now - oldest).total_seconds()) < 0.001
    assert in_the_report["last_day"] == shown["last_day"]
    assert in_the_report["last_hour"] == {"sent": 1, "failed": 0, "sent_per_second": 0.0003}


def test_the_system_health_report_shows_the_webhook_section(
    client: FlaskClient, admin: Caller
) -> None:
    answer = client.get("/api/v1/system/health", headers=admin.headers)
    assert answer.status_code == 200, answer.get_json()
    webhooks = answer.get_json()["sections"]["webhooks"]
    assert webhooks["last_hour"] == {"sent": 0, "failed": 0, "sent_per_second": 0.0}
    assert webhooks["pending"] == 0


def principal_free_ping(app: Flask, endpoint_id: int) -> None:
    """A ping queued through the service's own steps (the API's token expires on a moved clock)."""
    import uuid

    from app.db import transaction
    from modules.webhook.fanout import queue_deliveries
    from modules.webhook.models import WebhookMessage

    with transaction() as session:
        message = WebhookMessage(
            event_id=uuid.uuid4(), event_type="ping", occurred_at=utcnow(), payload={}
        )
        session.add(message)
        session.flush()
        queue_deliveries(message.id, [endpoint_id])
