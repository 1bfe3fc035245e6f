"""The wallet as a payment provider: paying an invoice from the customer's wallet settles at
once, and refunds may go back into it.

- :class:`WalletMethod` is the accounting payment method ``wallet``: it holds the customer's own
  money (``holder_purpose`` ``wallet``), so the marketplace draws a payment straight from the
  customer's wallet account at capture (one ``PAYMENT_CAPTURE``: DR wallet, CR receivable, the
  sellers' shares released) and sends a refund straight back to it.
- :class:`WalletAdapter` is the ``wallet`` provider, which ``settles_at_once``: starting a
  transaction checks the wallet (it exists, it is not frozen, it holds enough) under its row
  lock, then settling moves the transaction to ``success`` through the one transition function,
  which confirms the payment. The ledger checks the balance again under the account's lock: a
  payment the wallet cannot cover is a 422 ``insufficient-balance`` and the whole request is
  rolled back.

Row locks: the provider transaction's, the order's and the invoice's (through the marketplace),
the wallet's, then the ledger's accounts: concurrent payments from one wallet queue on the
wallet's row. Only the wallet's owner pays from it (not staff on their behalf).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select

from app.db import DriverStatement, Session, held_locks
from app.errors import Invalid, PermissionDenied
from modules.ledger.chart import account_code
from modules.ledger.models import Account
from modules.ledger.posting import InsufficientBalance, Posted, posted_here
from modules.ledger.registry import registry
from modules.payment.adapters import Notification, Start
from modules.payment.transitions import transition

from .models import Wallet

if TYPE_CHECKING:
    from modules.payment.models import PaymentProvider, PaymentTransaction

CODE = "wallet"


class NoWallet(Invalid):
    code = "no-wallet"
    title = "The customer has no wallet in this currency"


@dataclass(frozen=True)
class WalletMethod:
    code: str = CODE
    label: str = "Wallet"
    holder_purpose: str = "wallet"

    def check(self, amount: Decimal, currency: str, reference: str | None) -> None:
        pass

    def open_for(self, customer_id: int, currency: str) -> None:
        from .services import ensure_wallet

        ensure_wallet(customer_id, currency)


class WalletAdapter:
    code = CODE
    name = "Wallet"
    method = WalletMethod()
    setting_names = ()
    secret_names = ()
    #: Settled when it starts (an order's, right after the order commits); one left pending by
    #: a failure there is canceled by the expiry job after this.
    expiry = timedelta(minutes=15)
    supports_tokens = False
    sandbox = False
    settles_at_once = True
    #: Its refunds go straight back to the wallet, with the refund's own posting.
    refunds_itself = False

    def defaults(self, production: bool) -> dict[str, Any]:
        return {"state": "enabled", "currencies": ["IDR", "USD"], "settings": {}}

    def check_state(self, state: str, production: bool) -> None:
        pass

    def initiate(
        self, provider: PaymentProvider, tx: PaymentTransaction, start: Start
    ) -> dict[str, Any]:
        """Check the wallet can pay (its owner asks, it exists, is active, holds enough now),
        under the wallet's row lock; :meth:`settle` then pays (the ledger checks the balance
        again under the account's lock)."""
        if tx.created_by_id != tx.customer_id:
            raise PermissionDenied("only the customer pays from their wallet")
        wallet = _wallet(tx.customer_id, tx.currency, lock=True)
        balance = balance_of(wallet)
        if balance < tx.amount:
            raise InsufficientBalance(
                f"the wallet holds {balance} {tx.currency}: less than {tx.amount}",
                errors={"amount": f"at most {balance}"},
                balance=str(balance),
            )
        return _action(wallet, balance)

    def settle(self, provider: PaymentProvider, tx: PaymentTransaction) -> dict[str, Any]:
        """Pay now: the transaction succeeds and the capture draws the wallet (the ledger
        checks the balance again under the account's lock)."""
        wallet = _wallet(tx.customer_id, tx.currency, lock=True)
        transition(tx, "success", "paid from the wallet", provider=True)
        return _action(wallet, balance_of(wallet, posted_here()))

    def handle_notification(self, provider: PaymentProvider, data: dict[str, Any]) -> Notification:
        raise Invalid("the wallet settles at once: it sends no notifications")

    def refund(
        self, provider: PaymentProvider, tx: PaymentTransaction, amount: Decimal
    ) -> str | None:
        return None  # the refund's own posting credits the wallet


def _wallet(customer_id: int, currency: str, *, lock: bool) -> Wallet:
    from .services import WalletFrozen

    held, key = held_locks(), ("wallet", customer_id, currency)
    if key in held:
        return held[key]  # locked by this transaction and checked: as it is
    # No autoflush: the new transaction's reference and action go with its state, in one UPDATE.
    statement = _WALLET_LOCKED if lock else _WALLET
    params = {"customer_id": customer_id, "currency": currency}
    wallet = Session().scalars(statement, params).first()
    if wallet is None:
        raise NoWallet(
            f"there is no {currency} wallet to pay from: open one and top it up",
            errors={"provider": f"no {currency} wallet"},
        )
    if wallet.state == "frozen":
        raise WalletFrozen("a frozen wallet pays nothing")
    if lock:
        held[key] = wallet
    return wallet


#: Built once (on every wallet payment's path).
_WALLET = (
    select(Wallet)
    .where(Wallet.customer_id == bindparam("customer_id"), Wallet.currency == bindparam("currency"))
    .execution_options(autoflush=False)
)
_WALLET_LOCKED = _WALLET.with_for_update().execution_options(populate_existing=True)


def _action(wallet: Wallet, balance: Decimal) -> dict[str, Any]:
    return {
        "type": "wallet",
        "wallet": str(wallet.uuid),
        "balance": str(balance),
        "currency": wallet.currency,
    }


def balance_of(wallet: Wallet, posted: Posted | None = None) -> Decimal:
    """The wallet's balance as the ledger holds it now (zero before its first posting): from
    ``posted``'s entries when this transaction's posting moved it, else read."""
    code = account_code(registry().purpose("wallet"), wallet.currency, wallet.customer_id)
    if posted is not None:
        for entry in posted.entries:
            if entry.account_code == code:
                return entry.balance_after
    rows = _BALANCE.rows(Session().connection(), {"code": code})
    return Decimal("0.00") if not rows else rows[0][0]


_BALANCE = DriverStatement(select(Account.balance).where(Account.code == bindparam("code")))
