"""The floors of ``bench.payments``: Lapak's wallet payment written statement for statement with
psycopg.

Shared by the SQL floor (``bench.payments``: psycopg in the bench process, no HTTP) and the HTTP
floor (``bench.floor_app``'s ``POST /api/v1/payments``). One wallet payment is the statements of
:data:`PAYMENT_STEPS`, in that order, in one transaction, then COMMIT; ``bench.payments`` checks
them against the statements Lapak sends for a probe payment (kinds, order and text).

What they do, as ``modules.payment.services.pay_invoice`` with the ``wallet`` provider does: the
invoice as the customer sees it, the order and invoice rows locked, the invoice read under
them, the wallet provider, the PAY number (``nextval``), the invoice's payments, the payment
registered (``in_process``, one INSERT) and its ``payment.registered`` event, the provider
transaction (one INSERT, its id making the ``TX/`` reference), the wallet locked and its
balance checked; then the transaction's ``success``: its ``payment.succeeded`` event, and
``confirm_provider_payment``: the invoice's payments, the ``payment.confirmed`` and
``invoice.paid`` events, the invoice's lines (the sellers' split), the changes written before
the ledger's locks (the invoice's residual and ``paid`` state, the payment ``paid``, the
transaction's reference, state and first action: one UPDATE each), and the ledger's
``PAYMENT_CAPTURE`` (DR the customer's wallet, CR their receivable, CR sales income, DR sales
clearing: the four accounts and the chain head locked in one statement, then the transaction,
entries, balances and chain head written in one); last the transaction's ``action`` with the
wallet's balance after.

Only the shape the bench pays is taken (the floor refuses anything else: :class:`FloorRefused`):
an unpaid out_invoice paid in full from an IDR wallet that holds enough, products without a
seller (so the capture releases everything to sales income, no commission leg), a provider
without fees, every ledger account already open (the bench's probe payment opens sales income).
The fingerprint is ``modules.ledger.posting.Posting.fingerprint`` itself and the hash
``modules.ledger.chain``'s, so the floors' transactions chain with Lapak's and ``lapak ledger
verify`` checks both.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bench.floor import (
    COMMIT,
    CURRENCY,
    DEBIT_NORMAL,
    TIMEZONE,
    ZERO,
    FloorRefused,
    Step,
    ledger_lock_params,
    ledger_lock_sql,
    ledger_write_params,
    ledger_write_sql,
)
from modules.ledger.posting import Leg, Posting

Context = dict[str, Any]
PROVIDER = "wallet"
CAPTURE = "PAYMENT_CAPTURE"
#: The wallet adapter's ``expiry``: a wallet transaction is settled when it starts.
EXPIRY = timedelta(minutes=1)
SETTLED_MESSAGE = "paid from the wallet"

#: A customer sees the invoices of their orders, and the standalone ones addressed to them
#: once posted (``marketplace.services.visible_moves``).
SELECT_VISIBLE_INVOICE = (
    "SELECT marketplace_account_move.id, marketplace_account_move.order_id, "
    "marketplace_account_move.customer_id FROM marketplace_account_move WHERE "
    "marketplace_account_move.uuid = %(uuid)s::UUID AND (marketplace_account_move.order_id "
    "IN (SELECT marketplace_sale_order.id FROM marketplace_sale_order WHERE "
    "marketplace_sale_order.customer_id = %(viewer_id)s::INTEGER) OR "
    "marketplace_account_move.order_id IS NULL AND marketplace_account_move.customer_id = "
    "%(viewer_id)s::INTEGER AND marketplace_account_move.state = %(state_1)s::VARCHAR)"
)
SELECT_PROVIDER = (
    "SELECT payment_provider.id, payment_provider.code, payment_provider.name, "
    "payment_provider.state, payment_provider.currencies, payment_provider.fee_percent, "
    "payment_provider.fee_fixed, payment_provider.settings, "
    "payment_provider.created_at, payment_provider.updated_at FROM payment_provider WHERE "
    "payment_provider.code = %(code_1)s::VARCHAR"
)
LOCK_ORDER = (
    "SELECT marketplace_sale_order.id FROM marketplace_sale_order WHERE "
    "marketplace_sale_order.id = %(order_id)s::INTEGER FOR UPDATE"
)
LOCK_INVOICES = (
    "SELECT marketplace_account_move.id FROM marketplace_account_move WHERE "
    "marketplace_account_move.order_id = %(order_id)s::INTEGER ORDER BY "
    "marketplace_account_move.id FOR UPDATE"
)
SELECT_INVOICE = (
    "SELECT marketplace_account_move.id, marketplace_account_move.uuid, "
    "marketplace_account_move.name, marketplace_account_move.move_type, "
    "marketplace_account_move.state, marketplace_account_move.payment_state, "
    "marketplace_account_move.order_id, marketplace_account_move.customer_id, "
    "marketplace_account_move.payer_name, marketplace_account_move.payer_email, "
    "marketplace_account_move.issuer_id, marketplace_account_move.created_by_id, "
    "marketplace_account_move.memo, "
    "marketplace_account_move.currency, marketplace_account_move.invoice_date, "
    "marketplace_account_move.invoice_date_due, marketplace_account_move.amount_untaxed, "
    "marketplace_account_move.amount_tax, marketplace_account_move.amount_total, "
    "marketplace_account_move.amount_residual, "
    "marketplace_account_move.commission_percent, "
    "marketplace_account_move.reversed_entry_id, marketplace_account_move.created_at, "
    "user_account_1.id AS id_1, user_account_1.uuid AS uuid_1, user_account_1.email, "
    "user_account_1.email_key, user_account_1.name AS name_1, user_account_1.phone, "
    "user_account_1.role, user_account_1.active, user_account_1.password_hash, "
    "user_account_1.created_at AS created_at_1, user_account_1.updated_at FROM "
    "marketplace_account_move LEFT OUTER JOIN user_account AS user_account_1 ON "
    "user_account_1.id = marketplace_account_move.customer_id WHERE "
    "marketplace_account_move.id = %(pk_1)s::INTEGER"
)
TAKE_PAY = "SELECT nextval(%(nextval_2)s::VARCHAR) AS nextval_1"
UPDATE_INVOICE = (
    "UPDATE marketplace_account_move SET payment_state=%(payment_state)s::VARCHAR, "
    "amount_residual=%(amount_residual)s WHERE marketplace_account_move.id = "
    "%(record_id)s::INTEGER"
)
INSERT_PAYMENT = (
    "INSERT INTO marketplace_payment (uuid, name, state, invoice_id, customer_id, method, "
    "amount, currency, reference, created_at, confirmed_at, confirmed_by_id, cancelled_at) "
    "VALUES (%(uuid)s::UUID, %(name)s::VARCHAR, %(state)s::VARCHAR, "
    "%(invoice_id)s::INTEGER, %(customer_id)s::INTEGER, %(method)s::VARCHAR, %(amount)s, "
    "%(currency)s::VARCHAR, %(reference)s::VARCHAR, %(created_at)s::TIMESTAMP WITH TIME "
    "ZONE, %(confirmed_at)s::TIMESTAMP WITH TIME ZONE, %(confirmed_by_id)s::INTEGER, "
    "%(cancelled_at)s::TIMESTAMP WITH TIME ZONE) RETURNING marketplace_payment.id"
)
SELECT_INVOICE_PAYMENTS = (
    "SELECT marketplace_payment.id, marketplace_payment.state, marketplace_payment.amount, "
    "marketplace_payment.confirmed_at FROM marketplace_payment WHERE "
    "marketplace_payment.invoice_id = %(invoice_id)s::INTEGER ORDER BY marketplace_payment.id"
)
INSERT_EVENT = (
    "INSERT INTO core_outbox_event (event_id, name, payload, status, attempts, "
    "delivered_to, created_at, next_attempt_at) VALUES (%(event_id)s::UUID, "
    "%(name)s::VARCHAR, %(payload)s::JSONB, %(status)s::VARCHAR, %(attempts)s::INTEGER, "
    "%(delivered_to)s::JSONB, %(created_at)s::TIMESTAMP WITH TIME ZONE, "
    "%(next_attempt_at)s::TIMESTAMP WITH TIME ZONE) RETURNING core_outbox_event.id"
)
#: Several events at once (one executemany): no RETURNING, as SQLAlchemy sends it.
INSERT_EVENTS = INSERT_EVENT.removesuffix(" RETURNING core_outbox_event.id")
INSERT_TRANSACTION = (
    "INSERT INTO payment_transaction (uuid, reference, provider_id, kind, invoice_id, "
    "customer_id, account_payment_id, token_id, amount, currency, fee, net, state, "
    "state_message, provider_reference, late_success, action, tokenize, guest, expires_at, "
    "last_state_change, created_at, created_by_id) VALUES (%(uuid)s::UUID, "
    "%(reference)s::VARCHAR, %(provider_id)s::INTEGER, %(kind)s::VARCHAR, "
    "%(invoice_id)s::INTEGER, %(customer_id)s::INTEGER, %(account_payment_id)s::INTEGER, "
    "%(token_id)s::INTEGER, %(amount)s, %(currency)s::VARCHAR, %(fee)s, %(net)s, "
    "%(state)s::VARCHAR, %(state_message)s::VARCHAR, %(provider_reference)s::VARCHAR, "
    "%(late_success)s, %(action)s::JSONB, %(tokenize)s, %(guest)s, "
    "%(expires_at)s::TIMESTAMP WITH TIME ZONE, %(last_state_change)s::TIMESTAMP WITH TIME ZONE, "
    "%(created_at)s::TIMESTAMP WITH TIME ZONE, %(created_by_id)s::INTEGER) "
    "RETURNING payment_transaction.id"
)
LOCK_WALLET = (
    "SELECT wallet_wallet.id, wallet_wallet.uuid, wallet_wallet.customer_id, "
    "wallet_wallet.currency, wallet_wallet.state, wallet_wallet.frozen_reason, "
    "wallet_wallet.frozen_at, wallet_wallet.created_at FROM wallet_wallet WHERE "
    "wallet_wallet.customer_id = %(customer_id_1)s::INTEGER AND wallet_wallet.currency = "
    "%(currency_1)s::VARCHAR FOR UPDATE"
)
SELECT_BALANCE = (
    "SELECT ledger_account.balance FROM ledger_account WHERE ledger_account.code = "
    "%(code_1)s::VARCHAR"
)
UPDATE_TX_ACTION = (
    "UPDATE payment_transaction SET action=%(action)s::JSONB WHERE payment_transaction.id = "
    "%(record_id)s::INTEGER"
)
UPDATE_TX_SETTLED = (
    "UPDATE payment_transaction SET reference=%(reference)s::VARCHAR, state=%(state)s::VARCHAR, "
    "state_message=%(state_message)s::VARCHAR, action=%(action)s::JSONB, "
    "last_state_change=%(last_state_change)s::TIMESTAMP WITH TIME ZONE WHERE "
    "payment_transaction.id = %(record_id)s::INTEGER"
)
UPDATE_PAYMENT_PAID = (
    "UPDATE marketplace_payment SET state=%(state)s::VARCHAR, "
    "confirmed_at=%(confirmed_at)s::TIMESTAMP WITH TIME ZONE WHERE marketplace_payment.id = "
    "%(record_id)s::INTEGER"
)
SELECT_INVOICE_LINES = (
    "SELECT marketplace_account_move_line.seller_id, marketplace_account_move_line.price_subtotal "
    "FROM marketplace_account_move_line WHERE marketplace_account_move_line.move_id = "
    "%(move_id)s::INTEGER ORDER BY marketplace_account_move_line.id"
)
#: PAYMENT_CAPTURE of a seller-less invoice: wallet, receivable, sales_income, sales_clearing.
LEDGER_LOCK = ledger_lock_sql(4)
LEDGER_WRITE = ledger_write_sql(4, 4)


def _now() -> datetime:
    return datetime.now(UTC)


def _named(cur: psycopg.Cursor[Any], row: tuple[Any, ...]) -> dict[str, Any]:
    return {column.name: value for column, value in zip(cur.description, row, strict=True)}


def _invoice(ctx: Context, cur: psycopg.Cursor[Any]) -> None:
    """The invoice the customer may pay: its id and order (it is read under their locks)."""
    rows = cur.fetchall()
    if len(rows) != 1 or rows[0][2] != ctx["customer_id"]:
        raise FloorRefused(f"no invoice {ctx['invoice_uuid']} of customer {ctx['customer_id']}")
    ctx["invoice_id"], ctx["order_id"] = rows[0][0], rows[0][1]


def _refreshed(ctx: Context, cur: psycopg.Cursor[Any]) -> None:
    invoice = _named(cur, cur.fetchone())
    if invoice["move_type"] != "out_invoice" or invoice["currency"] != CURRENCY:
        raise FloorRefused("the floor pays IDR out_invoices only")
    ctx["invoice"] = invoice
    ctx["customer_uuid"] = invoice["uuid_1"]
    if ctx.get("amount") is None:  # the first refresh, under the rows' locks: pay the residual
        if invoice["amount_residual"] <= 0 or invoice["payment_state"] != "not_paid":
            raise FloorRefused(f"invoice {invoice['name']} is not unpaid")
        if invoice["amount_residual"] != invoice["amount_total"]:
            raise FloorRefused("the floor pays whole invoices only")
        ctx["amount"] = invoice["amount_residual"]


def _provider(ctx: Context, cur: psycopg.Cursor[Any]) -> None:
    row = cur.fetchone()
    provider = _named(cur, row) if row is not None else None
    if provider is None or provider["state"] != "enabled" or CURRENCY not in provider["currencies"]:
        raise FloorRefused("the wallet provider is not enabled for IDR")
    if provider["fee_percent"] or provider["fee_fixed"]:
        raise FloorRefused("the floor's provider takes no fee")
    ctx["provider_id"] = provider["id"]


def _pay_number(ctx: Context, cur: psycopg.Cursor[Any]) -> None:
    ctx["payment_name"] = f"PAY/{ctx['year']}/{cur.fetchone()[0]:05d}"
    ctx["payment_uuid"] = uuid.uuid4()


def _stored(key: str) -> Callable[[Context, psycopg.Cursor[Any]], None]:
    def store(ctx: Context, cur: psycopg.Cursor[Any]) -> None:
        ctx[key] = cur.fetchone()[0]

    return store


def _payment_row(ctx: Context) -> dict[str, Any]:
    return {
        "uuid": ctx["payment_uuid"], "name": ctx["payment_name"], "state": "in_process",
        "invoice_id": ctx["invoice_id"], "customer_id": ctx["customer_id"], "method": PROVIDER,
        "amount": ctx["amount"], "currency": CURRENCY, "reference": None,
        "created_at": ctx["now"], "confirmed_at": None, "confirmed_by_id": None,
        "cancelled_at": None,
    }  # fmt: skip


def _paid_state(ctx: Context, cur: psycopg.Cursor[Any]) -> None:
    """As :func:`_payment_state`, with this payment as Lapak has it in memory: ``paid``."""
    rows = [(key, "paid" if key == ctx["payment_id"] else state)
            for key, state, _amount, _confirmed_at in cur.fetchall()]  # fmt: skip
    live = [state for _, state in rows if state != "canceled"]
    ctx["payment_state"] = "paid" if live and all(s == "paid" for s in live) else "in_payment"


def _registered_state(ctx: Context, cur: psycopg.Cursor[Any]) -> None:
    """``_payment_state`` once the whole residual is taken, the new payment (not written yet)
    ``in_process`` among the invoice's earlier ones: ``in_payment``."""
    cur.fetchall()
    ctx["payment_state"] = "in_payment"


def _event(name: str, payload: Callable[[Context], dict[str, Any]]) -> Callable[[Context], Any]:
    def row(ctx: Context) -> dict[str, Any]:
        now = _now()
        return {
            "event_id": uuid.uuid4(), "name": name, "payload": Jsonb(payload(ctx)),
            "status": "pending", "attempts": 0, "delivered_to": Jsonb([]), "created_at": now,
            "next_attempt_at": now,
        }  # fmt: skip

    return row


def _payment_event(state: str) -> Callable[[Context], dict[str, Any]]:
    def payload(ctx: Context) -> dict[str, Any]:
        return {
            "payment": str(ctx["payment_uuid"]), "name": ctx["payment_name"], "state": state,
            "invoice": str(ctx["invoice_uuid"]), "method": PROVIDER, "amount": str(ctx["amount"]),
            "currency": CURRENCY,
        }  # fmt: skip

    return payload


def _invoice_paid(ctx: Context) -> dict[str, Any]:
    invoice = ctx["invoice"]
    if ctx["payment_state"] != "paid":
        raise FloorRefused("the invoice is not paid by the payment")
    return {
        "invoice": str(ctx["invoice_uuid"]), "name": invoice["name"],
        "move_type": invoice["move_type"], "payment_state": "paid", "currency": CURRENCY,
        "amount_total": str(invoice["amount_total"]),
        "amount_residual": str(invoice["amount_total"] - ctx["amount"]),
    }  # fmt: skip


def _succeeded(ctx: Context) -> dict[str, Any]:
    """``transitions.event_payload`` of the settled transaction."""
    return {
        "transaction": str(ctx["tx_uuid"]), "reference": ctx["tx_reference"],
        "provider": PROVIDER, "state": "success", "kind": "invoice",
        "invoice": str(ctx["invoice_uuid"]), "customer": str(ctx["customer_uuid"]),
        "payment": str(ctx["payment_uuid"]), "amount": str(ctx["amount"]), "fee": "0.00",
        "net": str(ctx["amount"]), "currency": CURRENCY,
    }  # fmt: skip


def _transaction_row(ctx: Context) -> dict[str, Any]:
    now = ctx["tx_created_at"] = _now()
    ctx["tx_uuid"] = uuid.uuid4()
    return {
        "uuid": ctx["tx_uuid"], "reference": None, "provider_id": ctx["provider_id"],
        "kind": "invoice", "invoice_id": ctx["invoice_id"], "customer_id": ctx["customer_id"],
        "account_payment_id": ctx["payment_id"], "token_id": None, "amount": ctx["amount"],
        "currency": CURRENCY, "fee": ZERO, "net": ctx["amount"], "state": "pending",
        "state_message": None, "provider_reference": None, "late_success": False,
        "action": Jsonb({}), "tokenize": False, "guest": False, "expires_at": now + EXPIRY,
        "last_state_change": now, "created_at": now, "created_by_id": ctx["customer_id"],
    }  # fmt: skip


def _tx_stored(ctx: Context, cur: psycopg.Cursor[Any]) -> None:
    """The new transaction's id and its ``TX/`` reference (written with its state)."""
    _stored("tx_id")(ctx, cur)
    ctx["tx_reference"] = f"TX/{ctx['year']}/{ctx['tx_id']:05d}"


def _wallet(ctx: Context, cur: psycopg.Cursor[Any]) -> None:
    row = cur.fetchone()
    if row is None or _named(cur, row)["state"] == "frozen":
        raise FloorRefused("no usable IDR wallet")
    ctx["wallet_uuid"] = _named(cur, row)["uuid"]


def _wallet_code(ctx: Context) -> str:
    return f"wallet:{CURRENCY}:{ctx['customer_id']}"


def _balance(ctx: Context, cur: psycopg.Cursor[Any]) -> None:
    row = cur.fetchone()
    ctx["balance"] = ZERO if row is None else row[0]
    if ctx["balance"] < ctx["amount"] and "ledger_transaction_id" not in ctx:
        raise FloorRefused(f"the wallet holds {ctx['balance']}: less than {ctx['amount']}")


def _action(ctx: Context) -> dict[str, Any]:
    ctx["action"] = {"type": "wallet", "wallet": str(ctx["wallet_uuid"]),
                     "balance": str(ctx["balance"]), "currency": CURRENCY}  # fmt: skip
    return {"action": Jsonb(ctx["action"]), "record_id": ctx["tx_id"]}


def _settled(ctx: Context) -> dict[str, Any]:
    """The state and the first action (the balance before) in one UPDATE, as the ORM flushes
    them together."""
    ctx["last_state_change"] = _now()
    return {**_action(ctx), "reference": ctx["tx_reference"], "state": "success",
            "state_message": SETTLED_MESSAGE,
            "last_state_change": ctx["last_state_change"]}  # fmt: skip


def _action_after(ctx: Context) -> dict[str, Any]:
    """The action with the wallet's balance after the capture (its entry's running balance,
    no query: Lapak reads it from the posting it just wrote)."""
    ctx["balance"] = ctx["wallet_after"]
    return _action(ctx)


def _lines(ctx: Context, cur: psycopg.Cursor[Any]) -> None:
    rows = cur.fetchall()
    if not rows or any(seller_id is not None for seller_id, _ in rows):
        raise FloorRefused("the floor captures invoices of seller-less products only")
    ctx["released"] = sum((subtotal for _, subtotal in rows), ZERO)


# --- the ledger's PAYMENT_CAPTURE, computed as modules.ledger.posting.post computes it ---------


def _capture_lock(ctx: Context) -> dict[str, Any]:
    """The capture's legs in ``postings.payment_capture``'s order, and the lock's codes."""
    customer, amount, released = ctx["customer_id"], ctx["amount"], ctx["released"]
    legs = [  # purpose, holder, code, debit, credit
        ("wallet", customer, _wallet_code(ctx), amount, ZERO),
        ("receivable", customer, f"receivable:{CURRENCY}:{customer}", ZERO, amount),
        ("sales_income", None, f"sales_income:{CURRENCY}", ZERO, released),
        ("sales_clearing", None, f"sales_clearing:{CURRENCY}", released, ZERO),
    ]
    ctx["ledger_legs"] = legs
    return ledger_lock_params([code for _, _, code, _, _ in legs])


def _capture_locked(ctx: Context, cur: psycopg.Cursor[Any]) -> None:
    rows = cur.fetchall()
    accounts = {row[2]: (row[1], row[3], row[5], row[4]) for row in rows if row[0] == "account"}
    heads = [row for row in rows if row[0] == "chain"]
    if len(accounts) != len(ctx["ledger_legs"]) or not heads:
        raise FloorRefused("a ledger account or the chain head is missing: open them first")
    ctx["ledger_accounts"] = accounts
    ctx["ledger_head"] = heads[0][1:3] + heads[0][6:8]


def _capture_write(ctx: Context) -> dict[str, Any]:
    accounts = ctx["ledger_accounts"]
    running = {code: balance for code, (_, balance, _, _) in accounts.items()}
    entries = []
    for _, _, code, debit, credit in ctx["ledger_legs"]:
        account_id, _, kind, allow_negative = accounts[code]
        grows = (debit > 0) == (kind in DEBIT_NORMAL)
        amount = debit if debit > 0 else credit
        running[code] += amount if grows else -amount
        if running[code] < 0 and not allow_negative:
            raise FloorRefused(f"{code} would go below zero")
        entries.append((account_id, code, debit, credit, running[code]))
    ctx["wallet_after"] = running[_wallet_code(ctx)]
    nonce = str(ctx["payment_uuid"])
    reference = f"payment:{nonce}"
    memo = f"{ctx['payment_name']} on {ctx['invoice']['name']}"
    posting = Posting(
        CAPTURE, nonce,
        tuple(Leg(purpose, CURRENCY, holder_id=holder, debit=debit, credit=credit)
              for purpose, holder, _, debit, credit in ctx["ledger_legs"]),
        reference, memo, None,
    )  # fmt: skip
    return ledger_write_params(
        operation=CAPTURE, nonce=nonce, reference=reference, memo=memo, actor_id=None,
        fingerprint=posting.fingerprint(), entries=entries, running=running,
        account_ids={code: row[0] for code, row in accounts.items()},
        head=ctx["ledger_head"], now=_now(),
    )  # fmt: skip


def _capture_written(ctx: Context, cur: psycopg.Cursor[Any]) -> None:
    written = cur.fetchone()
    if written is None:
        raise FloorRefused(f"the payment {ctx['payment_uuid']} was captured before")
    ctx["ledger_transaction_id"] = written[0]


def _visible(ctx: Context) -> dict[str, Any]:
    return {"uuid": ctx["invoice_uuid"], "viewer_id": ctx["customer_id"], "state_1": "posted"}


def _by_order(key: str) -> Callable[[Context], dict[str, Any]]:
    return lambda ctx: {key: ctx["order_id"]}


def _by_invoice(key: str) -> Callable[[Context], dict[str, Any]]:
    return lambda ctx: {key: ctx["invoice_id"]}


def _invoice_paid_state(ctx: Context) -> dict[str, Any]:
    """The reserved residual and the final payment state in one UPDATE, as Lapak writes the
    invoice's changes once, before the ledger's locks."""
    return {
        "payment_state": ctx["payment_state"],
        "amount_residual": ctx["invoice"]["amount_residual"] - ctx["amount"],
        "record_id": ctx["invoice_id"],
    }


def _wallet_lock(ctx: Context) -> dict[str, Any]:
    return {"customer_id_1": ctx["customer_id"], "currency_1": CURRENCY}


#: One wallet payment, statement for statement as Lapak's ``pay_invoice`` runs it, in one
#: transaction (COMMIT follows). See the module's docstring.
PAYMENT_STEPS: list[Step] = [
    Step(SELECT_VISIBLE_INVOICE, _visible, _invoice, mark="start"),
    Step(LOCK_ORDER, _by_order("order_id")),
    Step(LOCK_INVOICES, _by_order("order_id")),
    Step(SELECT_INVOICE, _by_invoice("pk_1"), _refreshed),
    Step(SELECT_PROVIDER, lambda ctx: {"code_1": PROVIDER}, _provider),
    Step(TAKE_PAY, lambda ctx: {"nextval_2": f"marketplace_seq_pay_{ctx['year']}"}, _pay_number),
    Step(SELECT_INVOICE_PAYMENTS, _by_invoice("invoice_id"), _registered_state),
    Step(INSERT_PAYMENT, _payment_row, _stored("payment_id")),
    Step(INSERT_EVENT, _event("payment.registered", _payment_event("in_process"))),
    Step(INSERT_TRANSACTION, _transaction_row, _tx_stored),
    Step(LOCK_WALLET, _wallet_lock, _wallet, mark="wallet"),
    Step(SELECT_BALANCE, lambda ctx: {"code_1": _wallet_code(ctx)}, _balance),
    Step(INSERT_EVENT, _event("payment.succeeded", _succeeded), mark="confirm"),
    Step(SELECT_INVOICE_PAYMENTS, _by_invoice("invoice_id"), _paid_state),
    Step(
        INSERT_EVENTS,
        lambda ctx: [
            _event("payment.confirmed", _payment_event("paid"))(ctx),
            _event("invoice.paid", _invoice_paid)(ctx),
        ],
        many=True,
    ),
    Step(SELECT_INVOICE_LINES, _by_invoice("move_id"), _lines),
    Step(UPDATE_INVOICE, _invoice_paid_state),
    Step(
        UPDATE_PAYMENT_PAID,
        lambda ctx: {"state": "paid", "confirmed_at": _now(), "record_id": ctx["payment_id"]},
    ),
    Step(UPDATE_TX_SETTLED, _settled),
    Step(LEDGER_LOCK, _capture_lock, _capture_locked, mark="ledger"),
    Step(LEDGER_WRITE, _capture_write, _capture_written),
    Step(UPDATE_TX_ACTION, _action_after),
]


def payment_statements() -> tuple[str, ...]:
    """The floor's statements in the order it runs them, COMMIT last (compared with Lapak's)."""
    return (*(step.sql for step in PAYMENT_STEPS), COMMIT)


def pay(conn: psycopg.Connection, customer_id: int, invoice_uuid: str) -> Context:
    """One wallet payment of the whole invoice in one durable transaction on ``conn``; its
    context. :class:`FloorRefused` (rolled back) when the floor cannot pay it."""
    now = _now()
    ctx: Context = {
        "now": now,
        "year": now.astimezone(TIMEZONE).year,
        "customer_id": customer_id,
        "invoice_uuid": uuid.UUID(str(invoice_uuid)),
    }
    try:
        with conn.cursor() as cur:
            for step in PAYMENT_STEPS:
                if step.many:
                    cur.executemany(step.sql, step.params(ctx))
                else:
                    cur.execute(step.sql, step.params(ctx))
                if step.after is not None:
                    step.after(ctx, cur)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return ctx


def _moment(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def paid_body(ctx: Mapping[str, Any]) -> dict[str, Any]:
    """``POST /payments``'s 201 body (``ProviderTransactionSchema``) for the payment ``ctx``."""
    amount = str(ctx["amount"])
    return {
        "action": ctx["action"],
        "amount": amount,
        "created_at": _moment(ctx["tx_created_at"]),
        "currency": CURRENCY,
        "customer": str(ctx["customer_uuid"]),
        "expires_at": _moment(ctx["tx_created_at"] + EXPIRY),
        "fee": "0.00",
        "id": str(ctx["tx_uuid"]),
        "invoice": str(ctx["invoice_uuid"]),
        "invoice_number": ctx["invoice"]["name"],
        "kind": "invoice",
        "last_state_change": _moment(ctx["last_state_change"]),
        "late_success": False,
        "net": amount,
        "payment": str(ctx["payment_uuid"]),
        "provider": PROVIDER,
        "provider_reference": None,
        "reference": ctx["tx_reference"],
        "state": "success",
        "state_message": SETTLED_MESSAGE,
        "token": None,
    }
