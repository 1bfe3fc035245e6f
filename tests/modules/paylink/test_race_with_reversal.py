"""A payer opens the link and starts a payment while staff reverse its invoice (or the customer
cancels its order): the reversal gives up the provider transactions in flight before it takes
the invoice's lock (transactions are locked before their invoice, never after), so a payment
started in between is seen under the lock and the reversal is refused (409, try again), instead
of cancelling that payment and leaving its transaction open to take the payer's money for a
reversed invoice. The retry cancels it (review inv, finding 4).

The window is made certain, not hoped for: the payment module's hooks are wrapped so that the
payer's whole request runs, on a thread of its own, to its commit, right after the hook cancelled
the transactions in flight and before the reversal asks for the invoice's lock. Real PostgreSQL
connections, real row locks, nothing of the database replaced.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from modules.marketplace.payments import loaded_order_checkout, set_order_checkout
from tests.modules.conftest import Caller
from tests.modules.payment.conftest import assert_ledger_consistent
from tests.servers import Services

from .conftest import Invoice, made, ok, pay, problem, sql

MARKETPLACE = "/api/v1/marketplace"


class PayerInTheWindow:
    """The payment module's checkout hooks, with ``payer()`` run to its end on another thread
    right after the transactions in flight were cancelled (once)."""

    def __init__(self, real: Any, payer: Callable[[], TestResponse]) -> None:
        self.real = real
        self.payer: Callable[[], TestResponse] | None = payer
        self.answers: list[TestResponse] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def invoice_reversing(self, invoice_id: int) -> None:
        self.real.invoice_reversing(invoice_id)
        self._pay()

    def order_cancelling(self, order_id: int) -> None:
        self.real.order_cancelling(order_id)
        self._pay()

    def _pay(self) -> None:
        payer, self.payer = self.payer, None
        if payer is None:
            return
        thread = threading.Thread(target=lambda: self.answers.append(payer()))
        thread.start()
        thread.join(60)
        assert not thread.is_alive(), "the payer waited on a lock the reversal holds"


@contextmanager
def payer_in_the_window(payer: Callable[[], TestResponse]) -> Iterator[PayerInTheWindow]:
    real = loaded_order_checkout()
    window = PayerInTheWindow(real, payer)
    set_order_checkout(window)
    try:
        yield window
    finally:
        set_order_checkout(real)


def guest_transactions(services: Services) -> list[tuple[str, str, str | None]]:
    """Each guest transaction's state, its payment's state and its message."""
    return sql(
        services,
        "SELECT t.state, p.state, t.state_message FROM payment_transaction t "
        "JOIN marketplace_payment p ON p.id = t.account_payment_id WHERE t.guest ORDER BY t.id",
    )


def assert_refused_to_retry(response: TestResponse) -> None:
    body = problem(response, 409, "payment-started-meanwhile")
    assert "try again" in body["detail"]


def test_a_payment_started_while_an_invoice_is_reversed_is_cancelled_by_the_retry(
    app: Flask,
    client: FlaskClient,
    issuer: Caller,
    own_invoice: Invoice,
    services: Services,
) -> None:
    link = made(client, issuer, own_invoice.id)
    reverse = f"{MARKETPLACE}/invoices/{own_invoice.id}/reverse"

    with payer_in_the_window(lambda: pay(app.test_client(), link["path"])) as window:
        refused = client.post(reverse, headers=issuer.headers)
    (started,) = window.answers
    assert started.status_code == 303
    assert "/pay/demo/" in started.headers["Location"]  # the payer is at the gateway
    assert_refused_to_retry(refused)
    # Nothing of the reversal was written; the payer's payment waits at the gateway.
    assert guest_transactions(services) == [("pending", "in_process", None)]
    ((payment_state, credit_notes),) = sql(
        services,
        "SELECT payment_state, (SELECT count(*) FROM marketplace_account_move "
        "WHERE move_type = 'out_refund') FROM marketplace_account_move WHERE uuid = %s",
        own_invoice.id,
    )
    assert (payment_state, credit_notes) == ("in_payment", 0)

    reversed_ = ok(client.post(reverse, headers=issuer.headers))
    assert reversed_["payment_state"] == "reversed"
    assert guest_transactions(services) == [("canceled", "canceled", "the invoice was reversed")]
    assert_ledger_consistent(app)


def test_a_payment_started_while_an_order_is_cancelled_is_cancelled_by_the_retry(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    customer: Caller,
    invoice: Invoice,
    services: Services,
) -> None:
    link = made(client, staff, invoice.id)
    ((order,),) = sql(
        services,
        "SELECT o.uuid FROM marketplace_sale_order o JOIN marketplace_account_move m "
        "ON m.order_id = o.id WHERE m.uuid = %s",
        invoice.id,
    )
    cancel = f"{MARKETPLACE}/orders/{order}/cancel"

    with payer_in_the_window(lambda: pay(app.test_client(), link["path"])) as window:
        refused = client.post(cancel, headers=customer.headers)
    (started,) = window.answers
    assert started.status_code == 303
    assert_refused_to_retry(refused)
    assert guest_transactions(services) == [("pending", "in_process", None)]
    assert sql(services, "SELECT state FROM marketplace_sale_order") == [("sale",)]

    assert ok(client.post(cancel, headers=customer.headers))["state"] == "cancel"
    assert guest_transactions(services) == [("canceled", "canceled", "the order was cancelled")]
    assert_ledger_consistent(app)


def test_without_a_payer_in_between_the_reversal_cancels_what_is_in_flight_at_once(
    app: Flask, client: FlaskClient, issuer: Caller, own_invoice: Invoice, services: Services
) -> None:
    """The usual order of things: the payment started before the reversal is cancelled by it."""
    link = made(client, issuer, own_invoice.id)
    assert pay(app.test_client(), link["path"]).status_code == 303
    reversed_ = ok(client.post(f"{MARKETPLACE}/invoices/{own_invoice.id}/reverse",
                               headers=issuer.headers))  # fmt: skip
    assert reversed_["payment_state"] == "reversed"
    assert guest_transactions(services) == [("canceled", "canceled", "the invoice was reversed")]
    # And a payer arriving after it finds nothing to pay.
    assert app.test_client().get(link["path"]).status_code == 404
