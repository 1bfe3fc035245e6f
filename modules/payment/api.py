"""``/api/v1/payments``: pay invoices through providers, read transactions, configure providers,
manage saved methods, and receive providers' notifications.

Writes run on the primary; listings and single reads inside ``@read_only()`` on a caught-up
replica. ``POST /payments`` takes an ``Idempotency-Key`` as orders do. The notify endpoint has no
bearer token: a provider proves itself by signing the body (``X-Lapak-Timestamp``,
``X-Lapak-Signature: v1=<hex HMAC-SHA256 of "{timestamp}.{body}">`` with its secret).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from flask import Response, jsonify, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from app.db import read_only
from app.dumping import fast_dump
from app.errors import BadRequest
from app.http import Page, ProblemSchema
from app.security import authenticate, requires
from modules.marketplace import idempotency

from . import providers, services, tokens
from .models import PaymentProvider, PaymentTransaction
from .schemas import (
    PayInSchema,
    ProviderPatchSchema,
    ProviderSchema,
    ProviderTransactionPageSchema,
    ProviderTransactionQuerySchema,
    ProviderTransactionSchema,
    SavedMethodListSchema,
    SavedMethodQuerySchema,
)

blp = Blueprint(
    "payments",
    __name__,
    description="Payments through providers (manual bank transfer, demo gateway): provider "
    "transactions with the payer's next action, provider notifications, saved methods.",
)

STAFF = ("staff", "admin")
_TRANSACTION = ProviderTransactionSchema()
_DUMP_TRANSACTION = fast_dump(_TRANSACTION)  # the pay path's answer (see app.dumping)
_TRANSACTION_QUERY = ProviderTransactionQuerySchema()
IDEMPOTENCY_PARAMETER = {
    "in": "header",
    "name": "Idempotency-Key",
    "description": "Optional. Retrying with the same key and body returns the first answer; "
    "the same key with another body is 422.",
    "schema": {"type": "string", "maxLength": idempotency.MAX_KEY_LENGTH},
}
SIGNATURE_PARAMETERS = [
    {"in": "header", "name": "X-Lapak-Timestamp", "required": True,
     "description": "Unix seconds; within 300 s of Lapak's clock", "schema": {"type": "string"}},
    {"in": "header", "name": "X-Lapak-Signature", "required": True,
     "description": 'v1=<hex HMAC-SHA256 of "{timestamp}.{raw body}"> with the provider\'s '
     "webhook_secret", "schema": {"type": "string"}},
]  # fmt: skip


@blp.route("")
class Transactions(MethodView):
    @requires(scope="payments:read")
    @read_only()
    @blp.arguments(_TRANSACTION_QUERY, location="query")
    @blp.response(200, ProviderTransactionPageSchema)
    def get(self, args: dict[str, Any]) -> Page:
        """List provider transactions, newest first

        Staff see all, customers their own, sellers those of invoices with their products.
        """
        names = ("state", "provider", "customer", "since", "before", "amount_min", "amount_max")
        filters = services.TransactionFilter(**{name: args[name] for name in names})
        return services.list_transactions(
            authenticate(), filters, limit=args["limit"], cursor=args["cursor"]
        )

    @requires("customer", *STAFF, scope="payments:write")
    @blp.arguments(PayInSchema)
    @blp.response(201, ProviderTransactionSchema)
    @blp.doc(parameters=[IDEMPOTENCY_PARAMETER])
    @blp.alt_response(404, schema=ProblemSchema, description="No such invoice or provider")
    @blp.alt_response(409, schema=ProblemSchema, description="The invoice takes no payment")
    def post(self, body: dict[str, Any]) -> Response:
        """Pay an invoice through a provider

        Registers the accounting payment (``in_process``) and starts the provider transaction
        (``pending``); the answer's ``action`` says what the payer does next (bank details, a
        redirect to the gateway's page, nothing for a saved method).
        """
        actor = authenticate()
        idempotent = idempotency.request_for(
            actor.user_id, "payments", request.headers.get("Idempotency-Key"),
            request.get_json(),
        )  # fmt: skip
        status, answer = services.pay_invoice(
            actor, services.PayRequest(**body), idempotent, _DUMP_TRANSACTION
        )
        response = jsonify(answer)
        response.status_code = status
        response.headers["Location"] = url_for("payments.TransactionItem", tx_id=answer["id"])
        return response


@blp.route("/<uuid:tx_id>")
class TransactionItem(MethodView):
    @requires(scope="payments:read")
    @read_only()
    @blp.response(200, ProviderTransactionSchema)
    def get(self, tx_id: uuid.UUID) -> PaymentTransaction:
        """Show a provider transaction"""
        return services.get_transaction(authenticate(), tx_id)


@blp.route("/<uuid:tx_id>/confirm")
class TransactionConfirm(MethodView):
    @requires(*STAFF, scope="payments:write")
    @blp.response(200, ProviderTransactionSchema)
    @blp.alt_response(409, schema=ProblemSchema, description="Not pending or processing")
    def post(self, tx_id: uuid.UUID) -> PaymentTransaction:
        """Staff: the money of a manual transfer is in (the transaction succeeds)"""
        return services.confirm_transaction(authenticate(), tx_id)


@blp.route("/<uuid:tx_id>/cancel")
class TransactionCancel(MethodView):
    @requires("customer", *STAFF, scope="payments:write")
    @blp.response(200, ProviderTransactionSchema)
    @blp.alt_response(409, schema=ProblemSchema, description="Not pending or processing")
    def post(self, tx_id: uuid.UUID) -> PaymentTransaction:
        """Give up a transaction that has not succeeded: the amount is due again"""
        return services.cancel_transaction(authenticate(), tx_id)


@blp.route("/providers")
class Providers(MethodView):
    @requires(*STAFF)
    @blp.response(200, ProviderSchema(many=True))
    def get(self) -> list[PaymentProvider]:
        """List the payment providers and their configuration (never secret values)"""
        return providers.list_providers()


@blp.route("/providers/<string:code>")
class ProviderItem(MethodView):
    @requires("admin")
    @blp.arguments(ProviderPatchSchema, required=False)
    @blp.response(200, ProviderSchema)
    def patch(self, body: dict[str, Any], code: str) -> PaymentProvider:
        """Admin: enable, disable, currencies, fees, settings, secrets (write-only)"""
        return providers.update_provider(code, providers.ProviderChange(**body))


@blp.route("/providers/<string:code>/notify")
class ProviderNotify(MethodView):
    @blp.doc(
        parameters=SIGNATURE_PARAMETERS,
        requestBody={"content": {"application/json": {"schema": {"type": "object"}}}},
    )
    @blp.response(200, ProviderTransactionSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="Bad or missing signature")
    @blp.alt_response(404, schema=ProblemSchema, description="Unknown provider or transaction")
    @blp.alt_response(409, schema=ProblemSchema, description="A transition not allowed")
    def post(self, code: str) -> PaymentTransaction:
        """A provider's notification (signed): the transaction's new state

        Idempotent: the same notification again changes nothing and answers the transaction.
        """
        raw = request.get_data(cache=True)
        services.verify_signature(
            code, raw, request.headers.get("X-Lapak-Timestamp"),
            request.headers.get("X-Lapak-Signature"),
        )  # fmt: skip
        try:
            data = json.loads(raw)
        except ValueError:
            raise BadRequest("the notification is not JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("the notification is a JSON object")
        return services.process_notification(code, data)


@blp.route("/tokens")
class Tokens(MethodView):
    @requires("customer", *STAFF)
    @read_only()
    @blp.arguments(SavedMethodQuerySchema, location="query")
    @blp.response(200, SavedMethodListSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List saved methods (masked): yours, or staff a customer's"""
        return {"items": tokens.list_tokens(authenticate(), args["customer"])}


@blp.route("/tokens/<uuid:token_id>")
class TokenItem(MethodView):
    @requires("customer", *STAFF)
    @blp.response(204)
    def delete(self, token_id: uuid.UUID) -> None:
        """Forget a saved method"""
        tokens.delete_token(authenticate(), token_id)
