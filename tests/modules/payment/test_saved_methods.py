"""Saved methods from the demo gateway's "save this card", over real HTTP: sealed by the vault,
masked when listed, found again by the vault's fingerprint, paying off-session, soft-deleted."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import select

from app.db import Session
from modules.payment.models import PaymentProvider, PaymentToken
from tests.conftest import redis_outage_app, run_jobs
from tests.modules.conftest import Caller
from tests.modules.marketplace.conftest import counts
from tests.servers import RedisServer, Services

from .conftest import API, MARKETPLACE, MadeProduct, order_body, sql, tx_row
from .test_demo_gateway import choose, order_through_demo, shown

CARD = {"save_card": "1", "card_number": "4242 4242 4242 4242", "exp_month": "12",
        "exp_year": "2030"}  # fmt: skip


def saved(
    base: str, caller: Caller, after: requests.Response | None = None
) -> list[dict[str, Any]]:
    """The caller's saved methods, read (from a replica) ``after`` that write's response."""
    headers = dict(caller.headers)
    if after is not None:
        headers["X-Lapak-LSN"] = after.headers["X-Lapak-LSN"]
    response = requests.get(f"{base}{API}/tokens", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def partly_paid_invoice(base: str, caller: Caller, product_id: str) -> str:
    body = order_body((product_id, "1"))
    body["payment"] = {"method": "bank_transfer", "amount": "1000"}
    response = requests.post(f"{base}{MARKETPLACE}/orders", json=body, headers=caller.headers,
                             timeout=30)  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()["invoice"]["id"]


def test_save_a_card_then_pay_off_session_then_forget_it(
    app: Flask,
    serve: Callable[[Flask], str],
    customer: Caller,
    log_in_as: Callable[..., Caller],
    product: MadeProduct,
    services: Services,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    base = serve(app)
    first = order_through_demo(base, customer, product.id)["transaction"]
    choose(first["action"]["url"], "success", **CARD)
    run_jobs(app)
    paid = shown(base, customer, first)
    assert paid["state"] == "success"
    assert paid["token"] is not None
    methods = saved(base, customer)
    assert methods == [
        {
            "id": paid["token"],
            "provider": "demo",
            "brand": "visa",
            "card": "•••• 4242",
            "exp_month": 12,
            "exp_year": 2030,
            "created_at": methods[0]["created_at"],
        }
    ]
    # The same card saved again is the same saved method (the vault's fingerprint).
    second = order_through_demo(base, customer, product.id)["transaction"]
    choose(second["action"]["url"], "success", **CARD)
    run_jobs(app)
    assert [m["id"] for m in saved(base, customer)] == [paid["token"]]

    # Stored sealed: neither the provider's token nor the card number is in the database.
    with app.app_context():
        plain_token = Session().scalars(select(PaymentToken.provider_token)).one()
        plain_secret = (
            Session()
            .scalars(select(PaymentProvider.secrets).where(PaymentProvider.code == "demo"))
            .one()
        )
    assert plain_token.startswith("demo_tok_")
    dump = "\n".join(
        row[0]
        for table in (
            "payment_token",
            "payment_provider",
            "payment_transaction",
            "core_outbox_event",
        )
        for row in sql(services, f"SELECT t::text FROM {table} t")  # noqa: S608
    )
    assert plain_token not in dump
    assert "4242424242424242" not in dump
    assert plain_secret not in dump
    assert "webhook_secret" not in dump  # the whole secrets document is sealed

    # Off-session: a saved card pays another invoice without the payer.
    invoice = partly_paid_invoice(base, customer, product.id)
    body = {"invoice": invoice, "provider": "demo", "token": paid["token"]}
    response = requests.post(f"{base}{API}", json=body, headers=customer.headers, timeout=30)
    assert response.status_code == 201, response.text
    off_session = response.json()
    assert off_session["action"]["type"] == "none"
    assert off_session["token"] == paid["token"]
    run_jobs(app)
    row = tx_row(services, off_session["reference"])
    assert (row["state"], row["payment"]) == ("success", "paid")

    # Another customer can neither use nor delete it.
    stranger = log_in_as("customer")
    theirs = partly_paid_invoice(base, stranger, product.id)
    body = {"invoice": theirs, "provider": "demo", "token": paid["token"]}
    refused = requests.post(f"{base}{API}", json=body, headers=stranger.headers, timeout=30)
    assert refused.status_code == 422, refused.text
    gone = requests.delete(f"{base}{API}/tokens/{paid['token']}", headers=stranger.headers,
                           timeout=30)  # fmt: skip
    assert gone.status_code == 404
    assert saved(base, stranger) == []

    # Forgotten (soft delete): not listed, cannot pay; past transactions keep it.
    deleted = requests.delete(f"{base}{API}/tokens/{paid['token']}", headers=customer.headers,
                              timeout=30)  # fmt: skip
    assert deleted.status_code == 204
    assert saved(base, customer, after=deleted) == []
    invoice = partly_paid_invoice(base, customer, product.id)
    body = {"invoice": invoice, "provider": "demo", "token": paid["token"]}
    again = requests.post(f"{base}{API}", json=body, headers=customer.headers, timeout=30)
    assert again.status_code == 422, again.text
    assert shown(base, customer, first)["token"] == paid["token"]
    # Nor in any log line (the worker names its jobs' arguments: those are sealed).
    assert "deliver_notification" in caplog.text
    assert plain_token not in caplog.text
    assert "4242424242424242" not in caplog.text


def test_a_failed_payment_saves_nothing(
    app: Flask, serve: Callable[[Flask], str], customer: Caller, product: MadeProduct
) -> None:
    base = serve(app)
    tx = order_through_demo(base, customer, product.id)["transaction"]
    choose(tx["action"]["url"], "failure", **CARD)
    run_jobs(app)
    assert shown(base, customer, tx)["state"] == "failed"
    assert saved(base, customer) == []


def test_an_off_session_payment_while_redis_is_down_is_a_503_that_keeps_nothing(
    make_app: Callable[..., Flask],
    own_redis: RedisServer,
    serve: Callable[[Flask], str],
    customer: Caller,
    product: MadeProduct,
    services: Services,
) -> None:
    """The gateway's charge is queued in the payment's transaction: without Redis the payer is
    told to retry, and no payment or transaction is left waiting for a charge that never comes."""
    app = redis_outage_app(make_app, own_redis)
    base = serve(app)
    first = order_through_demo(base, customer, product.id)["transaction"]
    choose(first["action"]["url"], "success", **CARD)
    run_jobs(app)
    token = shown(base, customer, first)["token"]
    assert token is not None
    invoice = partly_paid_invoice(base, customer, product.id)
    before = counts(services, ("payment_transaction", "marketplace_payment"))
    own_redis.stop()
    body = {"invoice": invoice, "provider": "demo", "token": token}
    headers = {**customer.headers, "Idempotency-Key": "off-session-1"}
    response = requests.post(f"{base}{API}", json=body, headers=headers, timeout=30)
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) >= 0
    assert counts(services, ("payment_transaction", "marketplace_payment")) == before
    # Redis back: the same request (same key) is taken and the saved card is charged.
    own_redis.start()
    retried = requests.post(f"{base}{API}", json=body, headers=headers, timeout=30)
    assert retried.status_code == 201, retried.text
    run_jobs(app)
    assert shown(base, customer, retried.json())["state"] == "success"
