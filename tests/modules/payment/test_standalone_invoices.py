"""Standalone invoices (no order) paid through the payment module's providers: a verified seller
invoices a payer without an account, staff start the payment through the demo gateway
(``POST /api/v1/payments``, as a payment link will for the payer), the payer picks the outcome
on the hosted page, the gateway notifies Lapak over real HTTP, and the invoice is paid: the
ledger balanced, the seller's pending balance grown by their share. On the harness's PostgreSQL
and Redis, and on the embedded default (SQLite, in-process jobs)."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.db import Session
from modules.ledger.models import Account
from modules.user.services import create_user
from tests.conftest import run_jobs
from tests.modules.conftest import PASSWORD, Caller, login
from tests.servers import Services

from .conftest import API, MARKETPLACE, assert_ledger_consistent, events, tx_row

BANK = {"bank_code": "014", "holder_name": "Budi Santoso", "account_number": "8800-4412-3977"}
INVOICE = {
    "payer_name": "Ibu Sari",
    "payer_email": "sari@example.com",
    "lines": [{"description": "Cold storage, May", "quantity": "2", "price_unit": "250000.00"}],
}


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    code = getattr(response, "status_code", None)
    body = response.get_json() if hasattr(response, "get_json") else response.json()
    assert code == status, body
    return body


def verify_seller(client: FlaskClient, seller: Caller, staff: Caller) -> None:
    """Through the seller API: a payout account, the KYC review submitted and approved."""
    ok(client.patch("/api/v1/sellers/me", json={"bank_account": BANK, "display_name": "Toko Sari"},
                    headers=seller.headers))  # fmt: skip
    ok(client.post("/api/v1/sellers/me/kyc", headers=seller.headers))
    ok(client.post(f"/api/v1/sellers/{seller.uuid}/kyc/approve", headers=staff.headers))


def posted_guest_invoice(client: FlaskClient, seller: Caller) -> dict[str, Any]:
    made = ok(client.post(f"{MARKETPLACE}/invoices", json=INVOICE, headers=seller.headers), 201)
    return ok(client.post(f"{MARKETPLACE}/invoices/{made['id']}/post", headers=seller.headers))


def balance(app: Flask, purpose: str, holder_id: int | None = None) -> Decimal:
    with app.app_context():
        found = Session().scalar(
            select(Account.balance).where(
                Account.purpose == purpose, Account.holder_id == holder_id
            )
            if holder_id is not None
            else select(Account.balance).where(
                Account.purpose == purpose, Account.holder_id.is_(None)
            )
        )
        Session.remove()
    return found if found is not None else Decimal("0.00")


def pay_through_demo(base: str, staff: Caller, invoice: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{base}{API}", json={"invoice": invoice["id"], "provider": "demo"},
                             headers=staff.headers, timeout=30)  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()


def choose_success(tx: dict[str, Any]) -> None:
    page = requests.get(tx["action"]["url"], timeout=30)
    assert page.status_code == 200
    # The payer has no account: nowhere to keep a card, so none is offered.
    assert "save_card" not in page.text
    chosen = requests.post(tx["action"]["url"], data={"outcome": "success"},
                           allow_redirects=False, timeout=30)  # fmt: skip
    assert chosen.status_code == 303, chosen.text


def test_a_sellers_invoice_to_a_payer_without_an_account_is_paid_through_the_demo_gateway(
    app: Flask,
    client: FlaskClient,
    serve: Callable[[Flask], str],
    staff: Caller,
    log_in_as: Callable[..., Caller],
    services: Services,
) -> None:
    seller = log_in_as("seller")
    verify_seller(client, seller, staff)
    invoice = posted_guest_invoice(client, seller)  # 500,000 + 11% PPN = 555,000
    assert balance(app, "guest_receivable") == Decimal("555000.00")
    base = serve(app)
    tx = pay_through_demo(base, staff, invoice)
    assert (tx["customer"], tx["invoice"], tx["amount"]) == (None, invoice["id"], "555000.00")
    choose_success(tx)
    run_jobs(app)
    row = tx_row(services, tx["reference"])
    assert (row["state"], row["payment"], row["invoice"], row["residual"]) == (
        "success", "paid", "paid", Decimal("0.00"),
    )  # fmt: skip
    # 500,000 is the seller's, less the 5% commission: 475,000 on hold for them.
    assert balance(app, "seller_pending", seller.user_id) == Decimal("475000.00")
    assert balance(app, "commission_income") == Decimal("25000.00")
    assert balance(app, "guest_receivable") == Decimal("0.00")
    shown = ok(client.get(f"{MARKETPLACE}/invoices/{invoice['id']}", headers=seller.headers))
    assert shown["payment_state"] == "paid"
    # The seller sees the transaction of their invoice; its events name no customer.
    seen = ok(client.get(f"{API}/{tx['id']}", headers=seller.headers))
    assert seen["state"] == "success"
    assert [e["customer"] for e in events(services, "payment.succeeded")] == [None]
    assert_ledger_consistent(app)


def test_the_embedded_default_writes_posts_and_pays_a_guest_invoice(
    make_embedded_app: Callable[..., Flask], serve: Callable[[Flask], str]
) -> None:
    """SQLite, no Redis: manual payment confirmed by staff, then the demo gateway, in-process."""
    app = make_embedded_app()
    client = app.test_client()
    callers = {}
    for role in ("staff", "seller"):
        email = f"{role}@example.test"
        with app.app_context():
            user = create_user(email, role=role, password=PASSWORD, name=role.title())
            user_id, user_uuid = user.id, user.uuid
        token = login(client, email).get_json()["access_token"]
        callers[role] = Caller(email, user_uuid, user_id, token)
    staff, seller = callers["staff"], callers["seller"]
    verify_seller(client, seller, staff)

    first = posted_guest_invoice(client, seller)
    assert first["number"].endswith("/00001")
    paying = client.post(f"{MARKETPLACE}/invoices/{first['id']}/payments",
                         json={"method": "bank_transfer"}, headers=staff.headers)  # fmt: skip
    payment = ok(paying, 201)
    ok(client.post(f"{MARKETPLACE}/payments/{payment['id']}/confirm", headers=staff.headers))
    assert balance(app, "seller_pending", seller.user_id) == Decimal("475000.00")

    second = posted_guest_invoice(client, seller)
    assert second["number"].endswith("/00002")
    base = serve(app)
    tx = pay_through_demo(base, staff, second)
    choose_success(tx)
    deadline = time.monotonic() + 30
    while True:
        shown = ok(client.get(f"{MARKETPLACE}/invoices/{second['id']}", headers=staff.headers))
        if shown["payment_state"] == "paid":
            break
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)
    assert balance(app, "seller_pending", seller.user_id) == Decimal("950000.00")
    assert balance(app, "guest_receivable") == Decimal("0.00")
    assert_ledger_consistent(app)


def test_reversing_a_standalone_invoice_cancels_its_provider_transaction_in_flight(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    log_in_as: Callable[..., Caller],
    services: Services,
) -> None:
    seller = log_in_as("seller")
    verify_seller(client, seller, staff)
    invoice = posted_guest_invoice(client, seller)
    tx = ok(client.post(API, json={"invoice": invoice["id"], "provider": "demo"},
                        headers=staff.headers), 201)  # fmt: skip
    reversed_ = ok(client.post(f"{MARKETPLACE}/invoices/{invoice['id']}/reverse",
                               headers=seller.headers))  # fmt: skip
    assert reversed_["payment_state"] == "reversed"
    row = tx_row(services, tx["reference"])
    assert (row["state"], row["payment"], row["message"]) == (
        "canceled", "canceled", "the invoice was reversed",
    )  # fmt: skip
    assert balance(app, "guest_receivable") == Decimal("0.00")
    assert_ledger_consistent(app)


def test_the_embedded_default_changes_and_reverses_a_guest_invoice(
    make_embedded_app: Callable[..., Flask],
) -> None:
    """SQLite: a draft's lines replaced (PATCH deletes the old ones), posted, a provider payment
    started, and the invoice reversed: its transaction cancelled, a numbered credit note, the
    ledger back to nothing owed (review inv, finding 9)."""
    from modules.marketplace.models import AccountMove, AccountMoveLine
    from modules.payment.models import PaymentTransaction

    app = make_embedded_app()
    client = app.test_client()
    email = "staff@example.test"
    with app.app_context():
        user = create_user(email, role="staff", password=PASSWORD, name="Staff")
        user_id, user_uuid = user.id, user.uuid
    staff = Caller(email, user_uuid, user_id, login(client, email).get_json()["access_token"])
    invoices = f"{MARKETPLACE}/invoices"
    made = ok(client.post(invoices, json={**INVOICE, "lines": INVOICE["lines"] * 3},
                          headers=staff.headers), 201)  # fmt: skip
    changed = ok(client.patch(f"{invoices}/{made['id']}", headers=staff.headers, json={
        "lines": [{"description": "Delivery", "quantity": "1", "price_unit": "75000.00",
                   "tax_percent": "0"}],
    }))  # fmt: skip
    assert [line["name"] for line in changed["lines"]] == ["Delivery"]
    assert changed["amount_total"] == "75000.00"
    with app.app_context():
        stored = Session().scalars(select(AccountMoveLine.name)).all()
        Session.remove()
    assert stored == ["Delivery"]

    done = ok(client.post(f"{invoices}/{made['id']}/post", headers=staff.headers))
    tx = ok(client.post(API, json={"invoice": done["id"], "provider": "demo"},
                        headers=staff.headers), 201)  # fmt: skip
    assert tx["state"] == "pending"
    reversed_ = ok(client.post(f"{invoices}/{done['id']}/reverse", headers=staff.headers))
    assert (reversed_["payment_state"], reversed_["amount_residual"]) == ("reversed", "0.00")
    with app.app_context():
        states = Session().execute(select(PaymentTransaction.state)).scalars().all()
        names = set(Session().scalars(select(AccountMove.name)))
        Session.remove()
    assert states == ["canceled"]
    assert names == {done["number"], done["number"].replace("INV/", "RINV/")}
    assert balance(app, "guest_receivable") == Decimal("0.00")
    assert_ledger_consistent(app)
