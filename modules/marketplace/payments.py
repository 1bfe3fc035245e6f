"""Payment methods: a small interface so card or e-wallet providers can join later.

A method checks a payment before it is registered and says whether it needs a reference.
Both methods here register the payment ``in_process``; staff confirm it once the money is seen
in the bank account or the till.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from app.errors import Invalid


class PaymentMethod(Protocol):
    code: str
    label: str

    def check(self, amount: Decimal, currency: str, reference: str | None) -> None:
        """Raise :class:`Invalid` if this method cannot take the payment."""
        ...


@dataclass(frozen=True)
class BankTransfer:
    code: str = "bank_transfer"
    label: str = "Bank transfer"

    def check(self, amount: Decimal, currency: str, reference: str | None) -> None:
        pass  # the transfer's reference is optional: staff match it when it arrives


@dataclass(frozen=True)
class Cash:
    code: str = "cash"
    label: str = "Cash"

    def check(self, amount: Decimal, currency: str, reference: str | None) -> None:
        if currency != "IDR":
            raise Invalid(
                "cash is taken in rupiah only",
                errors={"payment.method": "cash needs an IDR order"},
            )


METHODS: dict[str, PaymentMethod] = {method.code: method for method in (BankTransfer(), Cash())}


def payment_method(code: str) -> PaymentMethod:
    try:
        return METHODS[code]
    except KeyError:
        raise Invalid(
            f"unknown payment method {code!r}",
            errors={"payment.method": f"one of {', '.join(sorted(METHODS))}"},
        ) from None
