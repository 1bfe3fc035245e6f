"""``/pay/demo/<transaction>``: the demo gateway's hosted checkout page.

Plain server-rendered HTML, no script, no CDN, every value escaped, a strict
Content-Security-Policy (the page's own stylesheet by hash, forms posting to this page only),
as ``app/landing.py``. The transaction's random public id is the page's secret, as a real
gateway's session id is. Post/redirect/get: the choice is queued for the gateway's notifier, then
the page shows the transaction's state.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from html import escape

from flask import Blueprint, Flask, Response, redirect, request, url_for

from app.db import read_only, transaction, utcnow
from app.errors import NotFound

from . import demo
from .config import public_url
from .models import PaymentTransaction
from .providers import get_provider, production, provider_secrets
from .services import demo_checkout_transaction

blp = Blueprint("payment_checkout", __name__, url_prefix="/pay/demo")

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:30rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.5;color:#222}fieldset{margin:1rem 0}label{display:block}"
    "button{font-size:1rem;padding:.4rem 1.2rem}.note{color:#555}"
)
SAVE_CARD = '<label><input type="checkbox" name="save_card" value="1"> Save this card</label>'
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def install(app: Flask, _settings: object) -> None:
    app.register_blueprint(blp)


def _page(title: str, body: str, status: int = 200) -> Response:
    html = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>{body}</body></html>"
    )
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _not_found() -> Response:
    return _page("Checkout not found", "<p>This checkout does not exist.</p>", 404)


@blp.get("/<uuid:tx_id>")
@read_only(use_replica=False)  # the payer comes straight from the transaction's creation
def page(tx_id: uuid.UUID) -> Response:
    """The checkout: the amount, the outcome to simulate, and the card to save."""
    try:
        tx = demo_checkout_transaction(tx_id)
    except NotFound:
        return _not_found()
    if tx.provider.code != demo.CODE or production():
        return _not_found()
    purpose = (
        f"for invoice {escape(tx.invoice.name or '')}"
        if tx.invoice is not None
        else "to top up your wallet"
    )
    summary = (
        f"<p>Pay <strong>{escape(str(tx.amount))} {escape(tx.currency)}</strong> {purpose} "
        f"(transaction {escape(tx.reference or '')}).</p>"
    )
    refused = _refusal(tx, summary, choosing=False)
    if refused is not None:
        return refused
    form = (
        f'<form method="post" action="{escape(url_for(".choose", tx_id=tx.uuid))}">'
        "<fieldset><legend>Outcome to simulate</legend>"
        '<label><input type="radio" name="outcome" value="success" checked> Success</label>'
        '<label><input type="radio" name="outcome" value="failure"> Failure</label>'
        '<label><input type="radio" name="outcome" value="pending_then_success"> '
        "Pending, then success</label></fieldset>"
        "<fieldset><legend>Card (a test number)</legend>"
        '<label>Number <input name="card_number" value="4242424242424242" inputmode="numeric" '
        'autocomplete="off" maxlength="19"></label>'
        '<label>Expiry month <input name="exp_month" value="12" size="2"></label>'
        '<label>Expiry year <input name="exp_year" value="2030" size="4"></label>'
        # A guest (a payment link's payer) is not the customer, and a payer without an account
        # has nowhere to keep a card: no card is saved for either.
        + ("" if tx.guest or tx.customer_id is None else SAVE_CARD)
        + '</fieldset><button type="submit">Pay</button></form>'
    )
    return _page("Demo gateway", summary + form)


@blp.post("/<uuid:tx_id>")
def choose(tx_id: uuid.UUID) -> Response:
    """The payer's choice: queue the gateway's signed notifications, then show the page."""
    with read_only(use_replica=False):
        try:
            tx = demo_checkout_transaction(tx_id)
        except NotFound:
            return _not_found()
    if tx.provider.code != demo.CODE or production():
        return _not_found()
    outcome = request.form.get("outcome", "")
    if outcome not in demo.OUTCOMES:
        return _page("Demo gateway", "<p>Choose an outcome.</p>", 422)
    refused = _refusal(tx, "", choosing=True)
    if refused is not None:
        return refused
    card = None
    if request.form.get("save_card") and outcome != "failure" and not tx.guest:
        card = _card()
        if card is None:
            return _page(
                "Demo gateway",
                "<p>The card number (12 to 19 digits) or its expiry is not valid.</p>",
                422,
            )
    with transaction():
        secret = provider_secrets(get_provider(demo.CODE)).get("webhook_secret", "")
    payloads = demo.outcome_notifications(tx, outcome, card, secret)
    # Not from the request's Host (a forged one would send signed notifications anywhere).
    notify_url = public_url("payments.ProviderNotify", code=demo.CODE)
    demo.queue_notifications(notify_url, payloads)
    return redirect(return_url(tx) or url_for(".page", tx_id=tx.uuid), code=303)


def return_url(tx: PaymentTransaction) -> str | None:
    """Where the payer goes back once they have chosen, when the payment was started from one
    of Lapak's own pages: a path on this site only (never elsewhere, whatever the row holds)."""
    url = (tx.action or {}).get("return_url")
    if isinstance(url, str) and url.startswith("/") and not url.startswith(("//", "/\\")):
        return url
    return None


def _refusal(tx: PaymentTransaction, summary: str, *, choosing: bool) -> Response | None:
    """No form and no payment for a transaction past its expiry (410) or no longer pending
    (its state shown): Lapak has given it up (409) or the gateway has it already (the page
    shows its progress; choosing again is a 409)."""
    back = return_url(tx)
    back_link = f'<p><a href="{escape(back)}">Back to the payment page</a></p>' if back else ""
    if tx.state != "pending":
        given_up = choosing or tx.state in ("canceled", "failed")
        return _page(
            "Demo gateway",
            summary + f"<p>This payment is <strong>{escape(tx.state)}</strong>: it cannot be "
            "paid here any more.</p>"
            '<p class="note">The gateway notifies Lapak in the background; the status follows.'
            "</p>" + back_link,
            409 if given_up else 200,
        )
    if tx.expires_at <= utcnow():
        return _page(
            "Demo gateway",
            summary + "<p>This checkout has <strong>expired</strong>: nothing was charged. "
            "Start a new payment from your order.</p>" + back_link,
            410,
        )
    return None


def _card() -> demo.Card | None:
    number = request.form.get("card_number", "").replace(" ", "")
    try:
        month = int(request.form.get("exp_month", ""))
        year = int(request.form.get("exp_year", ""))
    except ValueError:
        return None
    if not number.isdigit() or not 12 <= len(number) <= 19 or not 1 <= month <= 12:
        return None
    if not 2000 <= year <= 2100:
        return None
    return demo.Card(number, month, year)
