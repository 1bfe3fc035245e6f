"""Topping a wallet up through a payment provider.

:func:`top_up` starts a ``top_up`` provider transaction (no invoice) for the customer's wallet
in a currency, opening the wallet on the first top-up; the payer then does what its ``action``
says (the demo gateway's checkout page, a bank transfer staff confirm). When the provider
reports success, the payment module's one transition function calls :func:`settle`, in its
transaction and under the transaction's row lock: ``CREDIT_ADD`` moves the amount from the
provider's clearing account to the customer's wallet, exactly once (nonce: the transaction).

Refused, with nothing written: an amount outside the currency's limits (422
``top-up-limits``), a frozen wallet (409 ``wallet-frozen``), the wallet provider itself (422).
A wallet frozen after the top-up started still receives it: the provider took the money.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.db import transaction
from app.errors import Invalid, PermissionDenied
from app.events import emit
from app.security import Principal
from modules.ledger.operations import Widening
from modules.ledger.posting import Leg, Posting, post
from modules.marketplace import idempotency
from modules.marketplace import services as marketplace
from modules.marketplace.config import marketplace_settings
from modules.marketplace.idempotency import IdempotentRequest, Replay
from modules.marketplace.postings import clearing, purposes
from modules.payment import services as payments
from modules.payment.adapters import adapter_for
from modules.payment.models import PaymentTransaction

from .config import wallet_settings
from .services import WalletFrozen, credit_sign_up, ensure_wallet

KIND = "top_up"


class TopUpLimits(Invalid):
    code = "top-up-limits"
    title = "The top-up is outside the allowed amounts"


@dataclass(frozen=True)
class TopUpRequest:
    provider: str
    amount: Decimal
    currency: str


def top_up(
    actor: Principal,
    request: TopUpRequest,
    idempotent: IdempotentRequest | None,
    render: Any,
) -> tuple[int, dict[str, Any]]:
    """Start topping the actor's wallet up; 201 and the rendered transaction, or the first
    answer for a repeated ``Idempotency-Key``."""
    if not actor.has_role("customer"):
        raise PermissionDenied("customers top up their own wallets")
    with marketplace.refused_by_database(), transaction():
        if idempotent is not None:
            claimed = idempotency.claim(idempotent, marketplace_settings().idempotency_keep_hours)
            if isinstance(claimed, Replay):
                return claimed.status_code, claimed.body
        _check_limits(request.amount, request.currency)
        wallet = ensure_wallet(actor.user_id, request.currency)
        if wallet.state == "frozen":
            raise WalletFrozen("a frozen wallet takes no top-up")
        tx = payments.start_top_up(
            actor,
            request.provider,
            payments.TopUp(actor.user_id, request.amount, request.currency),
        )
        # The first top-up of a wallet opened by a refund (or by this top-up) brings the
        # sign-up credit it would have had when opened: nothing else posts here.
        credit_sign_up(wallet, actor.user_uuid, actor.user_id)
        body = render(wallet, tx)
        if idempotent is not None:
            idempotency.complete(claimed, 201, body)
    return 201, body


def _check_limits(amount: Decimal, currency: str) -> None:
    limits = wallet_settings().top_up_limits.get(currency)
    if limits is None:
        raise TopUpLimits(
            f"this marketplace takes no top-ups in {currency}",
            errors={"currency": f"one of {', '.join(sorted(wallet_settings().top_up_limits))}"},
        )
    low, high = limits
    if not low <= amount <= high:
        raise TopUpLimits(
            f"a {currency} top-up is {low} to {high}",
            errors={"amount": f"{low} to {high}"},
            minimum=str(low),
            maximum=str(high),
        )


def settle(tx: PaymentTransaction) -> None:
    """The provider took the money: credit it to the payer's wallet (``CREDIT_ADD``)."""
    wallet = ensure_wallet(tx.customer_id, tx.currency)
    post(
        Posting(
            "CREDIT_ADD",
            f"top-up:{tx.uuid}",
            [
                Leg(clearing(_method_of(tx)), tx.currency, debit=tx.amount),
                Leg("wallet", tx.currency, credit=tx.amount, holder_id=tx.customer_id),
            ],
            reference=f"payment-transaction:{tx.uuid}",
            memo=f"Top-up {tx.reference}",
            actor_id=None,
        )
    )
    emit(
        "wallet.topped_up",
        {"wallet": wallet.uuid, "transaction": tx.uuid, "reference": tx.reference,
         "amount": tx.amount, "currency": tx.currency},
    )  # fmt: skip


def _method_of(tx: PaymentTransaction) -> str:
    return adapter_for(tx.provider.code).method.code


def widenings() -> tuple[Widening, ...]:
    """CREDIT_ADD may take a top-up's money from any provider's clearing account (called at
    setup, once every module has registered its methods)."""
    return (Widening("CREDIT_ADD", debit=frozenset(p.code for p in purposes())),)
