"""Provider adapters: what each kind of provider does, behind three verbs.

A module registers an adapter for a provider code in its ``load(hooks)`` with :func:`register`.
The service (:mod:`.services`) owns the pipeline; an adapter only fills in:

- ``initiate(provider, tx, start) -> action``: what the payer does next (bank details, a
  redirect to a hosted page, nothing for an off-session token payment);
- ``handle_notification(provider, data) -> Notification``: read a provider's (already
  signature-checked) notification into the reference, amounts and target state;
- ``refund(provider, tx, amount) -> str | None``: ask the provider to send money back; its
  reference, or None when staff send it by hand.

A provider that ``settles_at_once`` (the wallet) also has ``settle(provider, tx) -> action``: it
moves the just-started transaction to its final state in the same request (after ``initiate``
checked it can), and says what happened.

Every notification then goes through the one entry point, ``services.process_notification``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from app.errors import Invalid, NotFound
from modules.marketplace.payments import BankTransfer, PaymentMethod, register_method

if TYPE_CHECKING:
    from .models import PaymentProvider, PaymentTransaction


@dataclass(frozen=True)
class TokenDetails:
    """A method the provider saved for the payer: its token and the clear part only."""

    provider_token: str
    #: The provider's own opaque fingerprint of the card (stored only through the vault's HMAC).
    card_fingerprint: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class Notification:
    reference: str
    provider_reference: str | None
    amount: Decimal
    currency: str
    #: The transaction state the provider reports: processing, success, failed or canceled.
    state: str
    message: str | None = None
    token: TokenDetails | None = None


@dataclass(frozen=True)
class Start:
    """What starting a transaction knows beyond the transaction row."""

    #: Where the provider posts its notifications (absolute URL), when known.
    notify_url: str | None = None
    #: The saved method's provider token (unsealed), for an off-session payment.
    provider_token: str | None = None
    #: Where a hosted page sends the payer back once they have chosen: a path on Lapak, when the
    #: payment was started from a page of Lapak's own (a payment link's).
    return_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Adapter(Protocol):
    code: str
    name: str
    #: The accounting payment method of this provider's payments (and its ledger clearing).
    method: PaymentMethod
    #: Plain settings and secret settings it reads (the secrets only through the vault).
    setting_names: tuple[str, ...]
    secret_names: tuple[str, ...]
    #: How long a transaction waits for its money before the expiry job cancels it.
    expiry: timedelta
    supports_tokens: bool
    #: A sandbox (no real money): refused whatever its state when the app runs in production.
    sandbox: bool
    #: Pays in the same request (``settle``): nothing to wait for, no notification.
    settles_at_once: bool
    #: Sends refunds back itself (``refund`` answers its reference), from a job after the
    #: refund commits; otherwise staff send them and mark them done.
    refunds_itself: bool

    def defaults(self, production: bool) -> dict[str, Any]:
        """The new provider row's state, currencies and settings."""
        ...

    def check_state(self, state: str, production: bool) -> None:
        """Raise :class:`Invalid` if the provider may not be put in ``state``."""
        ...

    def initiate(
        self, provider: PaymentProvider, tx: PaymentTransaction, start: Start
    ) -> dict[str, Any]: ...

    def handle_notification(
        self, provider: PaymentProvider, data: dict[str, Any]
    ) -> Notification: ...

    def refund(
        self, provider: PaymentProvider, tx: PaymentTransaction, amount: Decimal
    ) -> str | None: ...


class InstantAdapter(Adapter, Protocol):
    """An adapter that ``settles_at_once``."""

    def settle(self, provider: PaymentProvider, tx: PaymentTransaction) -> dict[str, Any]:
        """In the caller's transaction, right after ``initiate``: move ``tx`` to its final
        state through the transition function; the payer's action (what happened)."""
        ...


_ADAPTERS: dict[str, Adapter] = {}


def register(adapter: Adapter) -> None:
    """Make ``adapter`` the one for its provider code (from a module's ``load``)."""
    known = _ADAPTERS.get(adapter.code)
    if known is not None and type(known) is not type(adapter):
        raise ValueError(f"two payment adapters for the provider code {adapter.code!r}")
    register_method(adapter.method)
    _ADAPTERS[adapter.code] = adapter


def adapter_for(code: str) -> Adapter:
    try:
        return _ADAPTERS[code]
    except KeyError:
        raise NotFound(f"there is no payment provider {code!r}") from None


def adapters() -> dict[str, Adapter]:
    return dict(_ADAPTERS)


class ManualBankTransfer:
    """The payer transfers the money to the platform's bank account; staff confirm it when it
    is seen (as Lapak did before providers). Providers never notify for it."""

    code = "bank_transfer"
    name = "Manual bank transfer"
    method: PaymentMethod = BankTransfer()
    setting_names = ("bank_name", "account_holder", "account_number", "instructions")
    secret_names = ()
    expiry = timedelta(days=3)
    supports_tokens = False
    sandbox = False
    settles_at_once = False
    refunds_itself = False

    def defaults(self, production: bool) -> dict[str, Any]:
        return {
            "state": "enabled",
            "currencies": ["IDR", "USD"],
            "settings": {
                "bank_name": "Bank Central Asia",
                "account_holder": "PT Lapak Nusantara",
                "account_number": "000-000-0000",
                "instructions": "Put the reference in the transfer's description.",
            },
        }

    def check_state(self, state: str, production: bool) -> None:
        pass

    def initiate(
        self, provider: PaymentProvider, tx: PaymentTransaction, start: Start
    ) -> dict[str, Any]:
        settings = provider.settings or {}
        return {
            "type": "bank_transfer",
            "bank_name": settings.get("bank_name"),
            "account_holder": settings.get("account_holder"),
            "account_number": settings.get("account_number"),
            "instructions": settings.get("instructions"),
            "reference": tx.reference,
            "amount": str(tx.amount),
            "currency": tx.currency,
        }

    def handle_notification(self, provider: PaymentProvider, data: dict[str, Any]) -> Notification:
        raise Invalid("manual bank transfers are confirmed by staff, not notified")

    def refund(
        self, provider: PaymentProvider, tx: PaymentTransaction, amount: Decimal
    ) -> str | None:
        return None  # staff transfer it back by hand
