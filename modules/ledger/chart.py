"""The chart of accounts: which purposes exist, and the account each leg of a posting lands on.

Accounts are made on first use: a posting names a purpose, a currency and (for a holder purpose)
the holder, and :func:`account_code` gives the one account that triple maps to. Platform
purposes have one account per currency; holder purposes one per holder and currency, and a
holder account may never go below zero.

Modules add purposes (a payment method's clearing account, a payout clearing account) with
:func:`modules.ledger.extend` in their ``load(hooks)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import ACCOUNT_KINDS


@dataclass(frozen=True)
class Purpose:
    code: str
    name: str
    kind: str
    #: Whose accounts these are: ``None`` for the platform's own, else the holder's role
    #: (``customer``, ``seller``), for documentation and the API's filters.
    holder: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ACCOUNT_KINDS:
            raise ValueError(
                f"purpose {self.code!r}: kind {self.kind!r} is not one of {ACCOUNT_KINDS}"
            )
        if (
            not self.code
            or not self.code.replace("_", "").isalnum()
            or self.code != self.code.lower()
        ):
            raise ValueError(f"purpose code {self.code!r}: lower-case letters, digits, underscores")

    @property
    def held(self) -> bool:
        return self.holder is not None


#: The purposes the ledger itself owns (PAYMENTS.md §2).
CORE_PURPOSES = (
    # Holders' accounts: never below zero.
    Purpose("receivable", "Customer receivable", "asset", holder="customer"),
    Purpose("wallet", "Customer wallet", "liability", holder="customer"),
    Purpose("seller_pending", "Seller balance on hold", "liability", holder="seller"),
    Purpose("seller_available", "Seller balance available", "liability", holder="seller"),
    Purpose("seller_receivable", "Owed by the seller", "asset", holder="seller"),
    # The platform's accounts.
    Purpose("sales_clearing", "Sales awaiting payment", "liability"),
    Purpose("tax_payable", "PPN payable", "liability"),
    Purpose("sales_income", "Sales income (the platform's own products)", "income"),
    Purpose("commission_income", "Commission income", "income"),
    Purpose("refund_expense", "Refunds not recovered from sellers", "expense"),
    Purpose("promotion_expense", "Sign-up and reward credits", "expense"),
    Purpose("credit_income", "Credits spent", "income"),
    Purpose("manual_clearing", "Money received or paid by staff by hand", "asset"),
    Purpose("adjustment", "Adjustments (corrections by staff)", "equity"),
)


def account_code(purpose: Purpose, currency: str, holder_id: int | None) -> str:
    if purpose.held:
        if holder_id is None:
            raise ValueError(f"an account for {purpose.code!r} needs a holder")
        return f"{purpose.code}:{currency}:{holder_id}"
    if holder_id is not None:
        raise ValueError(f"{purpose.code!r} is a platform account: it has no holder")
    return f"{purpose.code}:{currency}"


def account_name(purpose: Purpose, currency: str) -> str:
    return f"{purpose.name} ({currency})"
