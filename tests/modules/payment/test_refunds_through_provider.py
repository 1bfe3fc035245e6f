"""Refunds of payments a provider took: a provider that sends refunds back itself (the demo
gateway) does it from a job after the refund commits, once; a lost job is swept later; the
manual bank transfer's refunds stay for staff to send and mark done."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app import clock
from modules.payment import jobs
from tests.conftest import run_jobs
from tests.modules.conftest import Caller
from tests.servers import Services

from .conftest import (
    API,
    MadeProduct,
    assert_ledger_consistent,
    events,
    notification,
    notify,
    place_with_provider,
)

MARKETPLACE = "/api/v1/marketplace"


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    return response.get_json()


def paid_through(client: FlaskClient, customer: Caller, staff: Caller, product: MadeProduct,
                 provider: str, secret: str) -> str:  # fmt: skip
    """A payment the provider took; its accounting payment's id."""
    placed = place_with_provider(client, customer, product.id, provider)
    tx = placed["transaction"]
    if provider == "demo":
        assert notify(client, secret, notification(tx, "success")).status_code == 200
    else:
        ok(client.post(f"{API}/{tx['id']}/confirm", headers=staff.headers))
    return placed["payment"]["id"]


def refund(client: FlaskClient, staff: Caller, payment_id: str, amount: str) -> dict[str, Any]:
    body = {"reason": "damaged", "amount": amount}
    return ok(client.post(f"{MARKETPLACE}/payments/{payment_id}/refunds", json=body,
                          headers=staff.headers), 201)  # fmt: skip


def shown(client: FlaskClient, staff: Caller, refund_id: str) -> dict[str, Any]:
    return ok(client.get(f"{MARKETPLACE}/refunds/{refund_id}", headers=staff.headers))


def test_the_demo_gateway_sends_a_refund_back_itself_once(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    product: MadeProduct,
    secret: str,
    services: Services,
) -> None:
    payment_id = paid_through(client, customer, staff, product, "demo", secret)

    made = refund(client, staff, payment_id, "1000.00")
    assert (made["destination"], made["state"], made["provider_reference"]) == (
        "demo", "pending", None,
    )  # fmt: skip
    run_jobs(app)

    done = shown(client, staff, made["id"])
    assert done["state"] == "succeeded"
    assert done["provider_reference"].startswith("demo_rf_")
    assert done["confirmed_at"] is not None
    with app.app_context():
        assert jobs.sweep_refunds() == 0  # nothing left to send
        with clock.travel(timedelta(minutes=10)):
            assert jobs.sweep_refunds() == 0
    assert [e["refund"] for e in events(services, "refund.succeeded")] == [made["id"]]
    assert_ledger_consistent(app)


def test_a_refund_whose_job_was_lost_is_swept_later_and_sent_once(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    product: MadeProduct,
    secret: str,
    services: Services,
) -> None:
    payment_id = paid_through(client, customer, staff, product, "demo", secret)
    made = refund(client, staff, payment_id, "500.00")

    with app.app_context():
        assert jobs.sweep_refunds() == 0  # too recent: its job may still run
        with clock.travel(timedelta(minutes=3)):
            assert jobs.sweep_refunds() == 1
    run_jobs(app)  # the queued job finds it sent already

    assert shown(client, staff, made["id"])["state"] == "succeeded"
    assert len(events(services, "refund.succeeded")) == 1


def test_a_bank_transfer_refund_waits_for_staff(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    product: MadeProduct,
    secret: str,
) -> None:
    payment_id = paid_through(client, customer, staff, product, "bank_transfer", secret)
    made = refund(client, staff, payment_id, "1000.00")
    run_jobs(app)
    with app.app_context(), clock.travel(timedelta(minutes=10)):
        assert jobs.sweep_refunds() == 0

    assert shown(client, staff, made["id"])["state"] == "pending"
    done = ok(client.post(f"{MARKETPLACE}/refunds/{made['id']}/done", headers=staff.headers))
    assert (done["state"], done["provider_reference"]) == ("succeeded", None)
