"""Placing orders through gunicorn beside the SQL floor, and the order listing on the replica.

``python -m bench.orders [--orders N] [--clients 1,8,32] [--listing-rows 1000000]
[--requests N] [--web-workers K] [--walk-pages P]``

Starts throw-away PostgreSQL (primary + streaming replica) and Redis (``tests/servers.py``),
makes the primary durable again (``fsync``, ``full_page_writes`` and ``synchronous_commit`` on:
the harness turns fsync off for tests) with ``pg_stat_statements`` loaded, migrates, creates
one customer per client thread, staff and an admin, and serves Lapak with ``lapak serve``
(gunicorn, K sync workers) on 127.0.0.1, reading from the replica.

**Orders.** ``POST /api/v1/marketplace/orders`` (one line, quantity 2, bank transfer, no
``Idempotency-Key``), each client thread as its own logged-in customer, at 1, 8 and 32
concurrent clients; every answer must be 201. Beside it, in the same run and against the same
tables, **the floor**: the statements Lapak executes for one order (captured from the app's
primary engine on a probe order and checked against the floor's list and text, transaction ends
included) with psycopg, same thread count, one connection per thread: per order, one durable
transaction that takes the PAY and SO numbers from the year's sequences (``nextval``), loads the
product and the customer, writes the order, its line, the invoice, its line and the payment
(one INSERT each) and the order.confirmed and payment.registered outbox events (one INSERT
each), then takes and writes the gap-free invoice number and the event that needs it just
before the commit. Each level runs in two rounds that
alternate which side goes first. Per run: orders/s, p50/p99 latency, errors, the ratio
Lapak/floor, the statements that took the database's time (``pg_stat_statements``) and what
the sessions were doing (``pg_stat_activity`` sampled every 25 ms: lock waits, WAL flushes,
idle in transaction while Python runs).

**Listing.** ``marketplace_sale_order`` is filled to ``--listing-rows`` orders (one line and
one posted invoice each) with set-based SQL, dates spread over the past year, over the bench
customers; then VACUUM ANALYZE and a wait until the replica has replayed it all. ``GET
/api/v1/marketplace/orders?limit=50`` is timed (``--requests`` sequential requests each) as
staff for the first page, a page after walking ``--walk-pages`` pages of 100 with
``next_cursor``, and a page in the middle of the year (the ``next_cursor`` of a ``?to=`` page),
and as a customer for their first page. Beside each, on the replica with psycopg: the bare
keyset SQL (written by hand, reading what the listing reads: the page, the customer's public id
and the payment state of the order's latest invoice) and the exact SQL the ORM sent (captured
from an in-process request), plus ``EXPLAIN (ANALYZE, BUFFERS)`` of the latter.

Only 127.0.0.1 is contacted, counts are bounded, and every server started is stopped, even on
failure or Ctrl-C/SIGTERM/SIGHUP.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import math
import os
import re
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import event

from app import create_app
from app.config import Settings
from app.db import RoutingSession, parse_lsn
from app.migrate import upgrade
from bench.http_overhead import (
    HOST,
    clean_environment,
    free_port,
    non_negative,
    positive,
    serving,
    venv_script,
)
from bench.runner import FAST_PASSWORDS, REPO_ROOT, Figures, bench_settings, run_as_command
from modules.marketplace.pricing import line_amounts
from modules.user.services import create_user
from tests.servers import Services, start_services

NAME = "orders"
DEFAULT_CLIENTS = (1, 8, 32)
#: 48 characters, for this benchmark's throw-away instance only.
SECRET = "bench-orders-throwaway-secret-0123456789abcdefgh"  # noqa: S105
PASSWORD = "benchmark password, long enough"  # noqa: S105 - throw-away users'
#: OWASP's argon2id minimum: the benchmark measures orders, not logins.
API = "/api/v1/marketplace"
ORDERS = f"{API}/orders"
PRODUCTS = 10
QUANTITY = Decimal(2)
TAX_PERCENT = Decimal(11)  # the marketplace default (PPN), used by both sides
TIMEZONE = ZoneInfo("Asia/Jakarta")  # the marketplace default: the numbering year
REQUEST_TIMEOUT_S = 60.0
PROBE_ORDERS = 30
SAMPLE_S = 0.025
FLOOR_APP = "bench-floor"
TARGET_FLOOR_RATIO = 0.5
TARGET_ORDER_P99_MS = 250.0
TARGET_LIST_P99_MS = 30.0
TARGET_LIST_VS_SQL = 3.0
LISTING_WARMUP = 20
#: The primary as production runs it (the harness turns fsync off), and statement statistics.
PRIMARY_SETTINGS = {
    "fsync": "on",
    "full_page_writes": "on",
    "synchronous_commit": "on",
    "shared_preload_libraries": "pg_stat_statements",
    "track_wal_io_timing": "on",
}


def customer_email(index: int) -> str:
    return f"bench.customer.{index}@example.test"


STAFF_EMAIL = "bench.staff@example.test"
ADMIN_EMAIL = "bench.admin@example.test"
#: In-process probes log in as their own users: a login ends the user's previous session.
PROBE_CUSTOMER_EMAIL = "bench.probe.customer@example.test"
PROBE_STAFF_EMAIL = "bench.probe.staff@example.test"


# --- statistics --------------------------------------------------------------------------------


def percentile_ms(sorted_s: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted seconds, in milliseconds."""
    if not sorted_s:
        return None
    return round(sorted_s[max(1, math.ceil(len(sorted_s) * q / 100)) - 1] * 1000, 2)


class Batch:
    """What one batch of calls from several threads measured."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.error_samples: list[str] = []
        self.seconds = 0.0
        self.calls = 0
        self._lock = threading.Lock()

    def record(self, seconds: float, error: str | None) -> None:
        with self._lock:
            self.calls += 1
            if error is None:
                self.latencies.append(seconds)
            else:
                self.errors += 1
                if len(self.error_samples) < 3:
                    self.error_samples.append(error[:300])

    def merge(self, other: Batch) -> None:
        self.latencies += other.latencies
        self.errors += other.errors
        self.error_samples = (self.error_samples + other.error_samples)[:3]
        self.seconds += other.seconds
        self.calls += other.calls


def drive(count: int, workers: Sequence[Callable[[int], str | None]]) -> Batch:
    """Make ``count`` calls from one thread per worker; a worker returns None or an error.

    Threads take the next call number from a shared counter, so all stay busy to the end.
    """
    batch = Batch()
    numbers = itertools.count()
    ticket = threading.Lock()
    start = threading.Barrier(len(workers) + 1, timeout=REQUEST_TIMEOUT_S)

    def run(worker: Callable[[int], str | None]) -> None:
        start.wait()
        while True:
            with ticket:
                number = next(numbers)
            if number >= count:
                return
            began = time.perf_counter()
            try:
                error = worker(number)
            except Exception as exc:  # counted and shown, the run goes on
                error = f"{type(exc).__name__}: {exc}"
            batch.record(time.perf_counter() - began, error)

    threads = [threading.Thread(target=run, args=(w,), daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    batch.seconds = time.perf_counter() - began
    return batch


# --- HTTP --------------------------------------------------------------------------------------


def call(
    port: int, method: str, path: str, token: str | None = None, body: Any = None
) -> tuple[int, bytes]:
    """One request on a fresh connection (gunicorn's sync workers close after each answer)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        payload = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def call_json(
    port: int, method: str, path: str, token: str | None = None, body: Any = None,
    expect: int = 200,
) -> dict[str, Any]:  # fmt: skip
    status, answer = call(port, method, path, token, body)
    if status != expect:
        raise RuntimeError(f"{method} {path} answered {status}: {answer[:500]!r}")
    return json.loads(answer)


def log_in(port: int, email: str) -> str:
    body = {"email": email, "password": PASSWORD}
    return call_json(port, "POST", "/api/v1/auth/login", body=body)["access_token"]


def order_body(product_uuid: str) -> dict[str, Any]:
    return {
        "lines": [{"product": product_uuid, "quantity": str(QUANTITY)}],
        "payment": {"method": "bank_transfer"},
    }


def lapak_worker(
    port: int, token: str, products: Sequence[Mapping[str, Any]]
) -> Callable[[int], str | None]:
    def place(number: int) -> str | None:
        body = order_body(products[number % len(products)]["uuid"])
        status, answer = call(port, "POST", ORDERS, token, body)
        return None if status == 201 else f"{status}: {answer.decode(errors='replace')}"

    return place


# --- the floor: the same statements through psycopg, no HTTP ------------------------------

SELECT_PRODUCT = (
    "SELECT marketplace_product.id, marketplace_product.uuid, marketplace_product.feed_uuid, "
    "marketplace_product.source, marketplace_product.name, marketplace_product.province, "
    "marketplace_product.city, marketplace_product.size, marketplace_product.list_price, "
    "marketplace_product.active, marketplace_product.seller_id, marketplace_product.created_at, "
    "marketplace_product.updated_at FROM marketplace_product "
    "WHERE marketplace_product.uuid IN (%s::UUID) OR marketplace_product.feed_uuid IN (%s::VARCHAR)"
)
SELECT_CUSTOMER = (
    "SELECT user_account.id, user_account.uuid, user_account.email, user_account.email_key, "
    "user_account.name, user_account.phone, user_account.role, user_account.active, "
    "user_account.password_hash, user_account.created_at, user_account.updated_at "
    "FROM user_account WHERE user_account.id = %s::INTEGER"
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
    "customer_id, currency, invoice_date, invoice_date_due, amount_untaxed, amount_tax, "
    "amount_total, amount_residual, reversed_entry_id, created_at) VALUES (%s::UUID, "
    "%s::VARCHAR, %s::VARCHAR, %s::VARCHAR, %s::VARCHAR, %s::INTEGER, %s::INTEGER, %s::VARCHAR, "
    "%s::DATE, %s::DATE, %s, %s, %s, %s, %s::INTEGER, %s::TIMESTAMP WITH TIME ZONE) "
    "RETURNING marketplace_account_move.id"
)
INSERT_MOVE_LINE = (
    "INSERT INTO marketplace_account_move_line (move_id, product_id, sequence, name, quantity, "
    "price_unit, price_subtotal, price_tax, price_total) VALUES (%s::INTEGER, %s::INTEGER, "
    "%s::INTEGER, %s::VARCHAR, %s, %s, %s, %s, %s) RETURNING marketplace_account_move_line.id"
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
#: numbering.number_document: the gap-free invoice number taken and written, last statement.
NUMBER_INVOICE = (
    "WITH taken AS (UPDATE marketplace_sequence SET next_number=(marketplace_sequence.next_number "
    "+ %s::INTEGER) WHERE marketplace_sequence.code = %s::VARCHAR AND marketplace_sequence.year = "
    "%s::INTEGER RETURNING marketplace_sequence.next_number - %s::INTEGER AS number) "
    "UPDATE marketplace_account_move SET name=(%s::VARCHAR || lpad(CAST((SELECT taken.number "
    "FROM taken) AS VARCHAR), greatest(%s::INTEGER, length(CAST((SELECT taken.number "
    "FROM taken) AS VARCHAR))), %s::VARCHAR)) WHERE marketplace_account_move.id = %s::INTEGER "
    "RETURNING marketplace_account_move.name"
)
COMMIT = "COMMIT"  # a transaction's end, in the statement lists compared
#: events.emit_many: the order's three events (order.confirmed, payment.registered,
#: invoice.posted) as one executemany (psycopg pipelines it: one round trip), after the invoice
#: number (one payload needs it).
INSERT_OUTBOX = (
    "INSERT INTO core_outbox_event (event_id, name, payload, status, attempts, delivered_to, "
    "created_at, next_attempt_at) VALUES (%s::UUID, %s::VARCHAR, %s::JSONB, %s::VARCHAR, "
    "%s::INTEGER, %s::JSONB, %s::TIMESTAMP WITH TIME ZONE, %s::TIMESTAMP WITH TIME ZONE)"
)
#: The floor's statements in the order it runs them (for the comparison with Lapak's): one
#: transaction; each row written by its own INSERT, in the order ``place_order`` writes them.
FLOOR_STATEMENTS = (
    TAKE_UNIQUE, SELECT_PRODUCT, SELECT_CUSTOMER,
    INSERT_ORDER, INSERT_ORDER_LINE, INSERT_MOVE, INSERT_MOVE_LINE, INSERT_PAYMENT,
    NUMBER_INVOICE, INSERT_OUTBOX, COMMIT,
)  # fmt: skip


def _money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


def floor_prepare(dsn: str, year: int) -> list[str]:
    """The year's PAY and SO sequences, as ``numbering.prepare_year`` creates them (shared with
    Lapak's: whichever comes first creates them)."""
    names = [f"marketplace_seq_{code.lower()}_{year}" for code in UNIQUE_CODES]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(CREATE_SEQUENCE.format(name=name))
    return names


def floor_order(
    conn: psycopg.Connection,
    customer_id: int,
    product: Mapping[str, Any],
    timings: dict[str, list[float]] | None = None,
) -> str | None:
    """One order as Lapak writes it, statement for statement, in one durable transaction.

    The PAY and SO numbers from the year's sequences, the product and the customer, one INSERT
    per row (the order, its line, the invoice, its line, the payment), then the gap-free invoice
    number taken and written, the three events in one INSERT, and the commit.
    """
    now = datetime.now(UTC)
    year = now.astimezone(TIMEZONE).year
    began = time.perf_counter()
    with conn.cursor() as cur:

        def emit_many(events: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
            emitted = datetime.now(UTC)
            cur.executemany(INSERT_OUTBOX, [
                (uuid.uuid4(), name, json.dumps(payload), "pending", 0, "[]", emitted, emitted)
                for name, payload in events
            ])  # fmt: skip

        sequences = [f"marketplace_seq_{code.lower()}_{year}" for code in UNIQUE_CODES]
        taken = cur.execute(TAKE_UNIQUE, sequences).fetchone()
        numbers = {
            code: f"{code}/{year}/{number:05d}"
            for code, number in zip(UNIQUE_CODES, taken, strict=True)
        }
        numbered = time.perf_counter()
        found = cur.execute(SELECT_PRODUCT, (product["uuid"], product["uuid"])).fetchall()
        if len(found) != 1 or not found[0][9]:
            conn.rollback()
            return f"product {product['uuid']} not found or inactive"
        cur.execute(SELECT_CUSTOMER, (customer_id,)).fetchone()
        price = _money(found[0][8])
        amounts = line_amounts(QUANTITY, price, TAX_PERCENT, "IDR")
        order_uuid, move_uuid, payment_uuid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        total = str(amounts.total)
        writing = time.perf_counter()
        # Each row its own INSERT, as _write_placed does: order, its line, invoice, its line,
        # payment; then the two events, each written when emitted.
        order_id = cur.execute(INSERT_ORDER, (
            order_uuid, numbers["SO"], "sale", customer_id, customer_id, "IDR", Decimal(1), None,
            TAX_PERCENT, now, amounts.subtotal, amounts.tax, amounts.total, None,
        )).fetchone()[0]  # fmt: skip
        line = (found[0][0], 0, found[0][4], QUANTITY, price, amounts.subtotal, amounts.tax,
                amounts.total)  # fmt: skip
        cur.execute(INSERT_ORDER_LINE, (order_id, *line)).fetchone()
        invoice_date = now.astimezone(TIMEZONE).date()
        move_id = cur.execute(INSERT_MOVE, (
            move_uuid, None, "out_invoice", "posted", "in_payment", order_id, customer_id, "IDR",
            invoice_date, invoice_date + timedelta(days=14), amounts.subtotal, amounts.tax,
            amounts.total, Decimal("0.00"), None, datetime.now(UTC),
        )).fetchone()[0]  # fmt: skip
        cur.execute(INSERT_MOVE_LINE, (move_id, *line)).fetchone()
        cur.execute(INSERT_PAYMENT, (
            payment_uuid, numbers["PAY"], "in_process", move_id, customer_id, "bank_transfer",
            amounts.total, "IDR", None, now, None, None, None,
        )).fetchone()  # fmt: skip
        rows_written = time.perf_counter()
        events: list[tuple[str, Mapping[str, Any]]] = [
            ("order.confirmed", {"order": str(order_uuid), "name": numbers["SO"],
                                 "state": "sale", "customer_id": customer_id,
                                 "currency": "IDR", "amount_total": total}),
            ("payment.registered", {"payment": str(payment_uuid), "name": numbers["PAY"],
                                    "state": "in_process", "invoice": str(move_uuid),
                                    "method": "bank_transfer", "amount": total,
                                    "currency": "IDR"}),
        ]  # fmt: skip
        locked = time.perf_counter()
        named = cur.execute(
            NUMBER_INVOICE, (1, "INV", year, 1, f"INV/{year}/", 5, "0", move_id)
        ).fetchone()
        if named is None or named[0] is None:
            conn.rollback()
            return f"no INV counter for {year}"
        emit_many([*events, ("invoice.posted", {"invoice": str(move_uuid), "name": named[0],
                                                "move_type": "out_invoice",
                                                "payment_state": "in_payment",
                                                "currency": "IDR", "amount_total": total,
                                                "amount_residual": "0.00"})])  # fmt: skip
        committing = time.perf_counter()
    conn.commit()
    if timings is not None:
        ended = time.perf_counter()
        for part, seconds in (
            ("numbers", numbered - began),
            ("selects", writing - numbered),
            ("rows", rows_written - writing),
            ("held", ended - locked),
            ("commit", ended - committing),
        ):
            timings.setdefault(part, []).append(seconds)
    return None


def floor_worker(
    conn: psycopg.Connection, customer_id: int, products: Sequence[Mapping[str, Any]]
) -> Callable[[int], str | None]:
    def place(number: int) -> str | None:
        try:
            return floor_order(conn, customer_id, products[number % len(products)])
        except psycopg.Error:
            conn.rollback()
            raise

    return place


def floor_connection(dsn: str) -> psycopg.Connection:
    """One floor thread's connection."""
    return psycopg.connect(dsn, application_name=FLOOR_APP, autocommit=False)


def floor_probe(
    dsn: str, customer_id: int, products: Sequence[Mapping[str, Any]], count: int
) -> dict[str, Any]:
    """The floor's uncontended figures, as :func:`probe_order` gives Lapak's."""
    totals: list[float] = []
    timings: dict[str, list[float]] = {}
    with floor_connection(dsn) as conn:
        for number in range(count + 6):  # psycopg prepares after 5 executions
            began = time.perf_counter()
            product = products[number % len(products)]
            if error := floor_order(conn, customer_id, product, timings):
                raise RuntimeError(f"floor probe: {error}")
            totals.append(time.perf_counter() - began)
    return {
        "floor_ms_p50": percentile_ms(sorted(totals[6:]), 50),
        "floor_breakdown_ms_p50": {
            "numbers (nextval x2)": percentile_ms(sorted(timings["numbers"][6:]), 50),
            "product and customer SELECTs": percentile_ms(sorted(timings["selects"][6:]), 50),
            "order, lines, invoice, payment (5 INSERTs)": percentile_ms(
                sorted(timings["rows"][6:]), 50
            ),
            "invoice number to commit returned": percentile_ms(sorted(timings["held"][6:]), 50),
        },
        "floor_counter_lock_held_ms_p50": percentile_ms(sorted(timings["held"][6:]), 50),
        "floor_commit_ms_p50": percentile_ms(sorted(timings["commit"][6:]), 50),
    }


# --- what the statements are -----------------------------------------------------------------

_KIND = re.compile(
    r"^\s*(?:(SELECT)\b.*?\bFROM\s+(\w+)|(INSERT)\s+INTO\s+(\w+)|(UPDATE)\s+(\w+)|(DELETE)\s+FROM\s+(\w+))",
    re.IGNORECASE | re.DOTALL,
)
#: ``WITH x AS (UPDATE a ...) UPDATE b ...``: a data-modifying CTE and its main statement.
_WITH = re.compile(r"^\s*WITH\s+\w+\s+AS\s*\((.*?)\)\s*((?:SELECT|INSERT|UPDATE|DELETE)\b.*)$",
                   re.IGNORECASE | re.DOTALL)  # fmt: skip
_NEXTVAL = re.compile(r"^\s*SELECT\s+nextval\(", re.IGNORECASE)
NEXTVAL = "SELECT nextval"
ORDER_TABLES = ("marketplace_", "core_outbox_event", "user_account")
#: Kept in the comparison beside the statements on the order's tables (and any ``SET``).
CONTROL_KINDS = (NEXTVAL, COMMIT)


def statement_kind(sql: str) -> str:
    """``INSERT marketplace_sale_order``, ``SELECT user_account``..., or the first 40 chars.

    A data-modifying CTE is ``WITH UPDATE marketplace_sequence; UPDATE marketplace_...``;
    numbers from sequences are ``SELECT nextval``.
    """
    if _NEXTVAL.match(sql):
        return NEXTVAL
    if with_ := _WITH.match(sql):
        return f"WITH {statement_kind(with_.group(1))}; {statement_kind(with_.group(2))}"
    match = _KIND.match(sql)
    if not match:
        return " ".join(sql.split())[:40]
    verb, table = [g for g in match.groups() if g][:2]
    return f"{verb.upper()} {table}"


def order_kinds(statements: Sequence[str]) -> list[str]:
    """The kinds of the statements on the order's tables, and the transactions' ends."""
    return [
        kind
        for kind in map(statement_kind, statements)
        if kind in CONTROL_KINDS
        or kind.upper().startswith("SET ")
        or kind.removeprefix("WITH ").split(" ", 1)[-1].startswith(ORDER_TABLES)
    ]


_PLACEHOLDER = re.compile(r"%\(\w+\)s|%s")


def normalised(sql: str) -> str:
    """The statement with placeholders as ``?`` and whitespace collapsed (spaces inside
    parentheses too), to compare SQLAlchemy's named parameters with psycopg's positional ones.
    """
    text = " ".join(_PLACEHOLDER.sub("?", sql).split())
    return text.replace("( ", "(").replace(" )", ")")


@contextmanager
def capturing(engine: Any) -> Iterator[list[tuple[str, Any]]]:
    """The (statement, parameters) pairs ``engine`` sends to the driver inside the block, and
    ``(COMMIT, None)`` where a transaction commits."""
    captured: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    def commit(_conn: Any) -> None:
        captured.append((COMMIT, None))

    event.listen(engine, "before_cursor_execute", record)
    event.listen(engine, "commit", commit)
    try:
        yield captured
    finally:
        event.remove(engine, "before_cursor_execute", record)
        event.remove(engine, "commit", commit)


# --- database-side observation ---------------------------------------------------------------


class ActivitySampler:
    """``pg_stat_activity`` of the client backends of ``application``, sampled every 25 ms."""

    def __init__(self, dsn: str, application: str) -> None:
        self.dsn, self.application = dsn, application
        self.states: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="activity-sampler", daemon=True)

    def __enter__(self) -> ActivitySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        query = (
            "SELECT state, coalesce(wait_event_type || ':' || wait_event, 'CPU') "
            "FROM pg_stat_activity WHERE application_name = %s AND backend_type = 'client backend'"
            " AND pid <> pg_backend_pid()"
        )
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                for state, wait in conn.execute(query, (self.application,)).fetchall():
                    if state == "active":
                        self.states[f"active {wait}"] += 1
                    else:
                        self.states[state or "?"] += 1
                self.samples += 1
                self._stop.wait(SAMPLE_S)

    def busy_backends(self, top: int = 6) -> dict[str, float]:
        """Mean number of backends per state over the samples (idle ones left out)."""
        busy = {k: v for k, v in self.states.items() if k != "idle"}
        ranked = sorted(busy.items(), key=lambda kv: -kv[1])[:top]
        return {k: round(v / max(1, self.samples), 2) for k, v in ranked}


def statement_stats(conn: psycopg.Connection) -> dict[str, tuple[int, float, str]]:
    """queryid -> (calls, total ms, query) from pg_stat_statements, this database's tables."""
    rows = conn.execute(
        "SELECT queryid::text, calls, total_exec_time, query FROM pg_stat_statements "
        "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND query NOT ILIKE '%%pg_stat%%'"
    ).fetchall()
    return {qid: (calls, total, query) for qid, calls, total, query in rows}


#: A backend reports its WAL counters (pg_stat_wal) when it goes idle, but at most once a
#: second: what it did in its last second is reported by a timer 10 s later (PostgreSQL 15's
#: PGSTAT_IDLE_INTERVAL). After a batch, pg_stat_wal is read only after this long, so its
#: flushes are counted with it and not with the next batch (the other side's).
WAL_STATS_DELAY_S = 10.5


def wal_stats(conn: psycopg.Connection) -> tuple[int, float]:
    return conn.execute("SELECT wal_sync, wal_sync_time FROM pg_stat_wal").fetchone()


@contextmanager
def observed(dsn: str, application: str, into: dict[str, Any]) -> Iterator[None]:
    """Statement times, WAL flushes and backend states of one batch, added into ``into``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
        syncs, sync_ms = wal_stats(conn)
        with ActivitySampler(dsn, application) as sampler:
            yield
        stats = statement_stats(conn)
        time.sleep(WAL_STATS_DELAY_S)  # the batch's last WAL counters reported
        syncs_after, sync_ms_after = wal_stats(conn)
    for qid, (calls, total, query) in stats.items():
        old = into.setdefault("statements", {}).get(qid, (0, 0.0, query))
        into["statements"][qid] = (old[0] + calls, old[1] + total, query)
    into["wal_syncs"] = into.get("wal_syncs", 0) + syncs_after - syncs
    into["wal_sync_ms"] = into.get("wal_sync_ms", 0.0) + sync_ms_after - sync_ms
    into.setdefault("activity", Counter()).update(sampler.states)
    into["samples"] = into.get("samples", 0) + sampler.samples


def summarise_db(into: Mapping[str, Any], orders: int) -> dict[str, Any]:
    statements = into.get("statements", {})
    total_ms = sum(total for _, total, _ in statements.values()) or 1.0
    top = sorted(statements.values(), key=lambda s: -s[1])[:6]
    activity: Counter[str] = into.get("activity", Counter())
    samples = max(1, into.get("samples", 0))
    busy = sorted(((k, v) for k, v in activity.items() if k != "idle"), key=lambda kv: -kv[1])
    return {
        "db_exec_ms_per_order": round(total_ms / orders, 3),
        "wal_syncs_per_order": round(into.get("wal_syncs", 0) / orders, 3),
        "wal_sync_ms_per_sync": round(
            into.get("wal_sync_ms", 0.0) / max(1, into.get("wal_syncs", 0)), 3
        ),
        "top_statements": [
            {
                "statement": " ".join(query.split())[:90],
                "calls_per_order": round(calls / orders, 2),
                "mean_ms": round(total / max(1, calls), 3),
                "share_of_db_time": round(total / total_ms, 3),
            }
            for calls, total, query in top
        ],
        "backends_by_state": {k: round(v / samples, 2) for k, v in busy[:6]},
    }


# --- setting up --------------------------------------------------------------------------------


def durable_primary(services: Services) -> None:
    """fsync etc. on and pg_stat_statements loaded: a restart of the throw-away primary."""
    primary = services.primary
    if primary is None:
        raise RuntimeError("needs the harness-started PostgreSQL (LAPAK_TEST_DATABASE_URL is set)")
    for key, value in PRIMARY_SETTINGS.items():
        primary.execute(f"ALTER SYSTEM SET {key} = '{value}'")
    primary.stop()
    primary.start()
    primary.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", "lapak_test")


def settings_for(services: Services, workdir: Path) -> Settings:
    return bench_settings(
        workdir,
        SECRET,
        database_url=services.database_url,
        replica_urls=tuple(services.replica_urls),
        redis_url=services.redis_url,
        module_env=FAST_PASSWORDS,
    )


def create_users(app: Any, customers: int) -> None:
    with app.app_context():
        for index in range(customers):
            create_user(customer_email(index), password=PASSWORD, name=f"Pelanggan {index}")
        create_user(PROBE_CUSTOMER_EMAIL, password=PASSWORD, name="Probe Customer")
        create_user(STAFF_EMAIL, role="staff", password=PASSWORD, name="Bench Staff")
        create_user(PROBE_STAFF_EMAIL, role="staff", password=PASSWORD, name="Probe Staff")
        create_user(ADMIN_EMAIL, role="admin", password=PASSWORD, name="Bench Admin")


def start_lapak(stack: ExitStack, services: Services, workdir: Path, workers: int) -> int:
    env = clean_environment(
        LAPAK_DATABASE_URL=services.database_url,
        LAPAK_REPLICA_URLS=",".join(services.replica_urls),
        LAPAK_REDIS_URL=services.redis_url,
        LAPAK_SECRET_KEY=SECRET,
        LAPAK_INSTANCE_PATH=str(workdir / "instance"),
        LAPAK_WEB_WORKERS=str(workers),
        LAPAK_LOG_LEVEL="WARNING",
        PYTHONPATH=str(REPO_ROOT),
        **{f"LAPAK_{k.upper()}": v for k, v in FAST_PASSWORDS.items()},
    )
    port = free_port()
    argv = [venv_script("lapak"), "serve", "--host", HOST, "--port", str(port)]
    stack.enter_context(serving("lapak", argv, env, workdir, port))
    return port


def user_ids(dsn: str, emails: Sequence[str]) -> list[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = dict(
            conn.execute(
                "SELECT email_key, id FROM user_account WHERE email_key = ANY(%s)",
                ([e.lower() for e in emails],),
            ).fetchall()
        )
    return [found[e.lower()] for e in emails]


def in_process_login(client: Any, email: str) -> dict[str, str]:
    answer = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    if answer.status_code != 200:
        raise RuntimeError(f"in-process login answered {answer.status_code}: {answer.text}")
    return {"Authorization": f"Bearer {answer.get_json()['access_token']}"}


def probe_order(app: Any, product_uuid: str, count: int) -> dict[str, Any]:
    """Orders placed in-process through the real view (no HTTP, no contention), timed.

    The first one primes the process (the year's sequences, the counter row); the second one's
    statements are compared with the floor's. For each of the others: the whole call, the time
    in the database driver, and where it went, marked by the statements' starts: before the
    first statement (authentication, validation, ``prepare_year``, the pool checkout and its
    pre-ping), the numbers (``nextval``), the product and customer SELECTs and the building of
    the objects, the rows' INSERTs (order, line, invoice, line, payment), the order.confirmed
    and payment.registered events' INSERTs, the invoice counter row locked (the ``WITH taken
    AS (UPDATE marketplace_sequence ...)`` statement until the commit returned: the only lock
    held to commit; in parts: until the invoice event's INSERT began, until the commit began, the
    commit), and after the commit (the after-commit hooks, rendering, the answer).
    """
    client = app.test_client()
    headers = in_process_login(client, PROBE_CUSTOMER_EMAIL)
    engine = app.extensions["lapak.db"].primary
    marks: dict[str, float] = {}
    driver_s: list[float] = []

    def before(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        now = marks["statement"] = time.perf_counter()
        kind = statement_kind(statement)
        if kind == NEXTVAL:
            marks.setdefault("numbers", now)
        elif kind == "SELECT marketplace_product":
            marks.setdefault("selects", now)
        elif kind.startswith("WITH UPDATE marketplace_sequence"):
            marks.setdefault("locked", now)
        elif kind == "INSERT core_outbox_event":
            marks.setdefault("outbox", now)
        elif kind.startswith("INSERT "):
            marks.setdefault("rows", now)

    def commit(_conn: Any) -> None:
        if "locked" in marks:
            marks.setdefault("committing", time.perf_counter())

    def after(*_: Any) -> None:
        driver_s.append(time.perf_counter() - marks["statement"])

    def committed(_session: Any) -> None:
        if "locked" in marks and "released" not in marks:
            marks["released"] = time.perf_counter()

    totals, in_driver = [], []
    parts: dict[str, list[float]] = {
        "before_first_statement": [], "numbers (nextval)": [],
        "selects and building the objects": [], "rows (5 INSERTs)": [],
        "invoice counter locked": [], "after_commit_to_answer": [],
    }  # fmt: skip
    held_parts: dict[str, list[float]] = {"to_invoice_event_insert": [],
                                          "invoice_event_insert_to_commit": [],
                                          "commit": []}  # fmt: skip
    with capturing(engine) as captured:
        for number in range(count + 2):
            if number == 1:
                captured.clear()
            marks.clear()
            driver_s.clear()
            event.listen(engine, "before_cursor_execute", before)
            event.listen(engine, "after_cursor_execute", after)
            event.listen(engine, "commit", commit)
            # First of the session's after-commit listeners: before Lapak's (the RQ enqueue).
            event.listen(RoutingSession, "after_commit", committed, insert=True)
            try:
                began = time.perf_counter()
                answer = client.post(ORDERS, json=order_body(product_uuid), headers=headers)
                ended = time.perf_counter()
            finally:
                event.remove(engine, "before_cursor_execute", before)
                event.remove(engine, "after_cursor_execute", after)
                event.remove(engine, "commit", commit)
                event.remove(RoutingSession, "after_commit", committed)
            if answer.status_code != 201:
                raise RuntimeError(f"probe order answered {answer.status_code}: {answer.text}")
            if number == 1:
                statements = [sql for sql, _ in captured]
            if number >= 2:
                totals.append(ended - began)
                in_driver.append(sum(driver_s))
                for part, (start, end) in {
                    "before_first_statement": (began, marks["numbers"]),
                    "numbers (nextval)": (marks["numbers"], marks["selects"]),
                    "selects and building the objects": (marks["selects"], marks["rows"]),
                    "rows (5 INSERTs)": (marks["rows"], marks["locked"]),
                    "invoice counter locked": (marks["locked"], marks["released"]),
                    "after_commit_to_answer": (marks["released"], ended),
                }.items():
                    parts[part].append(end - start)
                held_parts["to_invoice_event_insert"].append(marks["outbox"] - marks["locked"])
                held_parts["invoice_event_insert_to_commit"].append(
                    marks["committing"] - marks["outbox"]
                )
                held_parts["commit"].append(marks["released"] - marks["committing"])
    lapak, floor = order_kinds(statements), order_kinds(FLOOR_STATEMENTS)
    lapak_sql = [normalised(s) for s in statements if statement_kind(s) in lapak]
    floor_sql = [normalised(s) for s in FLOOR_STATEMENTS]
    return {
        "lapak_statements": [statement_kind(s) for s in statements],
        "lapak_order_statements": len(lapak),
        "floor_statements": len(floor),
        "floor_matches_lapak": lapak == floor,
        "floor_sql_identical": lapak_sql == floor_sql,
        "sql_differences": [
            {"lapak": a, "floor": b} for a, b in zip(lapak_sql, floor_sql, strict=False) if a != b
        ][:3],
        "lapak_only": sorted((Counter(lapak) - Counter(floor)).elements()),
        "floor_only": sorted((Counter(floor) - Counter(lapak)).elements()),
        "not_in_the_floor": "the pool's pre-ping (;) at the order's checkout, the auth session "
        "check when its Redis cache entry expired, SELECT pg_current_wal_insert_lsn() after "
        "commit (X-Lapak-LSN), the RQ enqueue of the outbox dispatch (Redis)",
        "in_process_orders": count,
        "in_process_ms_p50": percentile_ms(sorted(totals), 50),
        "in_process_driver_ms_p50": percentile_ms(sorted(in_driver), 50),
        "in_process_breakdown_ms_p50": {
            part: percentile_ms(sorted(seconds), 50) for part, seconds in parts.items()
        },
        "in_process_counter_lock_held_ms_p50": percentile_ms(
            sorted(parts["invoice counter locked"]), 50
        ),
        "in_process_counter_lock_held_parts_ms_p50": {
            part: percentile_ms(sorted(seconds), 50) for part, seconds in held_parts.items()
        },
    }


# --- the orders benchmark ----------------------------------------------------------------------


def orders_at(clients: int, inputs: Mapping[str, Any]) -> int:
    if inputs["orders"]:
        return int(inputs["orders"])
    return 200 if clients == 1 else 600


def measure_orders(
    port: int, dsn: str, tokens: Sequence[str], customer_ids: Sequence[int],
    products: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any],
) -> list[dict[str, Any]]:  # fmt: skip
    levels = list(inputs["clients"])
    most = max(levels)
    connections: list[psycopg.Connection] = []
    rows = []
    try:
        for _ in range(most):
            connections.append(floor_connection(dsn))
        print("  orders: warm-up ...", file=sys.stderr, flush=True)
        warm = min(8, most)
        drive(8 * warm, [lapak_worker(port, tokens[i], products) for i in range(warm)])
        for i, conn in enumerate(connections):  # psycopg prepares after 5 executions
            worker = floor_worker(conn, customer_ids[i], products)
            for n in range(6):
                if error := worker(n):
                    raise RuntimeError(f"floor warm-up: {error}")
        time.sleep(WAL_STATS_DELAY_S)  # the warm-up's WAL counters reported before the first batch
        for clients in levels:
            count = orders_at(clients, inputs)
            halves = [count // 2, count - count // 2]
            lapak, floor = Batch(), Batch()
            lapak_db: dict[str, Any] = {}
            floor_db: dict[str, Any] = {}
            lapak_workers = [lapak_worker(port, tokens[i], products) for i in range(clients)]
            floor_workers = [
                floor_worker(connections[i], customer_ids[i], products) for i in range(clients)
            ]
            for round_, share in enumerate(halves):
                print(f"  orders: {clients} client(s), round {round_ + 1} ...", file=sys.stderr,
                      flush=True)  # fmt: skip
                sides = [("lapak", lapak, lapak_db), ("floor", floor, floor_db)]
                for side, total, db in sides if round_ == 0 else sides[::-1]:
                    application = "lapak" if side == "lapak" else FLOOR_APP
                    workers = lapak_workers if side == "lapak" else floor_workers
                    with observed(dsn, application, db):
                        total.merge(drive(share, workers))
            rows.append(order_row(clients, count, lapak, floor, lapak_db, floor_db))
    finally:
        for conn in connections:
            with suppress(psycopg.Error):
                conn.close()
    return rows


def order_row(
    clients: int, count: int, lapak: Batch, floor: Batch, lapak_db: Mapping[str, Any],
    floor_db: Mapping[str, Any],
) -> dict[str, Any]:  # fmt: skip
    lapak.latencies.sort()
    floor.latencies.sort()
    lapak_rate = (lapak.calls - lapak.errors) / lapak.seconds
    floor_rate = (floor.calls - floor.errors) / floor.seconds
    return {
        "clients": clients,
        "orders": count,
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "lapak_orders_per_s": round(lapak_rate, 1),
        "lapak_p50_ms": percentile_ms(lapak.latencies, 50),
        "lapak_p99_ms": percentile_ms(lapak.latencies, 99),
        "lapak_errors": lapak.errors,
        "floor_orders_per_s": round(floor_rate, 1),
        "floor_p50_ms": percentile_ms(floor.latencies, 50),
        "floor_p99_ms": percentile_ms(floor.latencies, 99),
        "floor_errors": floor.errors,
        "ratio_lapak_over_floor": round(lapak_rate / floor_rate, 3),
        "lapak_error_samples": lapak.error_samples,
        "lapak_db": summarise_db(lapak_db, count),
        "floor_db": summarise_db(floor_db, count),
    }


def numbering_check(dsn: str) -> dict[str, Any]:
    """Every order named, and the invoice numbers of the year without gaps or duplicates."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        unnamed = conn.execute(
            "SELECT (SELECT count(*) FROM marketplace_sale_order WHERE name IS NULL) "
            "+ (SELECT count(*) FROM marketplace_account_move WHERE name IS NULL) "
            "+ (SELECT count(*) FROM marketplace_payment WHERE name IS NULL)"
        ).fetchone()[0]
        invoices, highest = conn.execute(
            "SELECT count(*), max(split_part(name, '/', 3)::int) FROM marketplace_account_move "
            "WHERE move_type = 'out_invoice'"
        ).fetchone()
        orders = conn.execute("SELECT count(*) FROM marketplace_sale_order").fetchone()[0]
    return {
        "orders_written": orders,
        "invoices": invoices,
        "highest_invoice_number": highest,
        "invoice_numbers_gap_free": invoices == highest,
        "unnamed_documents": unnamed,
    }


# --- the listing benchmark ---------------------------------------------------------------------


def fill_orders(
    dsn: str, rows: int, customer_ids: Sequence[int], products: Sequence[Any]
) -> dict[str, Any]:
    """Top ``marketplace_sale_order`` up to ``rows`` orders, one line each, in set-based SQL."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        existing, last_id = conn.execute(
            "SELECT count(*), coalesce(max(id), 0) FROM marketplace_sale_order"
        ).fetchone()
        missing = max(0, rows - existing)
        began = time.perf_counter()
        year = datetime.now(TIMEZONE).year - 1  # 7 digits: never one of this year's SO/2026/00042
        end = datetime.now(UTC) - timedelta(minutes=5)
        step_us = int(timedelta(days=365).total_seconds() * 1e6 / max(1, missing))
        chunk = 250_000
        for first in range(1, missing + 1, chunk):
            last = min(missing, first + chunk - 1)
            print(f"  listing: orders {first}..{last} of {missing} ...", file=sys.stderr,
                  flush=True)  # fmt: skip
            conn.execute(
                """
                INSERT INTO marketplace_sale_order (uuid, name, state, customer_id, created_by_id,
                    currency, currency_rate, rate_source, tax_percent, date_order,
                    amount_untaxed, amount_tax, amount_total, cancelled_at)
                SELECT gen_random_uuid(), %(prefix)s || lpad(g::text, 7, '0'),
                    CASE WHEN g %% 20 = 0 THEN 'cancel' ELSE 'sale' END,
                    c.id, c.id, 'IDR', 1, NULL, 11, d.at,
                    a.untaxed, round(a.untaxed * 0.11, 2), a.untaxed + round(a.untaxed * 0.11, 2),
                    CASE WHEN g %% 20 = 0 THEN d.at + interval '1 hour' END
                FROM generate_series(%(first)s::int, %(last)s::int) AS g,
                    LATERAL (SELECT (%(customers)s::int[])[1 + g %% %(k)s] AS id) AS c,
                    LATERAL (SELECT %(start)s::timestamptz
                             + (g::bigint * %(step)s) * interval '1 microsecond' AS at) AS d,
                    LATERAL (SELECT ((g %% 50) + 1) * 74000.00 AS untaxed) AS a
                """,
                {
                    "prefix": f"SO/{year}/",
                    "first": first,
                    "last": last,
                    "customers": list(customer_ids),
                    "k": len(customer_ids),
                    "start": end - timedelta(days=365),
                    "step": step_us,
                },
            )
        orders_s = time.perf_counter() - began
        print("  listing: one line per order ...", file=sys.stderr, flush=True)
        began = time.perf_counter()
        conn.execute(
            """
            INSERT INTO marketplace_sale_order_line (order_id, sequence, product_id, name,
                quantity, price_unit, price_subtotal, price_tax, price_total)
            SELECT o.id, 0, (%(products)s::int[])[1 + o.id %% %(k)s],
                (%(names)s::text[])[1 + o.id %% %(k)s], 2, o.amount_untaxed / 2,
                o.amount_untaxed, o.amount_tax, o.amount_total
            FROM marketplace_sale_order AS o WHERE o.id > %(last_id)s
            """,
            {
                "products": [p["id"] for p in products],
                "names": [p["name"] for p in products],
                "k": len(products),
                "last_id": last_id,
            },
        )
        lines_s = time.perf_counter() - began
        # The listing reads each order's invoice (its payment state): every order has one, as
        # every order Lapak places does; a fifth paid, the cancelled ones reversed.
        print("  listing: one invoice per order ...", file=sys.stderr, flush=True)
        began = time.perf_counter()
        conn.execute(
            """
            INSERT INTO marketplace_account_move (uuid, name, move_type, state, payment_state,
                order_id, customer_id, currency, invoice_date, invoice_date_due,
                amount_untaxed, amount_tax, amount_total, amount_residual, created_at)
            SELECT gen_random_uuid(), %(prefix)s || substring(o.name from '[0-9]+$'),
                'out_invoice', 'posted', p.state, o.id, o.customer_id, o.currency,
                o.date_order::date, o.date_order::date + 14,
                o.amount_untaxed, o.amount_tax, o.amount_total,
                CASE WHEN p.state IN ('paid', 'reversed') THEN 0 ELSE o.amount_total END,
                o.date_order
            FROM marketplace_sale_order AS o,
                LATERAL (SELECT CASE WHEN o.state = 'cancel' THEN 'reversed'
                                     WHEN o.id %% 5 = 0 THEN 'paid'
                                     ELSE 'in_payment' END AS state) AS p
            WHERE o.id > %(last_id)s
            """,
            {"prefix": f"INV/{year}/", "last_id": last_id},
        )
        invoices_s = time.perf_counter() - began
        print("  listing: VACUUM ANALYZE ...", file=sys.stderr, flush=True)
        began = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) marketplace_sale_order")
        conn.execute("VACUUM (ANALYZE) marketplace_sale_order_line")
        conn.execute("VACUUM (ANALYZE) marketplace_account_move")
        vacuum_s = time.perf_counter() - began
        total = conn.execute("SELECT count(*) FROM marketplace_sale_order").fetchone()[0]
        size = conn.execute("SELECT pg_total_relation_size('marketplace_sale_order')").fetchone()[0]
    return {
        "orders_total": total,
        "orders_inserted": missing,
        "insert_orders_s": round(orders_s, 1),
        "insert_lines_s": round(lines_s, 1),
        "insert_invoices_s": round(invoices_s, 1),
        "vacuum_analyze_s": round(vacuum_s, 1),
        "orders_table_with_indexes_mb": round(size / 1e6),
        "date_order_span": "past 365 days, evenly spaced; the bench's own orders are newest",
    }


def wait_for_replica(services: Services, timeout: float = 300) -> float:
    """Seconds until the replica replayed everything the primary had written (as in conftest)."""
    began = time.perf_counter()
    with psycopg.connect(services.database_url.replace("+psycopg", ""), autocommit=True) as c:
        target = parse_lsn(c.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])
    deadline = time.monotonic() + timeout
    with psycopg.connect(services.replica_urls[0].replace("+psycopg", ""), autocommit=True) as c:
        while True:
            replayed = c.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()[0]
            if (parse_lsn(replayed) or 0) >= (target or 0):
                return time.perf_counter() - began
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica stuck at {replayed}, primary at {target}")
            time.sleep(0.05)


def timed_sql(conn: psycopg.Connection, sql: str, params: Any, count: int) -> list[float]:
    seconds = []
    for _ in range(count):
        began = time.perf_counter()
        conn.execute(sql, params).fetchall()
        seconds.append(time.perf_counter() - began)
    return sorted(seconds)


def timed_http(port: int, path: str, token: str, count: int) -> tuple[list[float], int, list[str]]:
    seconds, errors, samples = [], 0, []
    for _ in range(count):
        began = time.perf_counter()
        status, answer = call(port, "GET", path, token)
        if status == 200:
            seconds.append(time.perf_counter() - began)
        else:
            errors += 1
            if len(samples) < 3:
                samples.append(f"{status}: {answer[:300]!r}")
    return sorted(seconds), errors, samples


BARE_COLUMNS = (
    "o.id, o.uuid, o.name, o.state, o.customer_id, o.created_by_id, o.currency, "
    "o.currency_rate, o.rate_source, o.tax_percent, o.date_order, o.amount_untaxed, "
    "o.amount_tax, o.amount_total, o.cancelled_at, c.uuid, "
    # The payment state of the order's latest invoice, as the listing shows it.
    "(SELECT m.payment_state FROM marketplace_account_move AS m WHERE m.order_id = o.id "
    "AND m.move_type = 'out_invoice' ORDER BY m.id DESC LIMIT 1)"
)


def bare_sql(key: tuple[datetime, int] | None, customer_id: int | None) -> tuple[str, list[Any]]:
    """What the listing reads, written by hand: the page, the customer's public id and the
    invoice's payment state."""
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
        "ORDER BY o.date_order DESC, o.id DESC LIMIT 51"
    )
    return sql, params


def orm_listing_sql(app: Any, path: str, headers: Mapping[str, str]) -> tuple[str, Any]:
    """The listing statement the ORM sent to the replica for ``path`` (in-process request)."""
    replica = app.extensions["lapak.db"].replicas[0]
    with capturing(replica.engine) as captured:
        answer = app.test_client().get(path, headers=dict(headers))
    if answer.status_code != 200:
        raise RuntimeError(f"in-process GET {path} answered {answer.status_code}: {answer.text}")
    listing = [(sql, p) for sql, p in captured if "FROM marketplace_sale_order" in sql]
    if len(listing) != 1:
        raise RuntimeError(f"expected one listing query on the replica, saw {len(captured)}")
    return listing[0]


def explain(replica_dsn: str, sql: str, params: Any) -> list[str]:
    with psycopg.connect(replica_dsn, autocommit=True) as conn:
        conn.execute(sql, params).fetchall()  # warm
        cur = conn.cursor()
        # SQLAlchemy's psycopg dialect sends pyformat (%(name)s) statements, as psycopg takes them.
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        return [row[0] for row in cur.fetchall()]


def order_key(replica_dsn: str, order_uuid: str) -> tuple[datetime, int]:
    with psycopg.connect(replica_dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT date_order, id FROM marketplace_sale_order WHERE uuid = %s", (order_uuid,)
        ).fetchone()


def measure_listing(
    port: int, app: Any, services: Services, staff_token: str, customer_token: str,
    customer_id: int, inputs: Mapping[str, Any],
) -> dict[str, Any]:  # fmt: skip
    requests = int(inputs["requests"])
    replica_dsn = services.replica_urls[0].replace("+psycopg", "")
    client = app.test_client()
    probe_staff = in_process_login(client, PROBE_STAFF_EMAIL)
    probe_customer = in_process_login(client, PROBE_CUSTOMER_EMAIL)
    probe_customer_id = user_ids(services.database_url.replace("+psycopg", ""),
                                 [PROBE_CUSTOMER_EMAIL])[0]  # fmt: skip

    print(f"  listing: walking {inputs['walk_pages']} pages of 100 ...", file=sys.stderr,
          flush=True)  # fmt: skip
    began = time.perf_counter()
    cursor, last = None, None
    for _ in range(int(inputs["walk_pages"])):
        path = f"{ORDERS}?limit=100" + (f"&cursor={quote(cursor)}" if cursor else "")
        page = call_json(port, "GET", path, staff_token)
        cursor, last = page["next_cursor"], page["items"][-1]
        if cursor is None:
            raise RuntimeError("the listing ended before the walk did")
    walk_s = time.perf_counter() - began
    deep_cursor, deep_key = cursor, order_key(replica_dsn, last["id"])
    middle_at = (datetime.now(UTC) - timedelta(days=182)).strftime("%Y-%m-%dT%H:%M:%SZ")
    page = call_json(port, "GET", f"{ORDERS}?limit=50&to={middle_at}", staff_token)
    middle_cursor = page["next_cursor"]
    middle_key = order_key(replica_dsn, page["items"][-1]["id"])

    walked_rows = 100 * int(inputs["walk_pages"])
    cases = [
        ("staff, first page", "", None, None, None),
        (f"staff, after {walked_rows} rows (walked)", deep_cursor, deep_key, None, None),
        ("staff, middle of the year (cursor from ?to=)", middle_cursor, middle_key, None, None),
        ("customer, own first page", "", None, customer_id, probe_customer_id),
    ]
    rows, plans = [], {}
    with psycopg.connect(replica_dsn, autocommit=True) as replica:
        if not replica.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            raise RuntimeError("the replica URL does not point at a replica")
        for label, cursor_, key, bare_customer, probe_id in cases:
            print(f"  listing: {label} ...", file=sys.stderr, flush=True)
            path = f"{ORDERS}?limit=50" + (f"&cursor={quote(cursor_)}" if cursor_ else "")
            token = customer_token if bare_customer else staff_token
            timed_http(port, path, token, LISTING_WARMUP)
            http_s, errors, samples = timed_http(port, path, token, requests)
            sql, params = bare_sql(key, bare_customer)
            timed_sql(replica, sql, params, LISTING_WARMUP)
            bare_s = timed_sql(replica, sql, params, requests)
            orm_sql, orm_params = orm_listing_sql(
                app, path, probe_customer if bare_customer else probe_staff
            )
            if probe_id is not None:  # the same statement for the customer measured over HTTP
                orm_params = {
                    k: (bare_customer if v == probe_id else v) for k, v in dict(orm_params).items()
                }
            timed_sql(replica, orm_sql, orm_params, LISTING_WARMUP)
            orm_s = timed_sql(replica, orm_sql, orm_params, requests)
            plans[label] = {
                "sql": " ".join(orm_sql.split()),
                "params": {k: str(v) for k, v in dict(orm_params).items()},
                "explain_analyze": explain(replica_dsn, orm_sql, orm_params),
            }
            http_p99, bare_p99 = percentile_ms(http_s, 99), percentile_ms(bare_s, 99)
            rows.append({
                "page": label,
                "requests": requests,
                "errors": errors,
                "http_p50_ms": percentile_ms(http_s, 50),
                "http_p99_ms": http_p99,
                "orm_sql_p50_ms": percentile_ms(orm_s, 50),
                "orm_sql_p99_ms": percentile_ms(orm_s, 99),
                "bare_sql_p50_ms": percentile_ms(bare_s, 50),
                "bare_sql_p99_ms": bare_p99,
                "http_p99_over_bare_p99": round(http_p99 / bare_p99, 1) if http_p99 else None,
                "error_samples": samples,
            })  # fmt: skip
    return {
        "pages": rows,
        "walk": {"pages": int(inputs["walk_pages"]), "limit": 100, "seconds": round(walk_s, 2)},
        "orm_plans": plans,
    }


# --- running it all ----------------------------------------------------------------------------


def measure(inputs: Mapping[str, Any]) -> Figures:
    levels = list(inputs["clients"])
    customers = max(levels)
    services = start_services()
    try:
        with tempfile.TemporaryDirectory(prefix="lapak-bench-orders-") as tmp, ExitStack() as stack:
            workdir = Path(tmp)
            print("  durable primary, migrating, creating users ...", file=sys.stderr, flush=True)
            durable_primary(services)
            dsn = services.database_url.replace("+psycopg", "")
            settings = settings_for(services, workdir)
            upgrade(settings)
            app = create_app(settings)
            stack.callback(app.extensions["lapak.db"].dispose)
            stack.callback(app.extensions["lapak.jobs"].wait_embedded)
            create_users(app, customers)
            port = start_lapak(stack, services, workdir, int(inputs["web_workers"]))
            tokens = [log_in(port, customer_email(i)) for i in range(customers)]
            customer_ids = user_ids(dsn, [customer_email(i) for i in range(customers)])
            staff_token = log_in(port, STAFF_EMAIL)
            admin_token = log_in(port, ADMIN_EMAIL)
            products = []
            for index in range(PRODUCTS):
                made = call_json(port, "POST", f"{API}/products", admin_token, {
                    "name": f"Cabai Rawit {index}", "province": "Jawa Barat",
                    "list_price": str(37000 + 1000 * index),
                }, expect=201)  # fmt: skip
                products.append({"uuid": made["id"], "name": made["name"]})
            for product, product_id in zip(
                products, product_ids(dsn, [p["uuid"] for p in products]), strict=True
            ):
                product["id"] = product_id
            print("  probe order (statements) ...", file=sys.stderr, flush=True)
            probe = probe_order(app, products[0]["uuid"], PROBE_ORDERS)
            floor_prepare(dsn, datetime.now(TIMEZONE).year)  # Lapak's made them: a no-op
            probe_customer = user_ids(dsn, [PROBE_CUSTOMER_EMAIL])[0]
            probe.update(floor_probe(dsn, probe_customer, products, PROBE_ORDERS))
            order_rows = measure_orders(port, dsn, tokens, customer_ids, products, inputs)
            numbering = numbering_check(dsn)
            fill = fill_orders(
                dsn, int(inputs["listing_rows"]), [*customer_ids, probe_customer], products
            )
            print("  listing: waiting for the replica ...", file=sys.stderr, flush=True)
            fill["replica_catch_up_s"] = round(wait_for_replica(services), 1)
            listing = measure_listing(
                port, app, services, staff_token, tokens[0], customer_ids[0], inputs
            )
    finally:
        services.stop()
    return {
        "orders": order_rows,
        "order_statements": probe,
        "numbering_after_orders": numbering,
        "listing_fill": fill,
        "listing": listing["pages"],
        "listing_walk": listing["walk"],
        "listing_orm_plans": listing["orm_plans"],
        "targets": targets(order_rows, listing["pages"]),
    }


def product_ids(dsn: str, uuids: Sequence[str]) -> list[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = dict(
            conn.execute(
                "SELECT uuid::text, id FROM marketplace_product WHERE uuid = ANY(%s::uuid[])",
                (list(uuids),),
            ).fetchall()
        )
    return [found[u] for u in uuids]


def targets(orders: Sequence[Mapping[str, Any]], listing: Sequence[Mapping[str, Any]]) -> dict:
    loaded = [r for r in orders if r["clients"] >= 8]
    return {
        "orders_at_8_plus_clients_at_least_50pct_of_floor": all(
            r["ratio_lapak_over_floor"] >= TARGET_FLOOR_RATIO for r in loaded
        ),
        "orders_p99_under_250_ms": all(
            (r["lapak_p99_ms"] or 1e9) < TARGET_ORDER_P99_MS for r in loaded
        ),
        "orders_0_errors": all(r["lapak_errors"] == 0 for r in orders),
        "listing_p99_under_30_ms": all(
            (r["http_p99_ms"] or 1e9) < TARGET_LIST_P99_MS for r in listing
        ),
        "listing_within_3x_of_bare_sql": all(
            (r["http_p99_over_bare_p99"] or 1e9) <= TARGET_LIST_VS_SQL for r in listing
        ),
        "listing_0_errors": all(r["errors"] == 0 for r in listing),
    }


def client_levels(text: str) -> list[int]:
    try:
        levels = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a comma-separated list of counts, not {text!r}"
        ) from None
    if not levels or levels[0] < 1:
        raise argparse.ArgumentTypeError("client counts are 1 or more")
    return levels


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.orders",
        description="POST /orders through gunicorn beside the SQL floor; GET /orders on the "
        "replica beside the bare keyset SQL.",
    )
    parser.add_argument("--orders", type=positive, default=None,
                        help="orders per client count and side (default 200 at 1 client, 600 "
                        "otherwise)")  # fmt: skip
    parser.add_argument("--clients", type=client_levels, default=list(DEFAULT_CLIENTS),
                        help="concurrent clients, comma-separated (default 1,8,32)")  # fmt: skip
    parser.add_argument("--listing-rows", type=non_negative, default=1_000_000,
                        help="orders in the table for the listing (default 1000000)")  # fmt: skip
    parser.add_argument("--requests", type=positive, default=300,
                        help="timed listing requests per page (default 300)")  # fmt: skip
    parser.add_argument("--walk-pages", type=positive, default=100,
                        help="pages of 100 walked with next_cursor for the deep page "
                        "(default 100)")  # fmt: skip
    parser.add_argument("--web-workers", type=positive, default=4,
                        help="gunicorn sync workers (default 4, for 2 cores)")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    inputs = {
        "orders": args.orders,
        "orders_per_level": {c: orders_at(c, {"orders": args.orders}) for c in args.clients},
        "clients": args.clients,
        "listing_rows": args.listing_rows,
        "requests": args.requests,
        "walk_pages": args.walk_pages,
        "web_workers": args.web_workers,
        "worker_class": "gunicorn sync (lapak serve); one connection per request",
        "order": "one line (quantity 2, one of 10 products), bank_transfer, no Idempotency-Key; "
        "each client thread its own logged-in customer; only 201 counts",
        "floor": "the same statements as Lapak's (checked on a probe order) with psycopg 3, no "
        "HTTP, one connection per thread: per order one durable transaction: PAY and SO numbers "
        "(nextval on the year's sequences, created up front), product and customer SELECTs, one "
        "INSERT each for the order, its line, the invoice, its line and the payment, one INSERT "
        "each for the order.confirmed and payment.registered events, the gap-free invoice "
        "number, the invoice.posted event's INSERT, COMMIT",
        "rounds": "two per client count, alternating which side goes first",
        "database": "throw-away PostgreSQL 15 primary + streaming replica (tests/servers.py); "
        "primary made durable (fsync, full_page_writes, synchronous_commit on), "
        "pg_stat_statements loaded",
        "outbox": "events written to core_outbox_event; no RQ worker runs, so none is delivered",
        "listing": "GET /api/v1/marketplace/orders?limit=50, one client, sequential; replica "
        "caught up first; bare and ORM SQL on the replica over one psycopg connection; the "
        "bare SQL reads the customer's uuid and the latest invoice's payment state too",
        "listing_fill": "one line and one posted invoice per order (in_payment; every fifth "
        "paid; cancelled orders reversed)",
    }
    return run_as_command(NAME, inputs, measure)


if __name__ == "__main__":
    sys.exit(main())
