"""``lapak demo``: the history's orders paid through the demo gateway (``hooks.demo_history``,
see :mod:`app.demo`).

At the even moments of the history a customer orders and pays on the gateway's page; what they
chose there reaches Lapak as the gateway's notifications do, through
:func:`.services.process_notification` (the one entry point of every provider report; only the
HTTP hop and its signature, checked before it, are left out). Most payments succeed; a card is
declined and paid again later, another declined order is cancelled by its customer, a checkout
is abandoned and expires, one payment is first ``processing``, and one order is refunded in full
through the gateway and then cancelled. What the periodic jobs would have done meanwhile
(expiring checkouts) is done at each moment, by the same services.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from app.db import Session, transaction
from app.demo import HISTORY_DAYS, DemoMoment
from app.errors import DomainError
from modules.marketplace import refunds
from modules.marketplace import services as marketplace
from modules.marketplace.demo import NO_PRODUCT, demo_lines, demo_products, placed_ids
from modules.marketplace.refunds import RefundRequest
from modules.marketplace.services import OrderRequest, PaymentRequest
from modules.user.demo import DEMO_CUSTOMER_EMAILS, DEMO_STAFF_EMAIL, acting_as

from . import demo, services
from .models import PaymentTransaction
from .providers import usable

#: How the provider references of the history's transactions begin.
HISTORY_MARK = "demo-history-"
#: What the payer chooses on the gateway's page for the order of a moment (others: success);
#: None: they leave the page, and the checkout expires.
CHOICES: dict[int, str | None] = {
    6: "failure",
    12: "pending_then_success",
    20: "failure",
    30: None,
    36: "failure",
}
#: (declined at, paid again at) and (declined at, cancelled by the customer at).
PAID_AGAIN = (6, 8)
CANCELLED = (20, 22)
#: (paid at, refunded in full and cancelled by staff at).
REFUNDED = (16, 24)
DECLINED = "declined by the card's issuer: insufficient funds"
REFUND_REASON = "the customer sent the whole order back"


def _checkout_context() -> Any:
    """A request context for the gateway's hosted page address, put in each transaction's
    ``action`` (under ``LAPAK_PUBLIC_URL`` when set). The history reports each outcome itself,
    or leaves the checkout to expire: nobody opens these pages."""
    base = current_app.extensions.get("payment.public_url") or "http://127.0.0.1:8000"
    return current_app.test_request_context(base_url=base)


class GatewaySales:
    """This module's part of the history."""

    def __init__(self) -> None:
        with transaction():
            self.customers = [acting_as(email) for email in DEMO_CUSTOMER_EMAILS]
            self.staff = acting_as(DEMO_STAFF_EMAIL)
            self.products = bool(demo_products())
            try:
                usable(demo.CODE, "IDR")
                self.gateway = True
            except DomainError:
                self.gateway = False  # disabled by staff: no history through it
        self.wanted = (
            self.gateway and self.products and self.staff is not None and None not in self.customers
        )
        self.chance = random.Random("lapak-demo-payment")  # noqa: S311 - demo data
        self.orders: dict[int, dict[str, Any]] = {}
        self.counts = dict.fromkeys(("paid", "declined", "expired", "refunded"), 0)

    def activity(self) -> list[str]:
        with transaction():
            made = Session().scalar(select(func.count()).select_from(PaymentTransaction))
        return [f"{made} payment transaction{'s' if made != 1 else ''}"] if made else []

    def step(self, moment: DemoMoment) -> None:
        index = moment.index
        # What the periodic job does: checkouts left past their expiry are canceled.
        self.counts["expired"] += services.expire_transactions()
        if index == PAID_AGAIN[1] and PAID_AGAIN[0] in self.orders:
            self._pay_again(self.orders[PAID_AGAIN[0]])
        if index == CANCELLED[1] and CANCELLED[0] in self.orders:
            placed = self.orders[CANCELLED[0]]
            marketplace.cancel_order(placed["customer"], placed["order"])
        if index == REFUNDED[1] and REFUNDED[0] in self.orders:
            self._refund_and_cancel(self.orders[REFUNDED[0]])
        if index > 0 and index % 2 == 0:
            self._order(index)

    def _order(self, index: int) -> None:
        customer = self.chance.choice(self.customers)
        assert customer is not None
        lines = demo_lines(self.chance)
        if not lines:  # staff deactivated every demo product meanwhile
            return
        request = OrderRequest(lines=lines, payment=PaymentRequest(provider=demo.CODE))
        with _checkout_context():
            _, placed = marketplace.place_order(customer, request, None, placed_ids)
        placed["customer"] = customer
        self.orders[index] = placed
        choice = CHOICES.get(index, "success")
        if choice is not None:
            self._report(uuid.UUID(placed["transaction"]["id"]), choice)

    def _pay_again(self, placed: dict[str, Any]) -> None:
        request = services.PayRequest(invoice=placed["invoice"], provider=demo.CODE)
        with _checkout_context():
            _, started = services.pay_invoice(
                placed["customer"], request, None, lambda tx: {"id": tx.uuid}
            )
        self._report(started["id"], "success")

    def _refund_and_cancel(self, placed: dict[str, Any]) -> None:
        assert self.staff is not None
        request = RefundRequest(reason=REFUND_REASON)
        _, made = refunds.create_refund(
            self.staff, placed["payment"], request, None, lambda refund: {"refund": refund.uuid}
        )
        # The job the refund queued, now: the gateway sends the money back.
        services.send_refund(made["refund"])
        marketplace.cancel_order(self.staff, placed["order"])
        self.counts["refunded"] += 1

    def _report(self, tx_uuid: uuid.UUID, choice: str) -> None:
        """The gateway's notifications for the payer's ``choice``, as it sends them."""
        with transaction():
            tx = services.get_transaction_by_uuid(tx_uuid)
            payloads = demo.outcome_notifications(tx, choice, None, "")
        for payload in payloads:
            payload["provider_reference"] = HISTORY_MARK + payload["provider_reference"]
            if payload["state"] == "failed":
                payload["message"] = DECLINED
            services.process_notification(demo.CODE, payload)
        self.counts["paid" if choice != "failure" else "declined"] += 1

    def summary(self) -> list[str]:
        if not self.products:
            return [NO_PRODUCT.format(paid="through the demo gateway")]
        if not self.wanted:
            return [
                "Demo orders paid through the demo gateway: left out (the gateway is disabled "
                "or the demo users are missing)."
            ]
        counts = self.counts
        return [
            f"Demo orders paid through the demo gateway: {len(self.orders)} over the last "
            f"{HISTORY_DAYS} days ({counts['paid']} payments succeeded, {counts['declined']} "
            f"declined, {counts['expired']} checkout expired, {counts['refunded']} refunded in "
            "full and cancelled)."
        ]


def start_history() -> GatewaySales:
    return GatewaySales()
