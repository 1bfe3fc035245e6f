"""The periodic job that cancels pending transactions past their expiry: only those, once, even
when two runs overlap."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient

from app.db import utcnow
from modules.payment.jobs import expire_transactions
from modules.payment.services import expire_transactions as expire_at
from tests.modules.conftest import Caller
from tests.servers import Services

from .conftest import (
    MadeProduct,
    events,
    execute,
    ledger_operations,
    notification,
    notify,
    place_with_provider,
    tx_row,
)


def test_expiry_cancels_only_pending_transactions_past_their_time(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    product: MadeProduct,
    services: Services,
    secret: str,
) -> None:
    due, fresh, processing = (
        place_with_provider(client, customer, product.id)["transaction"] for _ in range(3)
    )
    assert notify(client, secret, notification(processing, "processing")).status_code == 200
    execute(services, "UPDATE payment_transaction SET expires_at = now() - interval '1 minute' "
            "WHERE reference IN (%s, %s)", due["reference"], processing["reference"])  # fmt: skip
    with app.app_context():
        assert expire_transactions() == 1
        assert expire_transactions() == 0  # run again: nothing left
    assert tx_row(services, due["reference"])["state"] == "canceled"
    assert tx_row(services, fresh["reference"])["state"] == "pending"
    assert tx_row(services, processing["reference"])["state"] == "processing"
    assert len(events(services, "payment.canceled")) == 1


def test_two_expiry_runs_at_once_cancel_each_transaction_once(
    app: Flask, client: FlaskClient, customer: Caller, product: MadeProduct, services: Services
) -> None:
    placed = [place_with_provider(client, customer, product.id)["transaction"] for _ in range(6)]
    later = utcnow() + timedelta(days=1)
    barrier = threading.Barrier(2, timeout=30)

    def run(_: int) -> int:
        with app.app_context():
            barrier.wait()
            return expire_at(now=later, batch=2)

    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(run, range(2)))
    assert sum(done) == 6
    for tx in placed:
        row = tx_row(services, tx["reference"])
        assert (row["state"], row["payment"], row["invoice"]) == ("canceled", "canceled",
                                                                  "not_paid")  # fmt: skip
    assert len(events(services, "payment.canceled")) == 6
    assert len(events(services, "payment.cancelled")) == 6  # the marketplace's, per payment


def test_a_payment_staff_confirmed_by_hand_succeeds_instead_of_expiring(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    product: MadeProduct,
    services: Services,
) -> None:
    placed = place_with_provider(client, customer, product.id, provider="bank_transfer")
    tx = placed["transaction"]
    payment_id = placed["payment"]["id"]
    confirmed = client.post(
        f"/api/v1/marketplace/payments/{payment_id}/confirm", headers=staff.headers
    )
    assert confirmed.status_code == 200, confirmed.get_json()
    cancel = client.post(f"/api/v1/payments/{tx['id']}/cancel", headers=customer.headers)
    assert cancel.status_code == 409, cancel.get_json()
    with app.app_context():
        assert expire_at(now=utcnow() + timedelta(days=10)) == 1
    row = tx_row(services, tx["reference"])
    assert (row["state"], row["payment"], row["invoice"]) == ("success", "paid", "paid")
    assert ledger_operations(app).count("PAYMENT_CAPTURE") == 1
    assert len(events(services, "payment.succeeded")) == 1
