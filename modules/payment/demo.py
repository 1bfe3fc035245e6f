"""The demo gateway: a provider that behaves like a real card gateway, as Odoo's
``payment_demo`` does, without any outside service.

- Starting a transaction answers a redirect to its hosted checkout page, served by Lapak
  (:mod:`.checkout`), where the payer picks the outcome (success, failure, or "pending, then
  success") and may save the card.
- The gateway then tells Lapak what happened the way a real one does: a background job POSTs
  signed notifications over HTTP to ``/api/v1/payments/providers/demo/notify`` (HMAC-SHA256 with
  the provider's ``webhook_secret``), retrying on network errors and 5xx answers.
- A saved card pays off-session: no page; the gateway notifies the success by the same job.

The card number typed on the page never leaves the gateway: Lapak gets a token, the brand, the
last four digits, the expiry, and the gateway's opaque fingerprint of the card.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets as token_source
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
from flask import url_for

from app.db import transaction
from app.errors import Invalid
from app.jobs import enqueue
from app.vault import get_vault

from .adapters import Notification, Start, TokenDetails
from .models import PaymentProvider, PaymentTransaction
from .providers import get_provider, provider_secrets
from .services import signature

log = logging.getLogger(__name__)

CODE = "demo"
#: Outcomes the payer can choose, and the states the gateway then reports, in order.
OUTCOMES = {
    "success": ("success",),
    "failure": ("failed",),
    "pending_then_success": ("processing", "success"),
}
STATES = ("processing", "success", "failed", "canceled")
#: Seconds between delivery attempts of one notification (then it gives up).
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
TIMEOUT_SECONDS = 10
#: Answers below 500 that are tried again (404: the transaction is not committed yet).
RETRIED_STATUSES = (404, 408, 425, 429)
#: What a saved card's part of a notification holds.
TOKEN_FIELDS = "token, fingerprint, brand, last4, exp_month, exp_year"  # noqa: S105


@dataclass(frozen=True)
class DemoMethod:
    code: str = CODE
    label: str = "Demo gateway"
    holder_purpose: str | None = None

    def check(self, amount: Decimal, currency: str, reference: str | None) -> None:
        pass


class DemoGateway:
    code = CODE
    name = "Demo gateway"
    method = DemoMethod()
    setting_names = ()
    secret_names = ("webhook_secret",)
    expiry = timedelta(hours=1)
    supports_tokens = True
    sandbox = True
    settles_at_once = False
    refunds_itself = True

    def defaults(self, production: bool) -> dict[str, Any]:
        return {
            "state": "disabled" if production else "test",
            "currencies": ["IDR", "USD"],
            "settings": {},
        }

    def check_state(self, state: str, production: bool) -> None:
        if state != "disabled" and production:
            raise Invalid(
                "the demo gateway never takes payments in production (it can only be disabled)",
                errors={"state": "disabled"},
            )

    def initiate(
        self, provider: PaymentProvider, tx: PaymentTransaction, start: Start
    ) -> dict[str, Any]:
        if start.provider_token is not None:
            # Off-session: the gateway charges the saved card and notifies, as a real one does.
            if start.notify_url is None:
                raise Invalid("an off-session payment needs the request's address")
            payloads = [_payload(tx, "success", _reference(), message="charged the saved card")]
            # Queued in the payment's transaction: Redis down is a 503 (Retry-After) that keeps
            # nothing, not a 201 whose charge never happens. The job may run before the commit:
            # it retries a 404 (the transaction not visible yet), as a real gateway retries.
            queue_notifications(start.notify_url, payloads)
            return {"type": "none", "detail": "the saved method is charged; no payer action"}
        action = {
            "type": "redirect",
            "url": url_for("payment_checkout.page", tx_id=tx.uuid, _external=True),
        }
        if start.return_url is not None:
            action["return_url"] = start.return_url  # where the page sends the payer back
        return action

    def handle_notification(self, provider: PaymentProvider, data: dict[str, Any]) -> Notification:
        errors: dict[str, str] = {}
        reference = data.get("reference")
        if not isinstance(reference, str) or not reference:
            errors["reference"] = "required"
        provider_reference = data.get("provider_reference")
        if provider_reference is not None and (
            not isinstance(provider_reference, str) or not 0 < len(provider_reference) <= 100
        ):
            errors["provider_reference"] = "1 to 100 characters"
        state = data.get("state")
        if state not in STATES:
            errors["state"] = f"one of {', '.join(STATES)}"
        try:
            amount = Decimal(str(data.get("amount")))
            if not amount.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            errors["amount"] = "a decimal string"
            amount = Decimal(0)
        currency = data.get("currency")
        if not isinstance(currency, str):
            errors["currency"] = "required"
        token = None
        if data.get("token") is not None:
            try:
                token = _token(data["token"])
            except (KeyError, TypeError, ValueError):
                errors["token"] = TOKEN_FIELDS
        if errors:
            raise Invalid("the notification is not valid", errors=errors)
        message = data.get("message")
        return Notification(
            reference=reference,
            provider_reference=provider_reference,
            amount=amount,
            currency=currency,
            state=state,
            message=message if isinstance(message, str) else None,
            token=token,
        )

    def refund(
        self, provider: PaymentProvider, tx: PaymentTransaction, amount: Decimal
    ) -> str | None:
        return f"demo_rf_{token_source.token_hex(8)}"


def _token(raw: dict[str, Any]) -> TokenDetails:
    last4 = str(raw["last4"])
    if len(last4) != 4 or not last4.isdigit():
        raise ValueError("last4")
    month, year = int(raw["exp_month"]), int(raw["exp_year"])
    if not 1 <= month <= 12:
        raise ValueError("exp_month")
    return TokenDetails(
        provider_token=str(raw["token"]),
        card_fingerprint=str(raw["fingerprint"]),
        brand=str(raw["brand"])[:20],
        last4=last4,
        exp_month=month,
        exp_year=year,
    )


def _reference() -> str:
    return f"demo_{token_source.token_hex(8)}"


def _payload(
    tx: PaymentTransaction,
    state: str,
    provider_reference: str,
    *,
    message: str | None = None,
    token: dict[str, Any] | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "reference": tx.reference,
        "provider_reference": provider_reference,
        "state": state,
        "amount": str(tx.amount),
        "currency": tx.currency,
    }
    if message:
        payload["message"] = message
    if token is not None:
        payload["token"] = token
    return payload


@dataclass(frozen=True)
class Card:
    number: str
    exp_month: int
    exp_year: int

    @property
    def brand(self) -> str:
        return {"4": "visa", "5": "mastercard", "3": "amex"}.get(self.number[:1], "card")


def outcome_notifications(
    tx: PaymentTransaction, outcome: str, card: Card | None, secret: str
) -> list[dict[str, Any]]:
    """What the gateway will report for the payer's choice on the hosted page."""
    reference = _reference()
    token = None
    if card is not None:
        token = {
            "token": f"demo_tok_{token_source.token_urlsafe(16)}",
            # The gateway's own opaque card fingerprint (as Stripe's): keyed, never the number.
            "fingerprint": hmac.new(
                secret.encode(), card.number.encode(), hashlib.sha256
            ).hexdigest(),
            "brand": card.brand,
            "last4": card.number[-4:],
            "exp_month": card.exp_month,
            "exp_year": card.exp_year,
        }
    payloads = []
    for state in OUTCOMES[outcome]:
        message = "the payer chose: " + outcome.replace("_", " ")
        payloads.append(
            _payload(tx, state, reference, message=message,
                     token=token if state == "success" else None)
        )  # fmt: skip
    return payloads


def queue_notifications(url: str, payloads: list[dict[str, Any]]) -> None:
    """Have the gateway's job deliver ``payloads`` to ``url``, in order, in the background.

    The payloads may carry a saved card's token: the job's arguments (kept in Redis, named in
    the worker's log lines) hold them sealed by the vault, never in clear.
    """
    enqueue(deliver_notification, url, get_vault().seal(json.dumps(payloads)))


def deliver_notification(url: str, sealed_payloads: str) -> int:
    """Job: POST each notification, signed, in order, to Lapak's notify endpoint.

    Retries a notification on a network error or a 5xx/404/408/425/429 answer (the delays of
    :data:`RETRY_DELAYS`; a 404: the transaction queued with it not committed yet); any other
    answer is final (a 409 for a transaction that expired
    meanwhile is logged). Returns how many were accepted (2xx).
    """
    with transaction():
        secret = provider_secrets(get_provider(CODE)).get("webhook_secret")
    if secret is None:
        log.warning("the demo gateway has no webhook_secret: notifications not sent")
        return 0
    accepted = 0
    for payload in json.loads(get_vault().unseal(sealed_payloads)):
        body = json.dumps(payload, separators=(",", ":")).encode()
        for attempt, delay in enumerate((0.0, *RETRY_DELAYS)):
            time.sleep(delay)
            status = _post(url, body, secret)
            if status is not None and 200 <= status < 300:
                accepted += 1
                break
            if status is not None and status < 500 and status not in RETRIED_STATUSES:
                log.warning("demo gateway: %s answered %s for %s; not retried",
                            url, status, payload["reference"])  # fmt: skip
                break
            log.info("demo gateway: attempt %d for %s failed (%s)",
                     attempt + 1, payload["reference"], status)  # fmt: skip
        else:
            log.warning("demo gateway: gave up notifying %s", payload["reference"])
    return accepted


def _post(url: str, body: bytes, secret: str) -> int | None:
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Lapak-Timestamp": timestamp,
        "X-Lapak-Signature": signature(secret, timestamp, body),
    }
    try:
        response = requests.post(
            url, data=body, headers=headers, timeout=TIMEOUT_SECONDS, allow_redirects=False
        )
    except requests.RequestException as error:
        log.info("demo gateway: %s unreachable (%s)", url, type(error).__name__)
        return None
    return response.status_code
