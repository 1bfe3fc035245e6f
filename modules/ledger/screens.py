"""The ledger's web screens for admins, at ``/web/ledger/``; they only read.

- The accounts (filters holder, purpose, currency; keyset pages).
- An account's statement: its entries newest first with the running balance after each.
- The trial balance at a moment, per currency, its debit total beside its credit total.

Each calls the service its REST endpoint calls, from a caught-up replica, and shows the
figures as the endpoint's schema writes them (``-12.50``, never a float).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, render_template, request

from app.db import read_only
from app.errors import BadRequest, Invalid
from app.screens import invalid_fields, load_form, next_page_url
from app.security import authenticate, requires

from . import services
from .registry import registry
from .schemas import (
    AccountQuerySchema,
    AccountSchema,
    StatementLineSchema,
    StatementQuerySchema,
    TrialBalanceQuerySchema,
    TrialBalanceSchema,
)

screens = Blueprint(
    "ledger_screens",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

#: The ledger shows every holder's money: admins only.
ADMIN = "admin"
LABELS = {
    "holder": "Holder",
    "purpose": "Purpose",
    "currency": "Currency",
    "at": "At",
    "cursor": "Page",
}
_ACCOUNT = AccountSchema()
_LINE = StatementLineSchema()
_TRIAL_BALANCE = TrialBalanceSchema()


@screens.get("/")
@requires(ADMIN, browser=True)
@read_only()
def accounts() -> tuple[str, int]:
    """The accounts, oldest first, filtered."""
    chosen = {name: request.args.get(name, "") for name in ("holder", "purpose", "currency")}
    purposes = sorted(registry().purposes.values(), key=lambda purpose: purpose.code)
    try:
        args = load_form(AccountQuerySchema(), request.args, LABELS)
        filters = services.AccountFilter(
            holder=args["holder"], purpose=args["purpose"], currency=args["currency"]
        )
        page = services.list_accounts(
            authenticate(), filters, limit=args["limit"], cursor=args["cursor"]
        )
    except (Invalid, BadRequest) as refused:
        return _page("ledger/accounts.html", 422, chosen=chosen, purposes=purposes,
                     error=str(refused), invalid=invalid_fields(refused))  # fmt: skip
    return _page(
        "ledger/accounts.html",
        chosen=chosen,
        purposes=purposes,
        accounts=[_ACCOUNT.dump(account) for account in page.items],
        next_url=next_page_url(page.next_cursor),
    )


@screens.get("/accounts/<uuid:account_id>")
@requires(ADMIN, browser=True)
@read_only()
def account(account_id: uuid.UUID) -> tuple[str, int]:
    """An account and its statement, newest entry first, with the balance after each."""
    actor = authenticate()
    shown = _ACCOUNT.dump(services.get_account(actor, account_id))
    try:
        args = load_form(StatementQuerySchema(), request.args, LABELS)
        page = services.statement(actor, account_id, limit=args["limit"], cursor=args["cursor"])
    except (Invalid, BadRequest) as refused:
        return _page("ledger/account.html", 422, account=shown, error=str(refused))
    return _page(
        "ledger/account.html",
        account=shown,
        lines=[_LINE.dump(line) for line in page.items],
        next_url=next_page_url(page.next_cursor),
    )


@screens.get("/trial-balance")
@requires(ADMIN, browser=True)
@read_only()
def trial_balance() -> tuple[str, int]:
    """Every account's balance at a moment (default now); per currency, debits equal credits."""
    chosen = {name: request.args.get(name, "") for name in ("at", "currency")}
    values = request.args.to_dict()
    if values.get("at"):
        values["at"] = _with_seconds(values["at"])
    try:
        args = load_form(TrialBalanceQuerySchema(), values, LABELS)
    except Invalid as refused:
        return _page("ledger/trial_balance.html", 422, chosen=chosen, error=str(refused),
                     invalid=invalid_fields(refused))  # fmt: skip
    shown = _TRIAL_BALANCE.dump(services.trial_balance(args["at"], args["currency"]))
    return _page("ledger/trial_balance.html", chosen=chosen, trial=shown)


def _with_seconds(moment: str) -> str:
    """A browser's ``datetime-local`` (``2026-11-29T10:00``) as the RFC 3339 the API takes."""
    moment = moment.strip()
    if len(moment) == len("2026-11-29T10:00"):
        return f"{moment}:00"
    return moment


def _page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(template, **context), status
