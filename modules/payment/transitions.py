"""The one function that changes a provider transaction's state (Odoo's ``_update_state``).

``pending -> processing -> success | failed | canceled``. Each target names the states it may
come from; a transaction already in the target state is "already done"; any other move is
refused with 409 ``invalid-transition``.

Who asks decides what "already done" means: a provider callback repeats itself (the same
notification three times), so for it the same state is a logged no-op; staff or a customer
through the API asked for a change that cannot happen, so for them it is a 409 too.

The effects happen here, in the caller's transaction and under the transaction's row lock
(taken by the caller): a success confirms the accounting payment through the marketplace's
``paid`` path (its ledger postings included) and emits ``payment.succeeded`` once; a failure or
a cancellation gives the reserved amount back to the invoice (the invoice is as it was before
the attempt) and emits ``payment.failed`` / ``payment.canceled``. A transaction paying no
invoice (a wallet top-up) is settled on success by what the module owning its ``kind``
registered with :func:`register_settlement` (the wallet posts the credit).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from app.db import utcnow
from app.errors import Conflict
from app.events import emit
from modules.marketplace import services as marketplace

from .models import PaymentTransaction

log = logging.getLogger(__name__)

#: target -> the states it may come from.
ALLOWED_SOURCES: dict[str, tuple[str, ...]] = {
    "processing": ("pending",),
    "success": ("pending", "processing"),
    "failed": ("pending", "processing"),
    "canceled": ("pending", "processing"),
}
EVENTS = {
    "success": "payment.succeeded",
    "failed": "payment.failed",
    "canceled": "payment.canceled",
}


LATE_SUCCESS_MESSAGE = "captured after cancellation: refund it"

#: kind -> what the success of a transaction of that kind (paying no invoice) does.
_SETTLEMENTS: dict[str, Callable[[PaymentTransaction], None]] = {}


def register_settlement(kind: str, settle: Callable[[PaymentTransaction], None]) -> None:
    """Let a module settle successful transactions of ``kind`` (in their transaction, under
    their row lock: e.g. post the wallet credit of a top-up). From the module's ``load``."""
    known = _SETTLEMENTS.get(kind)
    if known is not None and known is not settle:
        raise ValueError(f"two settlements for the transaction kind {kind!r}")
    _SETTLEMENTS[kind] = settle


class InvalidTransition(Conflict):
    code = "invalid-transition"
    title = "The payment transaction cannot go to that state"


def transition(
    tx: PaymentTransaction, target: str, message: str | None = None, *, provider: bool
) -> bool:
    """Move ``tx`` (row-locked by the caller) to ``target``; True if it changed.

    ``provider``: the request is a provider's notification (same state = no-op) rather than a
    person's API call (same state = 409).
    """
    if target not in ALLOWED_SOURCES:
        raise InvalidTransition(f"{target!r} is not a state a transaction can be moved to")
    if tx.state == target:
        if provider:
            log.info("transaction %s is %s already; notification ignored", tx.reference, target)
            return False
        raise InvalidTransition(
            f"transaction {tx.reference} is {tx.state} already", state=tx.state, target=target
        )
    if tx.state not in ALLOWED_SOURCES[target]:
        log.warning("transaction %s: %s -> %s refused", tx.reference, tx.state, target)
        raise InvalidTransition(
            f"transaction {tx.reference} is {tx.state}: it cannot become {target}",
            state=tx.state,
            target=target,
        )
    payment = tx.account_payment
    if target in ("failed", "canceled") and payment is not None and payment.state == "paid":
        # Staff confirmed the accounting payment by hand (the money is in): nothing to give up.
        raise InvalidTransition(
            f"transaction {tx.reference}: its payment {payment.name} is confirmed already",
            state=tx.state,
            target=target,
        )
    tx.state = target
    tx.last_state_change = utcnow()
    if message is not None:
        tx.state_message = message[:500]
    # Written by the next flush (the capture's, or the commit's): one UPDATE of the row.
    # The event first: a success posts to the ledger, whose locks are best held the shortest.
    # So the outbox has payment.succeeded before the marketplace's payment.confirmed and
    # invoice.paid (payment.failed/canceled before payment.cancelled, a top-up's before
    # wallet.topped_up): all in one commit; nothing promises an order between modules' events.
    if target in EVENTS:
        emit(EVENTS[target], event_payload(tx))
    if target == "success" and tx.kind == "invoice":
        marketplace.confirm_provider_payment(payment)
    elif target == "success":
        _SETTLEMENTS[tx.kind](tx)
    elif target in ("failed", "canceled") and tx.account_payment_id is not None:
        marketplace.release_payment(tx.account_payment_id, f"transaction {target}")
    return True


def event_payload(tx: PaymentTransaction) -> dict[str, Any]:
    return {
        "transaction": tx.uuid,
        "reference": tx.reference,
        "provider": tx.provider.code,
        "state": tx.state,
        "kind": tx.kind,
        "invoice": tx.invoice.uuid if tx.invoice is not None else None,
        "customer": tx.customer.uuid if tx.customer is not None else None,
        "payment": tx.account_payment.uuid if tx.account_payment is not None else None,
        "amount": tx.amount,
        "fee": tx.fee,
        "net": tx.net,
        "currency": tx.currency,
    }
