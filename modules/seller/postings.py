"""What the seller module posts to the ledger (PAYMENTS.md §2): a share's hold released, and a
settlement's money on its way to the seller's bank.

- ``HOLD_RELEASE`` (nonce: the credited ``seller_pending`` entry's id): DR ``seller_pending``,
  CR ``seller_available``.
- ``PAYOUT`` (nonce: the settlement): DR ``seller_available``, CR ``payout_clearing``.
- ``PAYOUT_COMPLETE`` (the settlement): DR ``payout_clearing``, CR ``payout_bank`` (the money
  left the platform's bank account).
- ``PAYOUT_REVERSAL`` (the settlement): DR ``payout_clearing``, CR ``seller_available`` (a
  failed or canceled payout gives the money back), after paying back what the seller owes
  (``seller_receivable``, left by a refund meanwhile), as a captured share does.

Holder accounts never go below zero: the first two draw a seller's account down and the ledger
refuses (``insufficient-balance``) under the account's lock what it does not hold.
"""

from __future__ import annotations

from decimal import Decimal

from app.registry import ModuleHooks
from modules.ledger import extend
from modules.ledger.chart import Purpose
from modules.ledger.operations import Operation
from modules.ledger.posting import Leg, Posting

from .models import Settlement

PURPOSES = (
    Purpose("payout_clearing", "Seller payouts on their way to the bank", "liability"),
    Purpose("payout_bank", "Paid out to sellers' bank accounts", "asset"),
)


def _op(code: str, description: str, debit: str, credit: str, draws_down: bool) -> Operation:
    return Operation(
        code, description, frozenset({debit}), frozenset({credit}), draws_down=draws_down
    )


OPERATIONS = (
    _op(
        "HOLD_RELEASE",
        "A seller's share held since the payment's confirmation becomes available",
        "seller_pending",
        "seller_available",
        draws_down=True,
    ),
    _op(
        "PAYOUT",
        "A seller's settlement takes their available balance to the payout clearing account",
        "seller_available",
        "payout_clearing",
        draws_down=True,
    ),
    _op(
        "PAYOUT_COMPLETE",
        "A settlement paid to the seller's bank account",
        "payout_clearing",
        "payout_bank",
        draws_down=False,
    ),
    Operation(
        "PAYOUT_REVERSAL",
        "A failed or canceled settlement gives the money back to the seller's available balance",
        frozenset({"payout_clearing"}),
        frozenset({"seller_receivable", "seller_available"}),
        # Crediting the receivable lowers it: never below zero, decided under its lock.
        draws_down=True,
    ),
)


def install(hooks: ModuleHooks) -> None:
    extend(hooks, purposes=PURPOSES, operations=OPERATIONS)


def _between(
    operation: str,
    nonce: str,
    debit: tuple[str, int | None],
    credit: tuple[str, int | None],
    amount: Decimal,
    currency: str,
    reference: str,
    memo: str,
    actor_id: int | None,
) -> Posting:
    return Posting(
        operation,
        nonce,
        (
            Leg(debit[0], currency, debit=amount, holder_id=debit[1]),
            Leg(credit[0], currency, credit=amount, holder_id=credit[1]),
        ),
        reference,
        memo,
        actor_id,
    )


def hold_release(entry_id: int, seller_id: int, amount: Decimal, currency: str) -> Posting:
    return _between(
        "HOLD_RELEASE",
        str(entry_id),
        ("seller_pending", seller_id),
        ("seller_available", seller_id),
        amount,
        currency,
        f"ledger-entry:{entry_id}",
        "hold over",
        None,
    )


def payout(settlement: Settlement, actor_id: int | None) -> Posting:
    return _between(
        "PAYOUT",
        str(settlement.uuid),
        ("seller_available", settlement.seller_id),
        ("payout_clearing", None),
        settlement.amount,
        settlement.currency,
        f"settlement:{settlement.uuid}",
        settlement.name,
        actor_id,
    )


def payout_complete(settlement: Settlement, actor_id: int | None) -> Posting:
    return _between(
        "PAYOUT_COMPLETE",
        str(settlement.uuid),
        ("payout_clearing", None),
        ("payout_bank", None),
        settlement.amount,
        settlement.currency,
        f"settlement:{settlement.uuid}",
        f"{settlement.name} paid",
        actor_id,
    )


def payout_reversal(settlement: Settlement, actor_id: int | None) -> Posting:
    amount, currency, seller_id = settlement.amount, settlement.currency, settlement.seller_id
    return Posting(
        "PAYOUT_REVERSAL",
        str(settlement.uuid),
        (
            Leg("payout_clearing", currency, debit=amount),
            Leg(
                "seller_receivable",
                currency,
                credit=amount,
                holder_id=seller_id,
                fallbacks=("seller_available",),
            ),
        ),
        f"settlement:{settlement.uuid}",
        f"{settlement.name} {settlement.state}",
        actor_id,
    )
