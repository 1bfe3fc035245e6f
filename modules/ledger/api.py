"""``/api/v1/ledger``: post by hand (staff), read accounts, statements, transactions, and the
trial balance.

Posting runs on the primary; every read runs inside ``@read_only()`` on a caught-up replica
(read-your-writes through ``X-Lapak-LSN``). Customers and sellers read only the accounts they
hold; anything else is 404.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, jsonify, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from app.db import read_only
from app.http import API_PREFIX, Page
from app.openapi import link, response_links
from app.security import authenticate, requires

from . import services
from .schemas import (
    AccountPageSchema,
    AccountQuerySchema,
    AccountSchema,
    LedgerProblemSchema,
    StatementPageSchema,
    StatementQuerySchema,
    TransactionInSchema,
    TransactionSchema,
    TrialBalanceQuerySchema,
    TrialBalanceSchema,
)

blp = Blueprint(
    "ledger",
    __name__,
    description="The double-entry ledger: accounts, balances, statements, transactions and "
    "the trial balance; staff post adjustments and credits by hand.",
)

STAFF = services.STAFF_ROLES
BASE = f"{API_PREFIX}/ledger"
# One instance: a schema instance builds its nested schemas once, not per request.
_TRANSACTION = TransactionSchema()
#: A posting the example can make on any ledger: between two of the platform's accounts.
EXAMPLE_ADJUSTMENT = {
    "operation": "ADJUSTMENT",
    "nonce": "example-adjustment-1",
    "currency": "IDR",
    "memo": "Cash counted in the till",
    "legs": [
        {"purpose": "manual_clearing", "debit": "1000.00"},
        {"purpose": "adjustment", "credit": "1000.00"},
    ],
}


def _account_links(id_at: str) -> dict[str, dict[str, Any]]:
    return {
        "GetAccount": link(
            f"{BASE}/accounts/{{account_id}}", "get", "The account", account_id=id_at
        ),
        "GetStatement": link(
            f"{BASE}/accounts/{{account_id}}/entries", "get", "Its entries", account_id=id_at
        ),
    }


@blp.route("/transactions")
class Transactions(MethodView):
    @requires(*STAFF)
    @blp.arguments(TransactionInSchema, example=EXAMPLE_ADJUSTMENT)
    @blp.response(201, TransactionSchema)
    @blp.alt_response(
        200, schema=TransactionSchema, description="A replay: this nonce and body were posted"
    )
    @blp.alt_response(
        409,
        schema=LedgerProblemSchema,
        description="duplicate-nonce: the nonce was used with another body",
    )
    @blp.alt_response(
        422,
        schema=LedgerProblemSchema,
        description="The input is not valid (errors names each field), or invalid-operation, "
        "invalid-holder, insufficient-balance, value-not-storable",
    )
    @blp.alt_response(
        503,
        schema=LedgerProblemSchema,
        description="ledger-write-failed or database-unavailable: nothing was written; retry "
        "with the same nonce",
    )
    @response_links(
        blp,
        201,
        GetTransaction=link(
            f"{BASE}/transactions/{{transaction_id}}",
            "get",
            "The transaction",
            transaction_id="$response.body#/id",
        ),
        GetAccount=link(
            f"{BASE}/accounts/{{account_id}}",
            "get",
            "The first leg's account",
            account_id="$response.body#/entries/0/account",
        ),
    )
    def post(self, body: dict[str, Any]) -> Response:
        """Post a transaction by hand (staff)

        An operation marked manual: ``CREDIT_ADD``, ``CREDIT_SPEND``, ``SIGNUP_CREDIT`` and
        ``DAILY_REWARD`` take a ``holder`` (a customer) and an ``amount``; ``ADJUSTMENT`` takes
        explicit ``legs``. The nonce never expires: the same nonce and body answer 200 with
        the first transaction (``replayed: true``), another body 409 ``duplicate-nonce``.
        """
        legs = body["legs"]
        request = services.TransactionRequest(
            operation=body["operation"],
            nonce=body["nonce"],
            currency=body["currency"],
            memo=body["memo"],
            reference=body["reference"],
            holder=body["holder"],
            amount=body["amount"],
            legs=None if legs is None else [services.LegRequest(**leg) for leg in legs],
        )
        view = services.post_transaction(authenticate(), request)
        response = jsonify(_TRANSACTION.dump(view))
        response.status_code = 200 if view.replayed else 201
        response.headers["Location"] = url_for("ledger.TransactionItem", transaction_id=view.uuid)
        return response


@blp.route("/transactions/<uuid:transaction_id>")
class TransactionItem(MethodView):
    @requires(scope="ledger:read")
    @read_only()
    @blp.response(200, TransactionSchema)
    def get(self, transaction_id: uuid.UUID) -> services.TransactionView:
        """Show a transaction with its entries

        Customers and sellers see a transaction that touches one of their accounts; its other
        legs show only their purpose and amounts.
        """
        return services.get_transaction(authenticate(), transaction_id)


@blp.route("/accounts")
class Accounts(MethodView):
    @requires(scope="ledger:read")
    @read_only()
    @blp.arguments(AccountQuerySchema, location="query")
    @blp.response(200, AccountPageSchema)
    @response_links(blp, 200, **_account_links("$response.body#/items/0/id"))
    def get(self, args: dict[str, Any]) -> Page:
        """List accounts, oldest first

        Staff see every account; customers and sellers the accounts they hold.
        """
        filters = services.AccountFilter(
            holder=args["holder"], purpose=args["purpose"], currency=args["currency"]
        )
        return services.list_accounts(
            authenticate(), filters, limit=args["limit"], cursor=args["cursor"]
        )


@blp.route("/accounts/<uuid:account_id>")
class AccountItem(MethodView):
    @requires(scope="ledger:read")
    @read_only()
    @blp.response(200, AccountSchema)
    @response_links(
        blp,
        200,
        GetStatement=link(
            f"{BASE}/accounts/{{account_id}}/entries",
            "get",
            "Its entries",
            account_id="$request.path.account_id",
        ),
    )
    def get(self, account_id: uuid.UUID) -> services.AccountView:
        """Show an account and its balance"""
        return services.get_account(authenticate(), account_id)


@blp.route("/accounts/<uuid:account_id>/entries")
class AccountEntries(MethodView):
    @requires(scope="ledger:read")
    @read_only()
    @blp.arguments(StatementQuerySchema, location="query")
    @blp.response(200, StatementPageSchema)
    @response_links(
        blp,
        200,
        GetTransaction=link(
            f"{BASE}/transactions/{{transaction_id}}",
            "get",
            "The newest entry's transaction",
            transaction_id="$response.body#/items/0/transaction",
        ),
    )
    def get(self, args: dict[str, Any], account_id: uuid.UUID) -> Page:
        """An account's statement: its entries, newest first

        Each with its transaction, the debit or credit, and the running balance after it.
        """
        return services.statement(
            authenticate(), account_id, limit=args["limit"], cursor=args["cursor"]
        )


@blp.route("/trial-balance")
class TrialBalance(MethodView):
    @requires(*STAFF, scope="ledger:read")
    @read_only()
    @blp.arguments(TrialBalanceQuerySchema, location="query")
    @blp.response(200, TrialBalanceSchema)
    def get(self, args: dict[str, Any]) -> services.TrialBalance:
        """The trial balance at a moment (staff)

        Every account's balance from the entries of transactions created at or before ``at``
        (default: now), as a debit or a credit balance; per currency, debits equal credits.
        """
        return services.trial_balance(args["at"], args["currency"])
