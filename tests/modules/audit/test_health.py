"""``GET /api/v1/system/health``: every figure equals its recomputation from the tables (and
from RQ's registries), on PostgreSQL (percentile_cont in SQL) and SQLite (in Python)."""

from __future__ import annotations

import importlib.metadata
import statistics
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import insert, select

from app import clock
from app.events import DELIVERED, FAILED, PENDING, OutboxEvent
from app.jobs import QUEUES, enqueue
from modules.user.services import create_user
from tests.modules.audit.conftest import HEALTH, clear_logs, insert_requests, request_row
from tests.modules.conftest import PASSWORD, bearer, login
from tests.sample_modules.notes.services import create_note, create_note_job

#: The fixtures' own requests stay in the writer: only the rows inserted here are in the table;
#: each report is computed afresh.
QUIET = {"audit_flush_ms": "600000", "audit_batch_rows": "1000", "audit_health_cache_seconds": "0"}


@pytest.fixture(params=["postgresql", "sqlite"])
def quiet_app(
    request: pytest.FixtureRequest,
    make_app: Callable[..., Flask],
    make_embedded_app: Callable[..., Flask],
    config: dict[str, Any],
) -> Flask:
    module_env = {**config["module_env"], **QUIET}
    if request.param == "postgresql":
        return make_app(module_env=module_env)
    return make_embedded_app(module_env=module_env)


def token_of(app: Flask, role: str) -> str:
    email = f"{role}.{uuid.uuid4().hex[:8]}@example.test"
    with app.app_context():
        create_user(email, role=role, password=PASSWORD)
    response = login(app.test_client(), email)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


def expected_window(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of ``rows`` recomputed here: statistics' inclusive quantiles interpolate
    between neighbours as percentile_cont does."""
    latencies = sorted(row["latency_ms"] for row in rows)
    ventiles = statistics.quantiles(latencies, n=20, method="inclusive")
    client = sum(1 for row in rows if 400 <= row["status"] < 500)
    server = sum(1 for row in rows if row["status"] >= 500)
    return {
        "requests": len(rows),
        "client_errors": client,
        "server_errors": server,
        "client_error_rate": pytest.approx(client / len(rows)),
        "server_error_rate": pytest.approx(server / len(rows)),
        "latency_p50_ms": pytest.approx(statistics.median(latencies)),
        "latency_p95_ms": pytest.approx(ventiles[18]),
    }


def test_health_figures_equal_their_recomputation_from_the_tables(quiet_app: Flask) -> None:
    app = quiet_app
    client = app.test_client()
    staff = bearer(token_of(app, "staff"))
    clear_logs(app)
    now = clock.now()
    statuses = [200, 201, 404, 422, 500, 503, 200, 204, 401, 200]
    within_hour = [
        request_row(now - timedelta(minutes=30 + n), status=statuses[n % 10], latency_ms=n * 1.5)
        for n in range(23)
    ]
    within_day = [
        request_row(
            now - timedelta(hours=2 + n / 2),
            status=statuses[(n * 3) % 10],
            latency_ms=100.0 + n * n,
        )
        for n in range(17)
    ]
    older = [request_row(now - timedelta(days=2), status=500, latency_ms=9999.0)]
    insert_requests(app, within_hour + within_day + older)
    outbox = OutboxEvent.__table__
    oldest = now - timedelta(minutes=10)
    with app.extensions["lapak.db"].primary.begin() as connection:
        connection.execute(
            insert(outbox),
            [
                {
                    "event_id": uuid.uuid4(),
                    "name": "x",
                    "payload": {},
                    "status": status,
                    "attempts": 0,
                    "delivered_to": [],
                    "created_at": created,
                    "next_attempt_at": created,
                }
                for status, created in [
                    (PENDING, oldest),
                    (PENDING, now - timedelta(minutes=5)),
                    (FAILED, now - timedelta(hours=3)),
                    (DELIVERED, now - timedelta(hours=4)),
                ]
            ],
        )

    before = clock.now()
    response = client.get(HEALTH, headers=staff)
    after = clock.now()

    assert response.status_code == 200, response.get_json()
    report = response.get_json()
    assert report["requests"]["last_hour"] == expected_window(within_hour)
    assert report["requests"]["last_day"] == expected_window(within_hour + within_day)
    with app.extensions["lapak.db"].primary.connect() as connection:
        statuses_now = [row.status for row in connection.execute(select(outbox.c.status))]
        created = connection.execute(
            select(outbox.c.created_at).where(outbox.c.status == PENDING)
        ).scalars()
        oldest = min(created)
    assert report["outbox"]["pending"] == statuses_now.count(PENDING)
    assert report["outbox"]["failed"] == statuses_now.count(FAILED) == 1
    age = report["outbox"]["oldest_pending_age_seconds"]
    assert (before - oldest).total_seconds() - 0.001 <= age <= (after - oldest).total_seconds()
    assert report["status"] == "ok"
    assert report["version"] == importlib.metadata.version("lapak")
    assert report["uptime_seconds"] > 0
    names = [module["name"] for module in report["modules"]]
    assert names == [m.name for m in app.extensions["lapak.registry"].manifests]
    assert "audit" in names
    assert report["checks"]["primary"]["ok"] is True
    assert report["sections"]["audit_log"]["dropped"] == 0


def test_postgresql_replicas_queues_and_module_sections(
    make_app: Callable[..., Flask], config: dict[str, Any]
) -> None:
    app = make_app(module_env={**config["module_env"], **QUIET})
    admin = bearer(token_of(app, "admin"))
    with app.app_context():
        create_note("one")
        create_note("two")
        enqueue(create_note_job, "queued, never run", queue="default")

    report = app.test_client().get(HEALTH, headers=admin).get_json()

    (replica,) = report["replicas"]
    assert report["replicas"][replica]["ok"] is True
    assert report["replicas"][replica]["lag_bytes"] is not None
    jobs = app.extensions["lapak.jobs"]
    expected = {
        name: {
            "queued": jobs.queue(name).count,
            "started": jobs.queue(name).started_job_registry.count,
            "scheduled": jobs.queue(name).scheduled_job_registry.count,
            "failed": jobs.queue(name).failed_job_registry.count,
        }
        for name in QUEUES
    }
    assert report["jobs"] == {"mode": "redis", "queues": expected}
    assert report["jobs"]["queues"]["default"]["queued"] >= 1
    assert report["sections"]["notes"] == {"notes": 2}


def test_the_embedded_runner_reports_its_failed_jobs_and_a_failing_section_is_named(
    make_embedded_app: Callable[..., Flask],
) -> None:
    app = make_embedded_app()
    staff = bearer(token_of(app, "staff"))
    with app.app_context():
        enqueue(create_note_job, "no notes table on this database")
    app.extensions["lapak.jobs"].wait_embedded()

    report = app.test_client().get(HEALTH, headers=staff).get_json()

    assert report["jobs"] == {
        "mode": "embedded",
        "queues": {"embedded": {"queued": 0, "started": 0, "failed": 1}},
    }
    assert report["sections"]["notes"] == {"error": "OperationalError"}  # the rest stands
    assert report["replicas"] == {}
    assert report["requests"]["last_hour"]["requests"] >= 0


def test_health_is_for_staff_and_admins(make_embedded_app: Callable[..., Flask]) -> None:
    app = make_embedded_app()
    client = app.test_client()

    assert client.get(HEALTH).status_code == 401
    assert client.get(HEALTH, headers=bearer(token_of(app, "customer"))).status_code == 403
    assert client.get(HEALTH, headers=bearer(token_of(app, "seller"))).status_code == 403
    assert client.get(HEALTH, headers=bearer(token_of(app, "admin"))).status_code == 200


def test_a_process_answers_with_its_report_for_the_cache_period(quiet_app: Flask) -> None:
    app = quiet_app
    client = app.test_client()
    staff = bearer(token_of(app, "staff"))
    clear_logs(app)
    now = clock.now()
    app.extensions["audit.settings"] = replace(
        app.extensions["audit.settings"], health_cache_seconds=30
    )
    insert_requests(app, [request_row(now - timedelta(minutes=1))])

    first = client.get(HEALTH, headers=staff).get_json()
    insert_requests(app, [request_row(now - timedelta(minutes=1), status=500)])
    within = client.get(HEALTH, headers=staff).get_json()
    with clock.travel(timedelta(seconds=31)):
        after = client.get(HEALTH, headers=staff).get_json()

    assert first["requests"]["last_hour"]["requests"] == 1
    assert within == first  # the same report, not recomputed
    assert after["requests"]["last_hour"]["requests"] == 2
    assert after["requests"]["last_hour"]["server_errors"] == 1
