"""Operation types: the reason of every ledger transaction, and what it may touch.

Each operation says which account purposes its debit legs and its credit legs may land on,
and whether it may draw a holder account down (then the holder's balance is checked under its
row lock, and an operation that would take it below zero is refused with
``insufficient-balance``). An operation without that flag can only *add* to holders' accounts:
a leg that would lower one is an ``invalid-operation``.

The first four are the shared-ledger document's; the rest are Lapak's. Modules add theirs with
:func:`modules.ledger.extend` in ``load(hooks)``, without touching this file.

An operation staff may post through ``POST /api/v1/ledger/transactions`` is marked ``manual``;
an operation with a ``holder_purpose`` is posted there from a holder and an amount alone: the
holder's account is credited (or debited, for a spend) against the operation's platform
account.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Operation:
    code: str
    description: str
    #: Purposes a debit leg may land on, and a credit leg.
    debit: frozenset[str]
    credit: frozenset[str]
    #: May lower holder accounts (checked under their row locks).
    draws_down: bool = False
    #: Staff may post it by hand through the API.
    manual: bool = False
    #: For the simple form of the API (holder + amount): the holder's purpose, the platform
    #: purpose on the other side, and whether the holder is debited (a spend) or credited.
    holder_purpose: str | None = None
    counter_purpose: str | None = None
    holder_side: str = "credit"

    def __post_init__(self) -> None:
        if not self.code or self.code != self.code.upper():
            raise ValueError(f"operation code {self.code!r} must be upper case")
        if self.holder_side not in ("debit", "credit"):
            raise ValueError(f"{self.code}: holder_side is 'debit' or 'credit'")
        if (self.holder_purpose is None) != (self.counter_purpose is None):
            raise ValueError(f"{self.code}: holder_purpose and counter_purpose go together")


@dataclass(frozen=True)
class Widening:
    """A module lets an existing operation touch more purposes (its own accounts): the wallet
    lets ``CREDIT_ADD`` take a top-up's money from any provider's clearing account."""

    operation: str
    debit: frozenset[str] = frozenset()
    credit: frozenset[str] = frozenset()


def _op(code: str, description: str, debit: set[str], credit: set[str], **flags) -> Operation:  # type: ignore[no-untyped-def]
    return Operation(code, description, frozenset(debit), frozenset(credit), **flags)


CORE_OPERATIONS = (
    _op(
        "CREDIT_ADD",
        "Money added to a customer's wallet by staff (received by hand)",
        {"manual_clearing"},
        {"wallet"},
        manual=True,
        holder_purpose="wallet",
        counter_purpose="manual_clearing",
    ),
    _op(
        "CREDIT_SPEND",
        "A customer spends wallet credit",
        {"wallet"},
        {"credit_income"},
        draws_down=True,
        manual=True,
        holder_purpose="wallet",
        counter_purpose="credit_income",
        holder_side="debit",
    ),
    _op(
        "SIGNUP_CREDIT",
        "Credit given to a new customer",
        {"promotion_expense"},
        {"wallet"},
        manual=True,
        holder_purpose="wallet",
        counter_purpose="promotion_expense",
    ),
    _op(
        "DAILY_REWARD",
        "A daily reward credited to a customer",
        {"promotion_expense"},
        {"wallet"},
        manual=True,
        holder_purpose="wallet",
        counter_purpose="promotion_expense",
    ),
    _op(
        "ADJUSTMENT",
        "A correction by staff, between any accounts but income and expense",
        {"adjustment", "manual_clearing", "wallet", "seller_available", "seller_receivable"},
        {"adjustment", "manual_clearing", "wallet", "seller_available", "seller_receivable"},
        draws_down=True,
        manual=True,
    ),
)
