"""Provider notifications through the one entry point: signature, idempotency, amounts,
late and concurrent notifications. Each asserts the transaction, the accounting payment, the
invoice, the ledger (with its own verifier) and the outbox."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.db import utcnow
from modules.payment.services import expire_transactions
from modules.payment.transitions import LATE_SUCCESS_MESSAGE
from tests.modules.conftest import Caller
from tests.servers import Services

from .conftest import (
    API,
    MARKETPLACE,
    MadeProduct,
    assert_ledger_consistent,
    assert_problem,
    events,
    execute,
    ledger_operations,
    notification,
    notify,
    place_with_provider,
    signed_headers,
    sql,
    tx_row,
)


def test_success_notified_three_times_captures_once_with_one_event(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    product: MadeProduct,
    services: Services,
    secret: str,
) -> None:
    placed = place_with_provider(client, customer, product.id)
    tx = placed["transaction"]
    assert tx["state"] == "pending"
    assert tx["action"]["type"] == "redirect"
    for _ in range(3):
        response = notify(client, secret, notification(tx, "success"))
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["state"] == "success"
    row = tx_row(services, tx["reference"])
    assert row["state"] == "success"
    assert row["payment"] == "paid"
    assert row["invoice"] == "paid"
    assert row["residual"] == 0
    assert ledger_operations(app).count("PAYMENT_CAPTURE") == 1
    assert len(events(services, "payment.succeeded")) == 1
    assert len(events(services, "payment.confirmed")) == 1
    assert_ledger_consistent(app)
    # The capture debits the demo gateway's clearing account, not the bank's.
    clearing = sql(
        services,
        "SELECT a.code, e.debit FROM ledger_entry e JOIN ledger_account a ON a.id = e.account_id "
        "JOIN ledger_transaction t ON t.id = e.transaction_id "
        "WHERE t.operation = 'PAYMENT_CAPTURE' AND a.code LIKE 'clearing_%%'",
    )
    assert [(code, str(debit)) for code, debit in clearing] == [("clearing_demo:IDR", tx["amount"])]


def test_processing_then_success_and_a_repeated_processing_is_harmless(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    product: MadeProduct,
    services: Services,
    secret: str,
) -> None:
    tx = place_with_provider(client, customer, product.id)["transaction"]
    assert notify(client, secret, notification(tx, "processing")).status_code == 200
    assert notify(client, secret, notification(tx, "processing")).status_code == 200
    assert tx_row(services, tx["reference"])["state"] == "processing"
    assert ledger_operations(app).count("PAYMENT_CAPTURE") == 0
    assert notify(client, secret, notification(tx, "success")).status_code == 200
    # A processing arriving after the success (out of order) is refused: nothing changes.
    assert_problem(notify(client, secret, notification(tx, "processing")), 409,
                   "invalid-transition")  # fmt: skip
    row = tx_row(services, tx["reference"])
    assert (row["state"], row["invoice"]) == ("success", "paid")
    assert_ledger_consistent(app)


def test_failure_leaves_the_invoice_as_it_was(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    product: MadeProduct,
    services: Services,
    secret: str,
) -> None:
    placed = place_with_provider(client, customer, product.id)
    tx = placed["transaction"]
    total = placed["invoice"]["amount_total"]
    response = notify(client, secret, notification(tx, "failed", message="card declined"))
    assert response.status_code == 200, response.get_json()
    row = tx_row(services, tx["reference"])
    assert row["state"] == "failed"
    assert row["message"] == "card declined"
    assert row["payment"] == "canceled"
    assert row["invoice"] == "not_paid"
    assert str(row["residual"]) == total
    assert ledger_operations(app).count("PAYMENT_CAPTURE") == 0
    assert len(events(services, "payment.failed")) == 1
    # A success after the failure: the capture is recorded for a refund (200, so the provider
    # stops retrying), the failure stands and nothing is posted.
    late = notify(client, secret, notification(tx, "success"))
    assert late.status_code == 200, late.get_json()
    assert (late.get_json()["state"], late.get_json()["late_success"]) == ("failed", True)
    assert tx_row(services, tx["reference"]) == {**row, "message": LATE_SUCCESS_MESSAGE}
    assert ledger_operations(app).count("PAYMENT_CAPTURE") == 0
    assert len(events(services, "payment.late_success")) == 1
    assert_ledger_consistent(app)


def test_a_success_after_expiry_is_recorded_for_a_refund_not_captured(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    product: MadeProduct,
    services: Services,
    secret: str,
) -> None:
    tx = place_with_provider(client, customer, product.id)["transaction"]
    with app.app_context():
        assert expire_transactions(now=utcnow() + timedelta(hours=2)) == 1
    expired = tx_row(services, tx["reference"])
    assert (expired["state"], expired["message"]) == ("canceled", "expired")
    assert (expired["payment"], expired["invoice"]) == ("canceled", "not_paid")
    for _ in range(2):  # the provider repeats itself: recorded once
        late = notify(client, secret, notification(tx, "success", provider_reference="ch_late"))
        assert late.status_code == 200, late.get_json()
        assert late.get_json()["late_success"] is True
    assert tx_row(services, tx["reference"]) == {
        **expired,
        "provider_reference": "ch_late",
        "message": LATE_SUCCESS_MESSAGE,
    }
    assert ledger_operations(app).count("PAYMENT_CAPTURE") == 0
    assert events(services, "payment.succeeded") == []
    assert len(events(services, "payment.canceled")) == 1
    (event,) = events(services, "payment.late_success")
    assert (event["reference"], event["state"]) == (tx["reference"], "canceled")
    assert event["message"] == LATE_SUCCESS_MESSAGE
    # Anything else after the cancellation is still refused.
    assert_problem(notify(client, secret, notification(tx, "processing",
                   provider_reference="ch_late")), 409,
                   "invalid-transition")  # fmt: skip
    assert_ledger_consistent(app)


def test_bad_signature_is_401_and_changes_nothing(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    product: MadeProduct,
    services: Services,
    secret: str,
) -> None:
    tx = place_with_provider(client, customer, product.id)["transaction"]
    before = tx_row(services, tx["reference"])
    payload = notification(tx, "success")
    body = json.dumps(payload).encode()
    url = f"{API}/providers/demo/notify"
    attempts = {
        "wrong secret": signed_headers("not-the-secret-" + "x" * 30, body),
        "stale timestamp": signed_headers(secret, body, int(time.time()) - 3600),
        "future timestamp": signed_headers(secret, body, int(time.time()) + 3600),
        "no signature": {"Content-Type": "application/json"},
        "garbage": {**signed_headers(secret, body), "X-Lapak-Signature": "v1=00"},
        "another body": signed_headers(secret, body.replace(b"success", b"failed")),
        # Non-ASCII header values (latin-1 on the wire): a 401, not compare_digest's TypeError.
        "non-ASCII signature": {
            **signed_headers(secret, body),
            "X-Lapak-Signature": "v1=\u00e9t\u00e9",
        },
        "non-ASCII timestamp": {
            **signed_headers(secret, body),
            "X-Lapak-Timestamp": "\u00b9\u00b2",
        },
    }
    for name, headers in attempts.items():
        response = client.post(url, data=body, headers=headers)
        problem = assert_problem(response, 401)
        assert secret not in json.dumps(problem), name
    assert tx_row(services, tx["reference"]) == before
    assert ledger_operations(app).count("PAYMENT_CAPTURE") == 0
    assert events(services, "payment.succeeded") == []


def test_a_wrong_amount_or_currency_is_refused_and_changes_nothing(
    client: FlaskClient, customer: Caller, product: MadeProduct, services: Services, secret: str
) -> None:
    tx = place_with_provider(client, customer, product.id)["transaction"]
    before = tx_row(services, tx["reference"])
    wrong_amount = {**notification(tx, "success"), "amount": "1.00"}
    assert_problem(notify(client, secret, wrong_amount), 409, "amount-mismatch")
    wrong_currency = {**notification(tx, "success"), "currency": "USD"}
    assert_problem(notify(client, secret, wrong_currency), 409, "amount-mismatch")
    assert tx_row(services, tx["reference"]) == before


def test_unknown_reference_and_bad_payloads(
    client: FlaskClient, customer: Caller, product: MadeProduct, secret: str
) -> None:
    tx = place_with_provider(client, customer, product.id)["transaction"]
    unknown = {**notification(tx, "success"), "reference": "TX/1999/99999"}
    assert_problem(notify(client, secret, unknown), 404)
    assert_problem(notify(client, secret, {**notification(tx, "success"), "state": "paid"}), 422)
    assert_problem(notify(client, secret, {"reference": tx["reference"]}), 422)
    assert_problem(notify(client, secret, notification(tx, "success"), code="nope"), 404)


def test_the_provider_reference_belongs_to_one_transaction(
    client: FlaskClient, customer: Caller, product: MadeProduct, services: Services, secret: str
) -> None:
    first = place_with_provider(client, customer, product.id)["transaction"]
    second = place_with_provider(client, customer, product.id)["transaction"]
    assert notify(client, secret, notification(first, "processing", provider_reference="ch_1")
                  ).status_code == 200  # fmt: skip
    taken = notification(second, "success", provider_reference="ch_1")
    assert_problem(notify(client, secret, taken), 409)
    assert tx_row(services, second["reference"])["state"] == "pending"
    other = notification(first, "success", provider_reference="ch_2")
    assert_problem(notify(client, secret, other), 409)
    assert tx_row(services, first["reference"])["state"] == "processing"


def test_two_notifications_at_once_capture_once(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    product: MadeProduct,
    services: Services,
    secret: str,
) -> None:
    transactions = [
        place_with_provider(client, customer, product.id)["transaction"] for _ in range(3)
    ]
    count = 8
    barrier = threading.Barrier(count, timeout=30)

    def send(index: int) -> TestResponse:
        own = app.test_client()
        barrier.wait()
        return notify(own, secret, notification(transactions[index % 3], "success"))

    with ThreadPoolExecutor(max_workers=count) as pool:
        responses = list(pool.map(send, range(count)))
    assert {r.status_code for r in responses} == {200}, [r.get_json() for r in responses]
    for tx in transactions:
        row = tx_row(services, tx["reference"])
        assert (row["state"], row["payment"], row["invoice"]) == ("success", "paid", "paid")
    assert ledger_operations(app).count("PAYMENT_CAPTURE") == 3
    assert len(events(services, "payment.succeeded")) == 3
    assert_ledger_consistent(app)


def test_the_payer_cannot_cancel_a_transaction_the_provider_is_processing(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    product: MadeProduct,
    services: Services,
    secret: str,
) -> None:
    tx = place_with_provider(client, customer, product.id)["transaction"]
    assert notify(client, secret, notification(tx, "processing")).status_code == 200
    refused = client.post(f"{API}/{tx['id']}/cancel", headers=customer.headers)
    assert_problem(refused, 409, "invalid-transition")
    assert tx_row(services, tx["reference"])["state"] == "processing"
    # The provider's success then captures as usual.
    assert notify(client, secret, notification(tx, "success")).status_code == 200
    row = tx_row(services, tx["reference"])
    assert (row["state"], row["payment"], row["invoice"]) == ("success", "paid", "paid")
    assert ledger_operations(app).count("PAYMENT_CAPTURE") == 1
    assert_ledger_consistent(app)


def test_the_checkout_page_refuses_an_expired_or_given_up_transaction(
    client: FlaskClient, customer: Caller, product: MadeProduct, services: Services
) -> None:
    expired = place_with_provider(client, customer, product.id)["transaction"]
    execute(services, "UPDATE payment_transaction SET expires_at = now() - interval '1 second' "
            "WHERE reference = %s", expired["reference"])  # fmt: skip
    page = client.get(urlsplit(expired["action"]["url"]).path)
    assert (page.status_code, b"expired" in page.data, b"<form" in page.data) == (410, True, False)
    chosen = client.post(urlsplit(expired["action"]["url"]).path, data={"outcome": "success"})
    assert chosen.status_code == 410
    canceled = place_with_provider(client, customer, product.id)["transaction"]
    assert (
        client.post(f"{API}/{canceled['id']}/cancel", headers=customer.headers).status_code == 200
    )
    page = client.get(urlsplit(canceled["action"]["url"]).path)
    assert (page.status_code, b"canceled" in page.data, b"<form" in page.data) == (409, True, False)
    chosen = client.post(urlsplit(canceled["action"]["url"]).path, data={"outcome": "success"})
    assert chosen.status_code == 409
    pending = place_with_provider(client, customer, product.id)["transaction"]
    page = client.get(urlsplit(pending["action"]["url"]).path)
    assert (page.status_code, b"<form" in page.data) == (200, True)


@pytest.mark.parametrize("first", ["pending", "processing"])
def test_cancelling_the_order_cancels_its_transaction_and_a_later_success_is_recorded(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    product: MadeProduct,
    services: Services,
    secret: str,
    first: str,
) -> None:
    placed = place_with_provider(client, customer, product.id)
    tx = placed["transaction"]
    if first == "processing":
        assert notify(client, secret, notification(tx, "processing")).status_code == 200
    cancelled = client.post(f"{MARKETPLACE}/orders/{placed['order']['id']}/cancel",
                            headers=customer.headers)  # fmt: skip
    assert cancelled.status_code == 200, cancelled.get_json()
    row = tx_row(services, tx["reference"])
    assert (row["state"], row["message"], row["payment"]) == (
        "canceled",
        "the order was cancelled",
        "canceled",
    )
    assert len(events(services, "payment.canceled")) == 1
    late = notify(client, secret, notification(tx, "success"))
    assert late.status_code == 200, late.get_json()
    assert (late.get_json()["state"], late.get_json()["late_success"]) == ("canceled", True)
    row = tx_row(services, tx["reference"])
    assert (row["state"], row["message"]) == ("canceled", LATE_SUCCESS_MESSAGE)
    assert row["provider_reference"] == f"demo_{tx['reference'][-5:]}"
    assert ledger_operations(app).count("PAYMENT_CAPTURE") == 0
    assert events(services, "payment.succeeded") == []
    assert len(events(services, "payment.late_success")) == 1
    assert_ledger_consistent(app)
