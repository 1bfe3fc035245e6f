"""Payment methods: a small interface so card or e-wallet providers can join later.

A method checks a payment before it is registered and says whether it needs a reference.
Both methods here register the payment ``in_process``; staff confirm it once the money is seen
in the bank account or the till.

Modules that take money through providers (``payment``) add their methods with
:func:`register_method` in ``load(hooks)``: those get a clearing account in the ledger but are
not offered to ``POST /orders``'s ``payment.method`` (a provider payment starts from its
provider, see :class:`OrderCheckout`).

A method that holds the payer's own money on the ledger (the customer's wallet) names that
holder account's purpose (``holder_purpose``): its payments are drawn straight from it at
capture, its refunds go straight back to it, and a refund of any other payment may choose it
as the destination (:class:`HeldMethod`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from app.errors import Invalid

if TYPE_CHECKING:
    from app.security import Principal

    from .models import Payment, Refund


class PaymentMethod(Protocol):
    code: str
    label: str
    #: The payer's ledger holder account purpose the money comes from and goes back to, or
    #: None: the money waits in the method's clearing account (``clearing_<code>``).
    holder_purpose: str | None

    def check(self, amount: Decimal, currency: str, reference: str | None) -> None:
        """Raise :class:`Invalid` if this method cannot take the payment."""
        ...


class HeldMethod(PaymentMethod, Protocol):
    """A method whose money is the payer's own on the ledger (``holder_purpose`` is set)."""

    holder_purpose: str

    def open_for(self, customer_id: int, currency: str) -> None:
        """In the caller's transaction, before money is credited to the customer's account of
        ``holder_purpose`` in ``currency``: make what holds it (the wallet) if it is missing."""
        ...


@dataclass(frozen=True)
class BankTransfer:
    code: str = "bank_transfer"
    label: str = "Bank transfer"
    holder_purpose: str | None = None

    def check(self, amount: Decimal, currency: str, reference: str | None) -> None:
        pass  # the transfer's reference is optional: staff match it when it arrives


@dataclass(frozen=True)
class Cash:
    code: str = "cash"
    label: str = "Cash"
    holder_purpose: str | None = None

    def check(self, amount: Decimal, currency: str, reference: str | None) -> None:
        if currency != "IDR":
            raise Invalid(
                "cash is taken in rupiah only",
                errors={"payment.method": "cash needs an IDR order"},
            )


#: The methods ``POST /orders`` offers.
METHODS: dict[str, PaymentMethod] = {method.code: method for method in (BankTransfer(), Cash())}
#: Methods other modules registered (provider payments): offered through their providers only.
REGISTERED: dict[str, PaymentMethod] = {}


def register_method(method: PaymentMethod) -> None:
    """Add a provider's method (from a module's ``load``; the same method twice is harmless)."""
    known = METHODS.get(method.code) or REGISTERED.get(method.code)
    if known is not None and known != method:
        raise ValueError(f"two payment methods are called {method.code!r}")
    if method.code not in METHODS:
        REGISTERED[method.code] = method


def all_methods() -> dict[str, PaymentMethod]:
    """Every method a payment may have: the orders' own and the registered ones."""
    return {**METHODS, **REGISTERED}


def held_methods() -> dict[str, HeldMethod]:
    """The methods holding the payer's own money: where a refund may be sent instead."""
    return {
        code: method  # type: ignore[misc]
        for code, method in all_methods().items()
        if method.holder_purpose is not None
    }


def payment_method(code: str, *, registered: bool = False) -> PaymentMethod:
    """The method ``code``; ``registered`` also accepts the methods of provider modules."""
    methods = all_methods() if registered else METHODS
    try:
        return methods[code]
    except KeyError:
        raise Invalid(
            f"unknown payment method {code!r}",
            errors={"payment.method": f"one of {', '.join(sorted(methods))}"},
        ) from None


class OrderCheckout(Protocol):
    """What ``POST /orders`` with ``payment.provider`` calls, filled by the ``payment`` module
    (the marketplace does not depend on it)."""

    def method_for(self, provider: str, currency: str) -> str:
        """The payment method of ``provider`` for an order in ``currency``, or raise
        :class:`Invalid` if that provider cannot take it."""
        ...

    def start(self, actor: Principal, payment: Payment, options: dict[str, Any]) -> dict[str, Any]:
        """In the order's transaction, after its payment is written: start the provider
        transaction for ``payment``; returns what the answer shows of it."""
        ...

    def after_placing(self, placed: dict[str, Any]) -> dict[str, Any] | None:
        """After the order committed, in transactions of its own: finish the payment of a
        provider that settles at once (the wallet; it could not in the order's transaction,
        which posts the invoice). The transaction (``start``'s answer) as it is now, or None
        when there was nothing to do."""
        ...

    def refund_created(self, refund: Refund) -> None:
        """In the refund's transaction, for a refund going back through its payment's method:
        if a provider took the payment and sends refunds back itself, have it do so (after the
        commit; :func:`modules.marketplace.refunds.provider_refunded` records it)."""
        ...

    def holder_refund_refused(self, payment: Payment) -> str | None:
        """Why a refund of ``payment`` may not go to money the customer holds (their wallet)
        instead of back through its method, or None: a provider's payment made by someone
        who is not the customer (a payment link's guest) goes back to whoever paid."""
        ...

    def order_cancelling(self, order_id: int) -> None:
        """In the cancel's transaction, before the order's row lock (provider transactions are
        locked before their order): give up the order's provider transactions still in
        flight, so a late capture meets a canceled transaction."""
        ...

    def invoice_reversing(self, invoice_id: int) -> None:
        """As :meth:`order_cancelling`, for a standalone invoice being reversed (before its
        row lock)."""
        ...

    def payments_in_flight(self, payment_ids: Sequence[int]) -> list[int]:
        """Of these accounting payments (in process; the caller holds their invoice's lock,
        after :meth:`order_cancelling` or :meth:`invoice_reversing`), those a provider
        transaction still in flight (pending or processing) pays: started meanwhile, as those
        hooks cancelled every earlier one. Reads only (a transaction is never locked after its
        invoice)."""
        ...


_CHECKOUT: list[OrderCheckout] = []


def set_order_checkout(checkout: OrderCheckout) -> None:
    """Let orders pay through providers (called by the ``payment`` module's ``load``)."""
    _CHECKOUT[:] = [checkout]


def loaded_order_checkout() -> OrderCheckout | None:
    """The provider module's hooks, or None when no such module is loaded."""
    return _CHECKOUT[0] if _CHECKOUT else None


def order_checkout() -> OrderCheckout:
    if not _CHECKOUT:
        raise Invalid(
            "no payment provider module is loaded",
            errors={"payment.provider": "not available; use payment.method"},
        )
    return _CHECKOUT[0]
