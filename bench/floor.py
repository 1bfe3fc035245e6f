"""The floors of ``bench.orders``: Lapak's order written statement for statement with psycopg.

Shared by the SQL floor (``bench.orders``: psycopg in the bench process, no HTTP) and the HTTP
floor (``bench.floor_app``: a bare Flask app under gunicorn). One order is the statements of
:data:`ORDER_STEPS`, in that order, in one transaction, then COMMIT. ``bench.orders`` checks them
against the statements Lapak sends for a probe order (kinds, order and text).

To follow Lapak when its order path gains statements (the ledger's postings, say), add a
:class:`Step` to :data:`ORDER_STEPS` where Lapak runs it: its SQL, its parameters (a function of
the order's context, a dict that holds the request's inputs and what the steps before it
stored), and, if later steps need its answer, an ``after`` that stores it. Both floors and the
statement check pick it up.

The ledger's posting is the fast path only: the accounts (the customer's receivable, sales
clearing, tax payable) and the chain head must exist (``bench.orders`` opens the customers'
receivables up front, as Lapak does on first use, and Lapak's first order opens the rest); the
floor refuses an order otherwise. The fingerprint, number, running balances and hash are
computed as ``modules.ledger.posting.post`` computes them, the hash with ``modules.ledger.chain``
itself, so the floor's transactions chain with Lapak's and ``lapak ledger verify`` checks both.

Also here: the listing's keyset SQL written by hand (:func:`bare_sql`), which the HTTP floor's
listing runs on the replica.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from modules.ledger import chain
from modules.ledger.posting import queue_parameters
from modules.marketplace import numbering
from tests.statements import COMMIT  # a transaction's end, in the statement lists compared

TAX_PERCENT = Decimal(11)  # the marketplace default (PPN), used by both sides
COMMISSION_PERCENT = Decimal(5)  # LAPAK_COMMISSION_PERCENT's default, fixed on the invoice
TIMEZONE = ZoneInfo("Asia/Jakarta")  # the marketplace default: the numbering year
CURRENCY = "IDR"
PAYMENT_DAYS = 14

SELECT_PRODUCT = (
    "SELECT marketplace_product.id, marketplace_product.uuid, marketplace_product.feed_uuid, "
    "marketplace_product.name, marketplace_product.list_price, marketplace_product.active, "
    "marketplace_product.seller_id FROM marketplace_product "
    "WHERE marketplace_product.uuid IN (%s::UUID) OR marketplace_product.feed_uuid IN (%s::VARCHAR)"
)
INSERT_ORDER = (
    "INSERT INTO marketplace_sale_order (uuid, name, state, customer_id, created_by_id, currency, "
    "currency_rate, rate_source, tax_percent, date_order, amount_untaxed, amount_tax, "
    "amount_total, cancelled_at) VALUES (%s::UUID, %s::VARCHAR, %s::VARCHAR, %s::INTEGER, "
    "%s::INTEGER, %s::VARCHAR, %s, %s::VARCHAR, %s, %s::TIMESTAMP WITH TIME ZONE, %s, %s, %s, "
    "%s::TIMESTAMP WITH TIME ZONE) RETURNING marketplace_sale_order.id"
)
INSERT_ORDER_LINE = (
    "INSERT INTO marketplace_sale_order_line (order_id, product_id, sequence, name, quantity, "
    "price_unit, price_subtotal, price_tax, price_total) VALUES (%s::INTEGER, %s::INTEGER, "
    "%s::INTEGER, %s::VARCHAR, %s, %s, %s, %s, %s) RETURNING marketplace_sale_order_line.id"
)
INSERT_MOVE = (
    "INSERT INTO marketplace_account_move (uuid, name, move_type, state, payment_state, order_id, "
    "customer_id, payer_name, payer_email, issuer_id, created_by_id, memo, currency, "
    "invoice_date, invoice_date_due, amount_untaxed, amount_tax, amount_total, amount_residual, "
    "commission_percent, reversed_entry_id, created_at) VALUES (%s::UUID, %s::VARCHAR, "
    "%s::VARCHAR, %s::VARCHAR, %s::VARCHAR, %s::INTEGER, %s::INTEGER, %s::VARCHAR, %s::VARCHAR, "
    "%s::INTEGER, %s::INTEGER, %s::VARCHAR, %s::VARCHAR, %s::DATE, %s::DATE, %s, %s, %s, %s, %s, "
    "%s::INTEGER, %s::TIMESTAMP WITH TIME ZONE) RETURNING marketplace_account_move.id"
)
INSERT_MOVE_LINE = (
    "INSERT INTO marketplace_account_move_line (move_id, product_id, seller_id, tax_percent, "
    "sequence, name, quantity, price_unit, price_subtotal, price_tax, price_total) VALUES "
    "(%s::INTEGER, %s::INTEGER, %s::INTEGER, %s, %s::INTEGER, %s::VARCHAR, %s, %s, %s, %s, %s) "
    "RETURNING marketplace_account_move_line.id"
)
INSERT_PAYMENT = (
    "INSERT INTO marketplace_payment (uuid, name, state, invoice_id, customer_id, method, amount, "
    "currency, reference, created_at, confirmed_at, confirmed_by_id, cancelled_at) VALUES "
    "(%s::UUID, %s::VARCHAR, %s::VARCHAR, %s::INTEGER, %s::INTEGER, %s::VARCHAR, %s, "
    "%s::VARCHAR, %s::VARCHAR, %s::TIMESTAMP WITH TIME ZONE, %s::TIMESTAMP WITH TIME ZONE, "
    "%s::INTEGER, %s::TIMESTAMP WITH TIME ZONE) RETURNING marketplace_payment.id"
)
#: numbering.take_unique: payment and order numbers (sorted codes) from the year's sequences,
#: first statement of the order's transaction; no lock held.
TAKE_UNIQUE = "SELECT nextval(%s::VARCHAR) AS nextval_1, nextval(%s::VARCHAR) AS nextval_3"
UNIQUE_CODES = ("PAY", "SO")
#: numbering.prepare_year, once per year (the floor does it up front; Lapak may have already).
CREATE_SEQUENCE = "CREATE SEQUENCE IF NOT EXISTS {name} OWNED BY marketplace_sequence.next_number"
#: numbering.number_document: the gap-free invoice number taken and written, last statement;
#: the order first queues for the counter on its advisory lock (numbering.queue_key).
NUMBER_INVOICE = (
    "WITH taken AS (UPDATE marketplace_sequence SET next_number=(marketplace_sequence.next_number "
    "+ %s::INTEGER) WHERE marketplace_sequence.code = %s::VARCHAR AND marketplace_sequence.year = "
    "%s::INTEGER AND (SELECT pg_advisory_xact_lock(%s::INTEGER, %s::INTEGER) AS "
    "pg_advisory_xact_lock_1) IS NOT NULL RETURNING marketplace_sequence.next_number - "
    "%s::INTEGER AS number) "
    "UPDATE marketplace_account_move SET name=(%s::VARCHAR || lpad(CAST((SELECT taken.number "
    "FROM taken) AS VARCHAR), greatest(%s::INTEGER, length(CAST((SELECT taken.number "
    "FROM taken) AS VARCHAR))), %s::VARCHAR)) WHERE marketplace_account_move.id = %s::INTEGER "
    "RETURNING marketplace_account_move.name"
)
#: events.emit_many: the order's three events (order.confirmed, payment.registered,
#: invoice.posted) as one executemany (psycopg pipelines it: one round trip), after the invoice
#: number (one payload needs it).
INSERT_OUTBOX = (
    "INSERT INTO core_outbox_event (event_id, name, payload, status, attempts, delivered_to, "
    "created_at, next_attempt_at) VALUES (%s::UUID, %s::VARCHAR, %s::JSONB, %s::VARCHAR, "
    "%s::INTEGER, %s::JSONB, %s::TIMESTAMP WITH TIME ZONE, %s::TIMESTAMP WITH TIME ZONE)"
)


# --- the ledger's posting (modules.ledger.posting.post, PostgreSQL, accounts already open) -----


def ledger_lock_sql(accounts: int) -> str:
    """The posting's accounts in id order, each after its queue (an advisory lock), then the
    chain head after its queue, when every account exists, in one statement
    (``modules.ledger.posting._lock_accounts_and_chain_sql``, the same text)."""
    codes = ", ".join(f"%(codes_{i})s" for i in range(1, accounts + 1))
    every = f"(SELECT count(*) FROM ledger_account WHERE code IN ({codes})) = %(count)s"  # noqa: S608
    # Built from a count only; every value is a bound parameter.
    return (
        "SELECT * FROM (SELECT 'account' AS what, id::bigint AS id, code::text AS code, "  # noqa: S608
        "balance, "
        "allow_negative, kind::text AS kind, NULL::integer AS year, NULL::integer AS year_count "
        f"FROM ledger_account WHERE code IN ({codes}) AND (SELECT "
        "count(pg_advisory_xact_lock(%(account_queue)s::integer, queued.id)) FROM (SELECT id "
        f"FROM ledger_account WHERE code IN ({codes}) ORDER BY id) AS queued WHERE {every}) = "
        "%(count)s ORDER BY id FOR UPDATE) AS accounts "
        "UNION ALL SELECT * FROM (SELECT 'chain', last_index, last_hash::text, NULL::numeric, "
        "NULL::boolean, NULL::text, year, year_count FROM ledger_chain WHERE id = 1 AND "
        f"(SELECT pg_advisory_xact_lock(%(chain_queue)s::integer, 1) WHERE {every}) IS NOT NULL "
        "FOR UPDATE) AS head"
    )


def ledger_write_sql(entries: int, accounts: int) -> str:
    """The transaction, the chain head, the accounts' balances and the entries (one multi-row
    INSERT) in one writable-CTE statement (``_postgresql_write``)."""
    balances = ", ".join(
        f"(%(account_{i})s, CAST(%(balance_{i})s AS NUMERIC))" for i in range(accounts)
    )
    rows = ", ".join(
        f"({i}, %(entry_account_{i})s, %(entry_currency_{i})s, CAST(%(entry_debit_{i})s AS "
        f"NUMERIC), CAST(%(entry_credit_{i})s AS NUMERIC), CAST(%(entry_balance_{i})s AS NUMERIC))"
        for i in range(entries)
    )
    # Built from counts only; every value is a bound parameter.
    return (
        "WITH tx AS ( INSERT INTO"  # noqa: S608
        " ledger_transaction (uuid, number, chain_index, operation, "
        "nonce, fingerprint, reference, memo, actor_id, reverses_id, created_at, hash) VALUES "
        "(%(uuid)s, %(number)s, %(chain_index)s, %(operation)s, %(nonce)s, %(fingerprint)s, "
        "%(reference)s, %(memo)s, %(actor_id)s, %(reverses_id)s, %(created_at)s, %(hash)s) "
        "ON CONFLICT (operation, nonce) DO NOTHING RETURNING id), "
        "head AS ( UPDATE ledger_chain SET last_index = %(chain_index)s, last_hash = %(hash)s, "
        "year = %(year)s, year_count = %(year_count)s WHERE id = 1 AND EXISTS (SELECT FROM tx)), "
        "balances AS ( UPDATE ledger_account AS a SET balance = v.balance "
        f"FROM (VALUES {balances}) AS v(id, balance) "
        "WHERE a.id = v.id AND EXISTS (SELECT FROM tx)), "
        "entries AS ( INSERT INTO ledger_entry (transaction_id, account_id, currency, debit, "
        "credit, balance_after) SELECT tx.id, v.account_id, v.currency, v.debit, v.credit, "
        f"v.balance_after FROM tx, (VALUES {rows}) "
        "AS v(ord, account_id, currency, debit, credit, balance_after) ORDER BY v.ord) "
        "SELECT id FROM tx"
    )


#: INVOICE_POST (``modules.marketplace.postings.invoice_post``): DR the customer's receivable
#: the total T; CR sales clearing the untaxed U, tax payable the tax X. Three legs, three accounts.
INVOICE_POST = "INVOICE_POST"
RECEIVABLE, SALES_CLEARING, TAX_PAYABLE = "receivable", "sales_clearing", "tax_payable"
LEDGER_LOCK = ledger_lock_sql(3)


def ledger_lock_params(codes: set[str] | Sequence[str]) -> dict[str, Any]:
    """:func:`ledger_lock_sql`'s parameters: the codes sorted, their count and the keys of the
    ledger's queues."""
    ordered = sorted(codes)
    return {
        **{f"codes_{i}": code for i, code in enumerate(ordered, 1)},
        "count": len(ordered),
        **queue_parameters(),
    }


LEDGER_WRITE = ledger_write_sql(3, 3)


class FloorRefused(Exception):
    """The order cannot be placed (unknown product, no invoice counter): rolled back."""


Context = dict[str, Any]


@dataclass(frozen=True)
class Step:
    """One statement of an order: ``params(ctx)`` gives its parameters (a list of them when
    ``many``: one pipelined executemany); ``after(ctx, cursor)`` reads its answer into ``ctx``;
    ``mark`` starts a part of the timing breakdown."""

    sql: str
    params: Callable[[Context], Any]
    after: Callable[[Context, psycopg.Cursor[Any]], None] | None = None
    many: bool = False
    mark: str | None = None


def _money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def line_amounts(quantity: Decimal, price_unit: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """Subtotal, tax and total of a line, as ``modules.marketplace.pricing`` rounds them (IDR)."""
    subtotal = _money(quantity * price_unit)
    tax = _money(subtotal * TAX_PERCENT / 100)
    return subtotal, tax, subtotal + tax


def _numbers(ctx: Context, cur: psycopg.Cursor[Any]) -> None:
    taken = cur.fetchone()
    year = ctx["year"]
    ctx["numbers"] = {
        code: f"{code}/{year}/{number:05d}"
        for code, number in zip(UNIQUE_CODES, taken, strict=True)
    }


def _product(ctx: Context, cur: psycopg.Cursor[Any]) -> None:
    found = cur.fetchall()
    if len(found) != 1 or not found[0][5]:
        raise FloorRefused(f"product {ctx['product_uuid']} not found or inactive")
    product = found[0]
    price = _money(product[4])
    subtotal, tax, total = line_amounts(ctx["quantity"], price)
    ctx.update(
        product_id=product[0],
        product_name=product[3],
        seller_id=product[6],
        price=price,
        subtotal=subtotal,
        tax=tax,
        total=total,
        order_uuid=uuid.uuid4(),
        move_uuid=uuid.uuid4(),
        payment_uuid=uuid.uuid4(),
    )


def _stored(key: str) -> Callable[[Context, psycopg.Cursor[Any]], None]:
    def store(ctx: Context, cur: psycopg.Cursor[Any]) -> None:
        ctx[key] = cur.fetchone()[0]

    return store


def _line(ctx: Context) -> tuple[Any, ...]:
    return (ctx["product_id"], 0, ctx["product_name"], ctx["quantity"], ctx["price"],
            ctx["subtotal"], ctx["tax"], ctx["total"])  # fmt: skip


def _move_line_row(ctx: Context) -> tuple[Any, ...]:
    """An invoice line keeps its product's seller (``commission`` splits by it) and the order's
    tax."""
    product_id, *rest = _line(ctx)
    return (ctx["move_id"], product_id, ctx["seller_id"], TAX_PERCENT, *rest)


def _order_row(ctx: Context) -> tuple[Any, ...]:
    customer = ctx["customer_id"]
    return (ctx["order_uuid"], ctx["numbers"]["SO"], "sale", customer, customer, CURRENCY,
            Decimal(1), None, TAX_PERCENT, ctx["now"], ctx["subtotal"], ctx["tax"], ctx["total"],
            None)  # fmt: skip


def _move_row(ctx: Context) -> tuple[Any, ...]:
    invoice_date = ctx["now"].astimezone(TIMEZONE).date()
    ctx["invoice_date"] = invoice_date
    # No payer name or email, issuer, creator or memo: an order's invoice has its customer.
    return (ctx["move_uuid"], None, "out_invoice", "posted", "in_payment", ctx["order_id"],
            ctx["customer_id"], None, None, None, None, None, CURRENCY, invoice_date,
            invoice_date + timedelta(days=PAYMENT_DAYS),
            ctx["subtotal"], ctx["tax"], ctx["total"], Decimal("0.00"), COMMISSION_PERCENT, None,
            datetime.now(UTC))  # fmt: skip


def _payment_row(ctx: Context) -> tuple[Any, ...]:
    return (ctx["payment_uuid"], ctx["numbers"]["PAY"], "in_process", ctx["move_id"],
            ctx["customer_id"], "bank_transfer", ctx["total"], CURRENCY, None, ctx["now"], None,
            None, None)  # fmt: skip


def _invoice_number(ctx: Context) -> tuple[Any, ...]:
    year = ctx["year"]
    queue = (numbering.QUEUE_SPACE, numbering.queue_key("INV", year))
    return (1, "INV", year, *queue, 1, f"INV/{year}/", 5, "0", ctx["move_id"])


def _invoice_named(ctx: Context, cur: psycopg.Cursor[Any]) -> None:
    named = cur.fetchone()
    if named is None or named[0] is None:
        raise FloorRefused(f"no INV counter for {ctx['year']}")
    ctx["invoice_name"] = named[0]


def _events(ctx: Context) -> list[tuple[Any, ...]]:
    """order.confirmed, payment.registered and invoice.posted, as ``place_order`` emits them."""
    total, numbers = str(ctx["total"]), ctx["numbers"]
    events = [
        ("order.confirmed", {"order": str(ctx["order_uuid"]), "name": numbers["SO"],
                             "state": "sale", "customer_id": ctx["customer_id"],
                             "currency": CURRENCY, "amount_total": total}),
        ("payment.registered", {"payment": str(ctx["payment_uuid"]), "name": numbers["PAY"],
                                "state": "in_process", "invoice": str(ctx["move_uuid"]),
                                "method": "bank_transfer", "amount": total,
                                "currency": CURRENCY}),
        ("invoice.posted", {"invoice": str(ctx["move_uuid"]), "name": ctx["invoice_name"],
                            "move_type": "out_invoice", "payment_state": "in_payment",
                            "currency": CURRENCY, "amount_total": total,
                            "amount_residual": "0.00"}),
    ]  # fmt: skip
    emitted = datetime.now(UTC)
    return [
        (uuid.uuid4(), name, json.dumps(payload), "pending", 0, "[]", emitted, emitted)
        for name, payload in events
    ]


# --- the ledger's INVOICE_POST, computed as modules.ledger.posting.post computes it ------------

ZERO = Decimal("0.00")
#: Account kinds whose balance grows with debits (``modules.ledger.models.DEBIT_NORMAL``).
DEBIT_NORMAL = frozenset({"asset", "expense"})


def _ledger_lock(ctx: Context) -> dict[str, Any]:
    """The invoice's legs (purpose, holder, account code, debit, credit) and their accounts'
    codes, sorted, for the lock."""
    customer = ctx["customer_id"]
    legs = [
        (RECEIVABLE, customer, f"{RECEIVABLE}:{CURRENCY}:{customer}", ctx["total"], ZERO),
        (SALES_CLEARING, None, f"{SALES_CLEARING}:{CURRENCY}", ZERO, ctx["subtotal"]),
        (TAX_PAYABLE, None, f"{TAX_PAYABLE}:{CURRENCY}", ZERO, ctx["tax"]),
    ]
    if any(debit == credit for *_, debit, credit in legs):
        # Lapak leaves a zero leg out (another statement shape): not this floor's order.
        raise FloorRefused("a zero leg (a free product or no tax): not the floor's posting")
    ctx["ledger_legs"] = legs
    return ledger_lock_params({code for _, _, code, _, _ in legs})


def _ledger_locked(ctx: Context, cur: psycopg.Cursor[Any]) -> None:
    rows = cur.fetchall()
    accounts = {row[2]: (row[1], row[3], row[5]) for row in rows if row[0] == "account"}
    heads = [row for row in rows if row[0] == "chain"]
    if len(accounts) != len({code for _, _, code, _, _ in ctx["ledger_legs"]}) or not heads:
        # Lapak opens a missing account (the slow path, other statements): the bench opens
        # every customer's receivable up front, and Lapak's first order opens the rest.
        raise FloorRefused("a ledger account or the chain head is missing: open them first")
    _, last_index, last_hash, _, _, _, year, year_count = heads[0]
    ctx["ledger_accounts"] = accounts
    ctx["ledger_head"] = (last_index, last_hash, year, year_count)


def _fingerprint(ctx: Context, nonce: str, reference: str, memo: str) -> str:
    """``Posting.fingerprint``: SHA-256 of the request's canonical JSON (all but the actor)."""
    content = {
        "operation": INVOICE_POST,
        "nonce": nonce,
        "reference": reference,
        "memo": memo,
        "legs": [
            [purpose, CURRENCY, holder, chain.money(debit), chain.money(credit)]
            for purpose, holder, _, debit, credit in ctx["ledger_legs"]
        ],
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def ledger_write_params(
    *,
    operation: str,
    nonce: str,
    reference: str,
    memo: str,
    actor_id: int | None,
    fingerprint: str,
    entries: list[tuple[int, str, Decimal, Decimal, Decimal]],
    running: dict[str, Decimal],
    account_ids: dict[str, int],
    head: tuple[int, str, int, int],
    now: datetime,
) -> dict[str, Any]:
    """:func:`ledger_write_sql`'s parameters, as ``modules.ledger.posting.post`` computes them:
    the next number and chain index after ``head`` (last index, last hash, year, count in the
    year), the canonical content's hash link, the accounts' new balances (``running``, in id
    order) and the entries (account id, code, debit, credit, balance after)."""
    last_index, last_hash, head_year, head_count = head
    year = max(now.year, head_year)
    year_count = head_count + 1 if head_year == year else 1
    number = f"LT/{year}/{year_count:05d}"
    transaction_uuid = uuid.uuid4()
    content = chain.canonical(
        transaction_uuid=transaction_uuid,
        number=number,
        operation=operation,
        nonce=nonce,
        reference=reference,
        memo=memo,
        actor_id=actor_id,
        reverses_id=None,
        fingerprint=fingerprint,
        created_at=now,
        legs=[(code, CURRENCY, debit, credit) for _, code, debit, credit, _ in entries],
    )
    params: dict[str, Any] = {
        "uuid": transaction_uuid,
        "number": number,
        "chain_index": last_index + 1,
        "operation": operation,
        "nonce": nonce,
        "fingerprint": fingerprint,
        "reference": reference,
        "memo": memo,
        "actor_id": actor_id,
        "reverses_id": None,
        "created_at": now,
        "hash": chain.link(last_hash, content),
        "year": year,
        "year_count": year_count,
    }
    balances = sorted((account_ids[code], balance) for code, balance in running.items())
    for i, (account_id, balance) in enumerate(balances):
        params[f"account_{i}"], params[f"balance_{i}"] = account_id, balance
    for i, (account_id, _, debit, credit, after) in enumerate(entries):
        params.update({
            f"entry_account_{i}": account_id, f"entry_currency_{i}": CURRENCY,
            f"entry_debit_{i}": debit, f"entry_credit_{i}": credit, f"entry_balance_{i}": after,
        })  # fmt: skip
    return params


def _ledger_write(ctx: Context) -> dict[str, Any]:
    """The transaction row, the head's next number and index, the running balances, the hash."""
    accounts = ctx["ledger_accounts"]
    running = {code: balance for code, (_, balance, _) in accounts.items()}
    entries = []
    for _, _, code, debit, credit in ctx["ledger_legs"]:
        account_id, _, kind = accounts[code]
        grows = (debit > 0) == (kind in DEBIT_NORMAL)
        amount = debit if debit > 0 else credit
        running[code] += amount if grows else -amount
        entries.append((account_id, code, debit, credit, running[code]))
    now = datetime.now(UTC)  # the posting's clock: UTC, and its year numbers the transaction
    nonce = str(ctx["move_uuid"])
    reference, memo, actor = f"invoice:{nonce}", ctx["invoice_name"], ctx["customer_id"]
    fingerprint = _fingerprint(ctx, nonce, reference, memo)
    params = ledger_write_params(
        operation=INVOICE_POST, nonce=nonce, reference=reference, memo=memo, actor_id=actor,
        fingerprint=fingerprint, entries=entries, running=running,
        account_ids={code: row[0] for code, row in accounts.items()},
        head=ctx["ledger_head"], now=now,
    )  # fmt: skip
    ctx["ledger_number"] = params["number"]
    return params


def _ledger_written(ctx: Context, cur: psycopg.Cursor[Any]) -> None:
    written = cur.fetchone()
    if written is None:
        raise FloorRefused(f"the invoice {ctx['move_uuid']} was posted to the ledger before")
    ctx["ledger_transaction_id"] = written[0]


#: One order, statement for statement as Lapak's ``place_order`` runs it, in one transaction
#: (COMMIT follows): the PAY and SO numbers, the product, one INSERT per row (order, its line,
#: invoice with its commission, its line with its seller, payment), the gap-free invoice number
#: (the counter row stays locked from here to the commit), the three events in one pipelined
#: executemany, then the invoice's ledger posting (last: its locks come after the counter's):
#: the three accounts and the chain head locked in one statement, then the transaction, its
#: entries, the balances and the chain head written in one. Add Lapak's new statements here,
#: where it runs them (see the module's docstring).
ORDER_STEPS: list[Step] = [
    Step(TAKE_UNIQUE, lambda ctx: ctx["sequences"], _numbers, mark="numbers"),
    Step(SELECT_PRODUCT, lambda ctx: (ctx["product_uuid"],) * 2, _product, mark="selects"),
    Step(INSERT_ORDER, _order_row, _stored("order_id"), mark="rows"),
    Step(INSERT_ORDER_LINE, lambda ctx: (ctx["order_id"], *_line(ctx)), _stored("order_line_id")),
    Step(INSERT_MOVE, _move_row, _stored("move_id")),
    Step(INSERT_MOVE_LINE, _move_line_row, _stored("move_line_id")),
    Step(INSERT_PAYMENT, _payment_row, _stored("payment_id")),
    Step(NUMBER_INVOICE, _invoice_number, _invoice_named, mark="locked"),
    Step(INSERT_OUTBOX, _events, many=True),
    Step(LEDGER_LOCK, _ledger_lock, _ledger_locked, mark="ledger"),
    Step(LEDGER_WRITE, _ledger_write, _ledger_written),
]


def floor_statements() -> tuple[str, ...]:
    """The floor's statements in the order it runs them, COMMIT last (compared with Lapak's)."""
    return (*(step.sql for step in ORDER_STEPS), COMMIT)


def sequence_names(year: int) -> list[str]:
    return [f"marketplace_seq_{code.lower()}_{year}" for code in UNIQUE_CODES]


def place(
    conn: psycopg.Connection,
    customer_id: int,
    product_uuid: str,
    quantity: Decimal,
    marks: dict[str, float] | None = None,
) -> Context:
    """One order in one durable transaction on ``conn``; its context (numbers, ids, amounts).

    :class:`FloorRefused` (rolled back) when it cannot be placed; ``marks`` gets the
    ``perf_counter`` at each step's ``mark``, ``committing`` and ``committed``.
    """
    now = datetime.now(UTC)
    year = now.astimezone(TIMEZONE).year
    ctx: Context = {
        "now": now,
        "year": year,
        "sequences": sequence_names(year),
        "customer_id": customer_id,
        "product_uuid": product_uuid,
        "quantity": quantity,
    }
    try:
        with conn.cursor() as cur:
            for step in ORDER_STEPS:
                if marks is not None and step.mark:
                    marks[step.mark] = time.perf_counter()
                if step.many:
                    cur.executemany(step.sql, step.params(ctx))
                else:
                    cur.execute(step.sql, step.params(ctx))
                if step.after is not None:
                    step.after(ctx, cur)
        if marks is not None:
            marks["committing"] = time.perf_counter()
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    if marks is not None:
        marks["committed"] = time.perf_counter()
    return ctx


# --- the answers, in Lapak's shapes (PlacedSchema, OrderSummarySchema) ---------------------------


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else format(_money(value), "f")


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _moment(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def placed_body(ctx: Mapping[str, Any], customer_uuid: str) -> dict[str, Any]:
    """``POST /orders``'s 201 body for the order placed with ``ctx``."""
    order_id, move_id = str(ctx["order_uuid"]), str(ctx["move_uuid"])
    line = {
        "name": ctx["product_name"],
        "price_subtotal": _amount(ctx["subtotal"]),
        "price_tax": _amount(ctx["tax"]),
        "price_total": _amount(ctx["total"]),
        "price_unit": _amount(ctx["price"]),
        "product": str(ctx["product_uuid"]),
        "quantity": _plain(ctx["quantity"]),
    }
    amounts = {
        "amount_tax": _amount(ctx["tax"]),
        "amount_total": _amount(ctx["total"]),
        "amount_untaxed": _amount(ctx["subtotal"]),
        "currency": CURRENCY,
        "customer": customer_uuid,
    }
    invoice_date = ctx["invoice_date"]
    return {
        "order": {
            **amounts,
            "cancelled_at": None,
            "currency_rate": "1",
            "date_order": _moment(ctx["now"]),
            "id": order_id,
            "lines": [line],
            "number": ctx["numbers"]["SO"],
            "payment_state": "in_payment",
            "state": "sale",
            "tax_percent": _plain(TAX_PERCENT),
        },
        "invoice": {
            **amounts,
            "amount_residual": "0.00",
            "id": move_id,
            "invoice_date": invoice_date.isoformat(),
            "invoice_date_due": (invoice_date + timedelta(days=PAYMENT_DAYS)).isoformat(),
            "lines": [line],
            "move_type": "out_invoice",
            "number": ctx["invoice_name"],
            "order": order_id,
            "payment_state": "in_payment",
            "reversed_entry": None,
            "state": "posted",
        },
        "payment": {
            "amount": _amount(ctx["total"]),
            "cancelled_at": None,
            "confirmed_at": None,
            "created_at": _moment(ctx["now"]),
            "currency": CURRENCY,
            "customer": customer_uuid,
            "id": str(ctx["payment_uuid"]),
            "invoice": move_id,
            "method": "bank_transfer",
            "number": ctx["numbers"]["PAY"],
            "reference": None,
            "state": "in_process",
        },
    }


# --- the listing's keyset SQL, by hand --------------------------------------------------------

BARE_COLUMNS = (
    "o.id, o.uuid, o.name, o.state, o.customer_id, o.created_by_id, o.currency, "
    "o.currency_rate, o.rate_source, o.tax_percent, o.date_order, o.amount_untaxed, "
    "o.amount_tax, o.amount_total, o.cancelled_at, c.uuid, "
    # The payment state of the order's latest invoice, as the listing shows it.
    "(SELECT m.payment_state FROM marketplace_account_move AS m WHERE m.order_id = o.id "
    "AND m.move_type = 'out_invoice' ORDER BY m.id DESC LIMIT 1)"
)
LISTING_LIMIT = 50
#: What Lapak asks a replica before its rows are served (``app.db._REPLICA_STATE``; checked the
#: same by the bench): still in recovery (not promoted), and replayed how far.
REPLICA_STATE = (
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
    "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8"
)


def bare_sql(
    key: Sequence[Any] | None, customer_id: int | None, limit: int = LISTING_LIMIT
) -> tuple[str, list[Any]]:
    """What the listing reads, written by hand: a page (and one row more) after ``key``
    (date_order, id), newest first, the customer's public id and the invoice's payment state."""
    where, params = [], []
    if customer_id is not None:
        where.append("o.customer_id = %s")
        params.append(customer_id)
    if key is not None:
        where.append("(o.date_order, o.id) < (%s, %s)")
        params += list(key)
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    sql = (
        f"SELECT {BARE_COLUMNS} FROM marketplace_sale_order AS o "  # noqa: S608
        f"LEFT JOIN user_account AS c ON c.id = o.customer_id {clause}"
        f"ORDER BY o.date_order DESC, o.id DESC LIMIT {int(limit) + 1}"
    )
    return sql, params


def summary_item(row: Sequence[Any]) -> dict[str, Any]:
    """A row of :func:`bare_sql` as the listing shows it (``OrderSummarySchema``)."""
    return {
        "id": str(row[1]),
        "number": row[2],
        "state": row[3],
        "customer": None if row[15] is None else str(row[15]),
        "currency": row[6],
        "currency_rate": _plain(row[7]),
        "tax_percent": _plain(row[9]),
        "date_order": _moment(row[10]),
        "amount_untaxed": _amount(row[11]),
        "amount_tax": _amount(row[12]),
        "amount_total": _amount(row[13]),
        "cancelled_at": _moment(row[14]),
        "payment_state": row[16],
    }
