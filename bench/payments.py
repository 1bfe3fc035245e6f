"""Wallet payments through gunicorn beside an HTTP floor and the SQL floor, and the demo
gateway's notifications processed.

``python -m bench.payments [--payments N] [--notifications N] [--clients 8,32] [--rounds R]
[--web-workers K]``

Set up as ``bench/orders.py`` sets up (and with its pieces): throw-away PostgreSQL (primary +
streaming replica) and Redis (``tests/servers.py``), the primary made durable again (``fsync``,
``full_page_writes``, ``synchronous_commit`` on) with ``pg_stat_statements`` loaded, migrated;
one customer per client thread, staff and an admin; Lapak served with ``lapak serve``
(gunicorn, K threaded workers) on 127.0.0.1 and the HTTP floor (``bench.floor_app`` under the same
gunicorn: :mod:`bench.serve_floor`). One product without a seller at 1,000.00: every
invoice is 1,110.00 (11% PPN).

**Wallet payments.** Each customer's IDR wallet is opened (``POST /api/v1/wallets``) and
funded by staff with one ``CREDIT_ADD`` (``POST /api/v1/ledger/transactions``) big enough for
all their payments. Every payment needs an unpaid invoice: they are all made up front through
the API, as ``tests/modules/wallet/test_wallet_payments.py``'s ``unpaid_invoice`` makes one (an
order placed with ``payment: {"provider": "bank_transfer"}``, its transaction then cancelled by
the customer with ``POST /api/v1/payments/{tx}/cancel``), each customer's own. Then
``POST /api/v1/payments`` with ``{"invoice": <id>, "provider": "wallet"}``, each client thread
as its own customer paying its own invoices, at 8 and 32 concurrent clients; only a 201 whose
transaction is ``success`` counts. In the same run, on the same tables, with the same threads and
tokens, two floors:

* **the HTTP floor**: ``bench.floor_app``'s ``POST /api/v1/payments``: the same JWT check, the
  same Redis session check, the SQL floor's statements in one transaction on a kept connection
  per worker, 201 with Lapak's JSON shape (checked on a probe payment of each);
* **the SQL floor**: the statements Lapak executes for one wallet payment
  (``bench.floor_payments.PAYMENT_STEPS``: 22 statements and the COMMIT; captured from the app's
  primary engine on a probe payment and checked against the floor's list, kind and text for
  text, the commit included) with psycopg in this process, no HTTP, one connection per thread;
  every value a statement needs computed in Python from the answers before it (the PAY number
  from ``nextval``, the ``TX/`` reference from the transaction's id, the wallet's balance and
  ``action``, the five events' payloads, and the ledger's ``PAYMENT_CAPTURE``: its four accounts
  and the chain head locked in one statement, the fingerprint, running balances and hash as
  ``modules.ledger.posting.post`` computes them, the write in one statement).

The bench refuses to measure (no result is written) unless the probe payment's statements and the
floor's are the same. Each level runs in ``--rounds`` rounds, each rotating which side goes
first; each client thread makes the same number of payments per round (the batch ends with
the last). Per level: payments/s, p50/p99 latency and errors of each side, the ratios
Lapak/HTTP floor (the target, >= 0.6) and Lapak/SQL floor, the statements that took the
database's time (``pg_stat_statements``) and what the backends were doing (``pg_stat_activity``).
After all of it, ``modules.ledger.verify.verify()`` must pass over the one hash chain that
Lapak's and the floors' postings share, and every invoice measured must be paid once.

What differs between Lapak and the floors (beyond the statements, which are the same):

* Outside the transaction, left to Lapak as its overhead: ``numbering.prepare_year`` (called
  twice; no statement once the year's PAY sequence exists), the pool's checkout (and its rare
  ping), ``SELECT pg_current_wal_insert_lsn()`` sent with the COMMIT (``X-Lapak-LSN``), the
  outbox dispatch flag and RQ enqueue (Redis), request ids and logs, marshmallow validation
  and rendering, the ``Idempotency-Key`` path (not sent).
* Decisions Lapak makes in Python that the floors make only for the shape the bench pays,
  refusing (never approximating) anything else: the amount is the whole residual (no
  ``amount`` sent); the fee is zero (the floor refuses a provider with fee columns set, Lapak
  computes ``fee_for``); the invoice's payment state is computed for a residual of zero only;
  the capture's split is that of seller-less lines (wallet DR, receivable CR, sales income CR
  and sales clearing DR of the untaxed amount: no commission leg, no ``part()`` of a partial
  payment); the ledger posting's fast path only (every account open); the wallet's checks are
  "exists, not frozen, holds enough" as the adapter's.
* The fingerprint is computed by ``modules.ledger.posting.Posting.fingerprint`` itself (a pure
  function; ``bench.floor`` copies it for orders), the hash by ``modules.ledger.chain``.
* The SQL floor's threads share this one Python process (and its GIL) while the HTTP floor and
  Lapak run in K gunicorn processes: under load its backends wait on the ledger's chain head
  lock while their Python thread computes the posting, so it can be slower than the HTTP
  floor; both ratios are reported, the target is on the HTTP floor's.

**Notifications.** Pending demo gateway transactions are made up front (orders placed with
``payment: {"provider": "demo"}``), then each gets one signed notification of success
(``POST /api/v1/payments/providers/demo/notify``, HMAC-SHA256 with the provider's
``webhook_secret`` as ``tests/modules/payment/conftest.py``'s ``signed_headers``, the payload as
its ``notification()``), at 8 and 32 concurrent clients; only a 200 whose transaction is
``success`` counts, and each transaction is checked ``success`` in the database afterwards.
Notifications/s and p50/p99; no floor (the issue asks for the rate).

Only 127.0.0.1 is contacted, counts are bounded, and every server started is stopped, even on
failure or Ctrl-C/SIGTERM/SIGHUP.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack, suppress
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from app import create_app
from app.db import transaction
from app.migrate import upgrade
from bench.floor import FloorRefused
from bench.floor_payments import pay as floor_pay
from bench.floor_payments import payment_statements
from bench.http_overhead import HOST, WORKER_CLASS, positive
from bench.orders import (
    ADMIN_EMAIL,
    CONTROL_KINDS,
    ORDER_TABLES,
    PROBE_CUSTOMER_EMAIL,
    REQUEST_TIMEOUT_S,
    STAFF_EMAIL,
    WAL_STATS_DELAY_S,
    Batch,
    StatementsDiffer,
    _paths,
    call,
    call_json,
    capturing,
    client_levels,
    create_users,
    customer_email,
    durable_primary,
    in_process_login,
    ledger_check,
    log_in,
    normalised,
    observed,
    percentile_ms,
    settings_for,
    shape,
    start_http_floor,
    start_lapak,
    statement_kind,
    summarise_db,
    user_ids,
)
from bench.runner import Figures, run_as_command
from modules.payment.providers import get_provider, provider_secrets
from modules.payment.services import signature
from tests.servers import start_services

NAME = "payments"
DEFAULT_CLIENTS = (8, 32)
API = "/api/v1"
PAYMENTS = f"{API}/payments"
ORDERS = f"{API}/marketplace/orders"
WALLETS = f"{API}/wallets"
NOTIFY = f"{PAYMENTS}/providers/demo/notify"
#: The invoice of one order: 1 x 1,000.00 + 11% PPN = 1,110.00.
PRICE = "1000.00"
FUNDS = Decimal("100000000.00")
FLOOR_APP = "bench-payments-floor"
HTTP_FLOOR_APP = "bench-http-floor"  # bench.floor_app's connections
SIDES = ("lapak", "http_floor", "floor")
SIDE_APPLICATIONS = {"lapak": "lapak", "http_floor": HTTP_FLOOR_APP, "floor": FLOOR_APP}
TARGET_HTTP_FLOOR_RATIO = 0.6
WARM_PER_SIDE = 3  # payments per warm-up customer and side
PROBE_PAYMENTS = 3  # in-process: the first primes, the second is compared, the third checks
PREPARE_THREADS = 8


# --- requests ----------------------------------------------------------------------------------


def order_body(product_uuid: str, provider: str) -> dict[str, Any]:
    return {
        "lines": [{"product": product_uuid, "quantity": "1"}],
        "payment": {"provider": provider},
    }


def unpaid_invoice(port: int, token: str, product_uuid: str) -> str:
    """An invoice awaiting payment, as ``test_wallet_payments.unpaid_invoice`` makes it: an
    order placed through a bank transfer whose transaction the payer then cancels."""
    placed = call_json(port, "POST", ORDERS, token, order_body(product_uuid, "bank_transfer"),
                       expect=201)  # fmt: skip
    call_json(port, "POST", f"{PAYMENTS}/{placed['transaction']['id']}/cancel", token)
    return placed["invoice"]["id"]


def pending_demo(port: int, token: str, product_uuid: str) -> dict[str, Any]:
    """A pending demo gateway transaction: an order placed paying through ``demo``."""
    placed = call_json(port, "POST", ORDERS, token, order_body(product_uuid, "demo"), expect=201)
    tx = placed["transaction"]
    if tx["state"] != "pending":
        raise RuntimeError(f"a demo transaction started {tx['state']}")
    return tx


def fund_wallet(port: int, token: str, staff_token: str, customer_uuid: str) -> None:
    """Open the customer's IDR wallet and credit it by hand (staff ``CREDIT_ADD``)."""
    status, answer = call(port, "POST", WALLETS, token, {"currency": "IDR"})
    if status not in (201, 409):
        raise RuntimeError(f"opening a wallet answered {status}: {answer[:300]!r}")
    credit = {
        "operation": "CREDIT_ADD",
        "nonce": f"bench-fund-{customer_uuid}",
        "currency": "IDR",
        "holder": customer_uuid,
        "amount": str(FUNDS),
    }
    call_json(port, "POST", f"{API}/ledger/transactions", staff_token, credit, expect=201)


def http_payer(port: int, token: str) -> Callable[[str], str | None]:
    """Pay an invoice from the wallet through the server on ``port`` as ``token``'s customer."""

    def pay(invoice: str) -> str | None:
        status, answer = call(port, "POST", PAYMENTS, token, {"invoice": invoice,
                                                              "provider": "wallet"})  # fmt: skip
        if status != 201:
            return f"{status}: {answer.decode(errors='replace')}"
        state = json.loads(answer).get("state")
        return None if state == "success" else f"201 but the transaction is {state}"

    return pay


def floor_payer(conn: psycopg.Connection, customer_id: int) -> Callable[[str], str | None]:
    def pay(invoice: str) -> str | None:
        try:
            floor_pay(conn, customer_id, invoice)
        except FloorRefused as refused:
            return str(refused)
        return None

    return pay


def floor_connection(dsn: str) -> psycopg.Connection:
    return psycopg.connect(dsn, application_name=FLOOR_APP, autocommit=False)


def notify(port: int, secret: str, tx: Mapping[str, Any]) -> tuple[int, bytes]:
    """The demo gateway's signed notification that ``tx`` succeeded (``conftest.notification``
    and ``signed_headers``), on a fresh connection."""
    payload = {
        "reference": tx["reference"],
        "provider_reference": f"demo_{tx['reference'][-5:]}",
        "state": "success",
        "amount": tx["amount"],
        "currency": tx["currency"],
    }
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Lapak-Timestamp": stamp,
        "X-Lapak-Signature": signature(secret, stamp, body),
    }
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request("POST", NOTIFY, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def notifier(port: int, secret: str) -> Callable[[Mapping[str, Any]], str | None]:
    def send(tx: Mapping[str, Any]) -> str | None:
        status, answer = notify(port, secret, tx)
        if status != 200:
            return f"{status}: {answer.decode(errors='replace')}"
        state = json.loads(answer).get("state")
        return None if state == "success" else f"200 but the transaction is {state}"

    return send


# --- driving -----------------------------------------------------------------------------------


def drive_queues(workers: Sequence[Callable[[Any], str | None]], queues: Sequence[list[Any]],
                 ) -> Batch:  # fmt: skip
    """One thread per worker, each through its own queue (its customer's invoices) to the end;
    the batch lasts until the last one is done. A worker returns None or an error."""
    batch = Batch()
    start = threading.Barrier(len(workers) + 1, timeout=REQUEST_TIMEOUT_S)

    def run(worker: Callable[[Any], str | None], queue: list[Any]) -> None:
        start.wait()
        for item in queue:
            began = time.perf_counter()
            try:
                error = worker(item)
            except Exception as exc:  # counted and shown, the run goes on
                error = f"{type(exc).__name__}: {exc}"
            batch.record(time.perf_counter() - began, error)

    threads = [
        threading.Thread(target=run, args=(w, q), daemon=True)
        for w, q in zip(workers, queues, strict=True)
    ]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    batch.seconds = time.perf_counter() - began
    return batch


def prepared(make: Callable[[int], Any], wanted: Sequence[int], what: str) -> list[list[Any]]:
    """``wanted[i]`` results of ``make(i)`` for each customer ``i``, made by a few threads."""
    made: list[list[Any]] = [[] for _ in wanted]
    jobs = [i for i, count in enumerate(wanted) for _ in range(count)]
    lock, errors = threading.Lock(), []
    print(f"  preparing {len(jobs)} {what} ...", file=sys.stderr, flush=True)

    def run() -> None:
        while True:
            with lock:
                if not jobs or errors:
                    return
                customer = jobs.pop()
            try:
                result = make(customer)
            except Exception as exc:
                with lock:
                    errors.append(exc)
                return
            with lock:
                made[customer].append(result)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(PREPARE_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"preparing {what}: {errors[0]}") from errors[0]
    return made


def per_thread(count: int, clients: int, rounds: int) -> int:
    """Payments each client thread makes per round, so a level makes at least ``count``."""
    return max(1, math.ceil(count / (clients * rounds)))


# --- the probe ---------------------------------------------------------------------------------

#: The tables a wallet payment touches, beside the order's (``bench.orders.ORDER_TABLES``).
PAYMENT_TABLES = (*ORDER_TABLES, "payment_", "wallet_")


def payment_kinds(statements: Sequence[str]) -> list[str]:
    """The kinds of the statements on the payment's tables, and the transactions' ends."""
    return [
        kind
        for kind in map(statement_kind, statements)
        if kind in CONTROL_KINDS
        or kind.upper().startswith("SET ")
        or kind.removeprefix("WITH ").split(" ", 1)[-1].startswith(PAYMENT_TABLES)
    ]


def probe_payment(app: Any, invoices: Sequence[str]) -> dict[str, Any]:
    """Wallet payments made in-process through the real view (no HTTP, no contention): the
    first primes the process (and opens the sales income account), the second one's
    statements are compared with the floor's; the rest timed."""
    client = app.test_client()
    headers = in_process_login(client, PROBE_CUSTOMER_EMAIL)
    engine = app.extensions["lapak.db"].primary
    totals = []
    statements: list[str] = []
    with capturing(engine) as captured:
        for number, invoice in enumerate(invoices):
            captured.clear()
            began = time.perf_counter()
            answer = client.post(PAYMENTS, json={"invoice": invoice, "provider": "wallet"},
                                 headers=headers)  # fmt: skip
            ended = time.perf_counter()
            if answer.status_code != 201 or answer.get_json()["state"] != "success":
                raise RuntimeError(f"probe payment answered {answer.status_code}: {answer.text}")
            if number == 1:
                statements = [sql for sql, _ in captured]
            if number >= 1:
                totals.append(ended - began)
    floor_sql_text = payment_statements()
    lapak, floor = payment_kinds(statements), payment_kinds(floor_sql_text)
    lapak_sql = [normalised(s) for s in statements if statement_kind(s) in lapak]
    floor_sql = [normalised(s) for s in floor_sql_text]
    return {
        "lapak_statements": [statement_kind(s) for s in statements],
        "lapak_payment_statements": len(lapak),
        "floor_statements": len(floor),
        "floor_matches_lapak": lapak == floor,
        "floor_sql_identical": lapak_sql == floor_sql,
        "sql_differences": [
            {"lapak": a, "floor": b} for a, b in zip(lapak_sql, floor_sql, strict=False) if a != b
        ][:3],
        "lapak_only": sorted((Counter(lapak) - Counter(floor)).elements()),
        "floor_only": sorted((Counter(floor) - Counter(lapak)).elements()),
        "not_in_the_floor": "statements on no payment table: none seen; a ping (;) at a "
        "checkout of an idle connection, the auth session check when its Redis entry expired, "
        "SELECT pg_current_wal_insert_lsn() sent with the COMMIT (X-Lapak-LSN), the outbox "
        "dispatch flag and RQ enqueue (Redis)",
        "in_process_payments": len(totals),
        "in_process_ms_p50": percentile_ms(sorted(totals), 50),
    }


def checked_statements(probe: Mapping[str, Any]) -> None:
    if not (probe["floor_matches_lapak"] and probe["floor_sql_identical"]):
        raise StatementsDiffer(
            "the floor's payment statements differ from Lapak's; update "
            "bench.floor_payments.PAYMENT_STEPS: "
            + json.dumps({key: probe[key] for key in (
                "lapak_statements", "lapak_only", "floor_only", "sql_differences")}, indent=1)
        )  # fmt: skip


def same_shape(lapak_port: int, floor_port: int, token: str, invoices: Sequence[str]) -> dict:
    """Lapak's and the HTTP floor's 201 for a payment each (of two invoices): the same shape."""
    answers = {}
    for side, port, invoice in (("lapak", lapak_port, invoices[0]),
                                ("http_floor", floor_port, invoices[1])):  # fmt: skip
        body = {"invoice": invoice, "provider": "wallet"}
        answers[side] = call_json(port, "POST", PAYMENTS, token, body, expect=201)
    lapak, floor = _paths(shape(answers["lapak"])), _paths(shape(answers["http_floor"]))
    return {
        "same_shape": lapak == floor,
        "lapak_only": sorted(lapak - floor),
        "http_floor_only": sorted(floor - lapak),
        "same_state": answers["lapak"]["state"] == answers["http_floor"]["state"] == "success",
    }


# --- measuring ---------------------------------------------------------------------------------


def measure_payments(
    ports: Mapping[str, int], dsn: str, tokens: Sequence[str], customer_ids: Sequence[int],
    invoices: Mapping[tuple[int, str], list[list[str]]], inputs: Mapping[str, Any],
) -> list[dict[str, Any]]:  # fmt: skip
    """``invoices[(clients, side)][customer]``: that customer's invoices for the level and side,
    one slice per round."""
    levels, rounds = list(inputs["clients"]), int(inputs["rounds"])
    connections = [floor_connection(dsn) for _ in range(max(levels))]
    rows = []
    try:
        time.sleep(WAL_STATS_DELAY_S)  # the preparation's WAL counters reported first
        for clients in levels:
            each = per_thread(int(inputs["payments"]), clients, rounds)
            workers = {
                side: [http_payer(ports[side], tokens[i]) for i in range(clients)]
                for side in ("lapak", "http_floor")
            }
            workers["floor"] = [floor_payer(connections[i], customer_ids[i])
                                for i in range(clients)]  # fmt: skip
            batches = {side: Batch() for side in SIDES}
            db: dict[str, dict[str, Any]] = {side: {} for side in SIDES}
            for round_ in range(rounds):
                print(f"  payments: {clients} client(s), round {round_ + 1} of {rounds} ...",
                      file=sys.stderr, flush=True)  # fmt: skip
                for side in SIDES[round_ % 3 :] + SIDES[: round_ % 3]:
                    queues = [q[round_ * each : (round_ + 1) * each]
                              for q in invoices[(clients, side)]]  # fmt: skip
                    with observed(dsn, SIDE_APPLICATIONS[side], db[side]):
                        batches[side].merge(drive_queues(workers[side], queues))
            rows.append(payment_row(clients, each * clients * rounds, batches, db))
    finally:
        for conn in connections:
            with suppress(psycopg.Error):
                conn.close()
    return rows


def payment_row(
    clients: int, count: int, batches: Mapping[str, Batch], db: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    row: dict[str, Any] = {"clients": clients, "payments": count}
    rates = {}
    for side in SIDES:
        batch = batches[side]
        batch.latencies.sort()
        rates[side] = (batch.calls - batch.errors) / batch.seconds
        row[f"{side}_payments_per_s"] = round(rates[side], 1)
        row[f"{side}_p50_ms"] = percentile_ms(batch.latencies, 50)
        row[f"{side}_p99_ms"] = percentile_ms(batch.latencies, 99)
        row[f"{side}_errors"] = batch.errors
    row["ratio_lapak_over_http_floor"] = round(rates["lapak"] / rates["http_floor"], 3)
    row["ratio_lapak_over_floor"] = round(rates["lapak"] / rates["floor"], 3)
    row["ratio_http_floor_over_floor"] = round(rates["http_floor"] / rates["floor"], 3)
    for side in SIDES:
        row[f"{side}_error_samples"] = batches[side].error_samples
    for side in SIDES:
        summary = summarise_db(db[side], count)
        for key in ("client_cpu_ms_per_order", "postgres_cpu_ms_per_order"):
            summary.pop(key)  # not read here
        row[f"{side}_db"] = {
            key.replace("_per_order", "_per_payment"): value for key, value in summary.items()
        }
        for statement in row[f"{side}_db"]["top_statements"]:
            statement["calls_per_payment"] = statement.pop("calls_per_order")
    return row


def measure_notifications(
    port: int, secret: str, txs: Mapping[int, list[list[dict[str, Any]]]], dsn: str
) -> list[dict[str, Any]]:
    rows = []
    for clients, queues in txs.items():
        print(f"  notifications: {clients} client(s) ...", file=sys.stderr, flush=True)
        batch = drive_queues([notifier(port, secret) for _ in queues], queues)
        batch.latencies.sort()
        references = [tx["reference"] for q in queues for tx in q]
        with psycopg.connect(dsn, autocommit=True) as conn:
            succeeded = conn.execute(
                "SELECT count(*) FROM payment_transaction WHERE reference = ANY(%s) "
                "AND state = 'success'",
                (references,),
            ).fetchone()[0]
        rows.append({
            "clients": clients,
            "notifications": len(references),
            "notifications_per_s": round((batch.calls - batch.errors) / batch.seconds, 1),
            "p50_ms": percentile_ms(batch.latencies, 50),
            "p99_ms": percentile_ms(batch.latencies, 99),
            "errors": batch.errors,
            "transactions_success_in_db": succeeded,
            "error_samples": batch.error_samples,
        })  # fmt: skip
    return rows


def paid_check(dsn: str, invoices: Sequence[str]) -> dict[str, Any]:
    """Every invoice measured paid, by exactly one successful wallet transaction."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        paid, captured = conn.execute(
            "SELECT count(*) FILTER (WHERE m.payment_state = 'paid' AND m.amount_residual = 0),"
            " (SELECT count(*) FROM payment_transaction AS t JOIN payment_provider AS p "
            "  ON p.id = t.provider_id WHERE p.code = 'wallet' AND t.state = 'success' "
            "  AND t.invoice_id = ANY(array_agg(m.id))) "
            "FROM marketplace_account_move AS m WHERE m.uuid = ANY(%s::uuid[])",
            (list(invoices),),
        ).fetchone()
    return {"invoices": len(invoices), "paid": paid, "wallet_transactions_success": captured}


def measure(inputs: Mapping[str, Any]) -> Figures:
    levels, rounds = list(inputs["clients"]), int(inputs["rounds"])
    customers = max(levels)
    services = start_services()
    try:
        with tempfile.TemporaryDirectory(prefix="lapak-bench-payments-") as tmp, \
                ExitStack() as stack:  # fmt: skip
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
            workers = int(inputs["web_workers"])
            lapak = start_lapak(stack, services, workdir, workers)
            http_floor = start_http_floor(stack, app, services, workdir, workers)
            port, floor_port = lapak.port, http_floor.port
            ports = {"lapak": port, "http_floor": floor_port}
            emails = [customer_email(i) for i in range(customers)]
            tokens = [log_in(port, email) for email in emails]
            customer_ids = user_ids(dsn, emails)
            probe_token = log_in(port, PROBE_CUSTOMER_EMAIL)
            staff_token = log_in(port, STAFF_EMAIL)
            admin_token = log_in(port, ADMIN_EMAIL)
            product = call_json(port, "POST", f"{API}/marketplace/products", admin_token, {
                "name": "Bandeng Presto", "province": "Jawa Tengah", "list_price": PRICE,
            }, expect=201)["id"]  # fmt: skip
            with psycopg.connect(dsn, autocommit=True) as conn:
                uuids = dict(conn.execute(
                    "SELECT email_key, uuid::text FROM user_account WHERE email_key = ANY(%s)",
                    ([*emails, PROBE_CUSTOMER_EMAIL],),
                ).fetchall())  # fmt: skip
            for token, email in [*zip(tokens, emails, strict=True),
                                 (probe_token, PROBE_CUSTOMER_EMAIL)]:  # fmt: skip
                fund_wallet(port, token, staff_token, uuids[email])

            prepare_began = time.perf_counter()
            # Invoices: per level and side, each client thread's customer's own, per round.
            wanted = [0] * customers
            for clients in levels:
                each = per_thread(int(inputs["payments"]), clients, rounds) * rounds
                for i in range(clients):
                    wanted[i] += each * len(SIDES)
            warm = min(8, customers)
            for i in range(warm):
                wanted[i] += WARM_PER_SIDE * len(SIDES)
            wanted[0] += 2  # the HTTP floor's shape check
            made = prepared(lambda i: unpaid_invoice(port, tokens[i], product), wanted,
                            "unpaid invoices")  # fmt: skip
            probe_invoices = prepared(
                lambda _: unpaid_invoice(port, probe_token, product), [PROBE_PAYMENTS + 1],
                "probe invoices",
            )[0]  # fmt: skip
            pools = [list(m) for m in made]
            shape_invoices = [pools[0].pop(), pools[0].pop()]
            warm_invoices = {
                side: [[pools[i].pop() for _ in range(WARM_PER_SIDE)] for i in range(warm)]
                for side in SIDES
            }
            invoices: dict[tuple[int, str], list[list[str]]] = {}
            for clients in levels:
                each = per_thread(int(inputs["payments"]), clients, rounds) * rounds
                for side in SIDES:
                    invoices[(clients, side)] = [
                        [pools[i].pop() for _ in range(each)] for i in range(clients)
                    ]
            notifications: dict[int, list[list[dict[str, Any]]]] = {}
            for clients in levels:
                each = max(1, math.ceil(int(inputs["notifications"]) / clients))
                notifications[clients] = prepared(
                    lambda i: pending_demo(port, tokens[i], product), [each] * clients,
                    f"pending demo transactions ({clients} clients)",
                )  # fmt: skip

            prepare_s = round(time.perf_counter() - prepare_began, 1)
            print("  probe payment (statements) ...", file=sys.stderr, flush=True)
            probe = probe_payment(app, probe_invoices[:PROBE_PAYMENTS])
            checked_statements(probe)
            with floor_connection(dsn) as conn:  # the SQL floor pays the probe's last one
                began = time.perf_counter()
                floor_pay(conn, user_ids(dsn, [PROBE_CUSTOMER_EMAIL])[0], probe_invoices[-1])
                probe["floor_uncontended_ms"] = round((time.perf_counter() - began) * 1000, 2)
            probe["http_floor_answer"] = same_shape(port, floor_port, tokens[0], shape_invoices)
            if not probe["http_floor_answer"]["same_shape"]:
                raise StatementsDiffer(f"the HTTP floor's answer: {probe['http_floor_answer']}")

            print("  payments: warm-up ...", file=sys.stderr, flush=True)
            with ExitStack() as conns:
                floor_conns = [conns.enter_context(floor_connection(dsn)) for _ in range(warm)]
                warm_workers = {
                    side: [http_payer(ports[side], tokens[i]) for i in range(warm)]
                    for side in ("lapak", "http_floor")
                }
                warm_workers["floor"] = [floor_payer(floor_conns[i], customer_ids[i])
                                         for i in range(warm)]  # fmt: skip
                for side in SIDES:
                    batch = drive_queues(warm_workers[side], warm_invoices[side])
                    if batch.errors:
                        raise RuntimeError(f"{side} warm-up: {batch.error_samples}")
            rows = measure_payments(ports, dsn, tokens, customer_ids, invoices, inputs)
            with app.app_context(), transaction():
                secret = provider_secrets(get_provider("demo"))["webhook_secret"]
            notification_rows = measure_notifications(port, secret, notifications, dsn)
            measured = [inv for queues in invoices.values() for q in queues for inv in q]
            paid = paid_check(dsn, measured)
            paid["ledger_verify"] = ledger_check(app)
            paid["preparing_invoices_and_demo_transactions_s"] = prepare_s
    finally:
        services.stop()
    return {
        "payments": rows,
        "payment_statements": probe,
        "after_payments": paid,
        "notifications": notification_rows,
        "targets": targets(rows, notification_rows, paid),
    }


def targets(rows: Sequence[Mapping[str, Any]], notifications: Sequence[Mapping[str, Any]],
            paid: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    return {
        "payments_at_least_60pct_of_http_floor": all(
            r["ratio_lapak_over_http_floor"] >= TARGET_HTTP_FLOOR_RATIO for r in rows
        ),
        "payments_0_errors": all(
            r["lapak_errors"] == r["http_floor_errors"] == r["floor_errors"] == 0 for r in rows
        ),
        "every_measured_invoice_paid_once": paid["invoices"]
        == paid["paid"]
        == paid["wallet_transactions_success"],
        "notifications_0_errors_all_success": all(
            r["errors"] == 0 and r["transactions_success_in_db"] == r["notifications"]
            for r in notifications
        ),
        "ledger_verify_ok": paid["ledger_verify"]["ok"],
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.payments",
        description="POST /payments (wallet) through gunicorn beside the HTTP floor and the SQL "
        "floor; demo gateway notifications processed.",
    )
    parser.add_argument("--payments", type=positive, default=256,
                        help="payments per client count and side, rounded up to a whole number "
                        "per client thread and round (default 256)")  # fmt: skip
    parser.add_argument("--notifications", type=positive, default=256,
                        help="notifications per client count (default 256)")  # fmt: skip
    parser.add_argument("--clients", type=client_levels, default=list(DEFAULT_CLIENTS),
                        help="concurrent clients, comma-separated (default 8,32)")  # fmt: skip
    parser.add_argument("--rounds", type=positive, default=2,
                        help="rounds per client count, rotating which side goes first "
                        "(default 2)")  # fmt: skip
    parser.add_argument("--web-workers", type=positive, default=4,
                        help="gunicorn workers (default 4, for 2 cores)")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    inputs = {
        "payments": args.payments,
        "payments_per_level": {
            c: per_thread(args.payments, c, args.rounds) * c * args.rounds for c in args.clients
        },
        "notifications": args.notifications,
        "clients": args.clients,
        "rounds": args.rounds,
        "web_workers": args.web_workers,
        "worker_class": WORKER_CLASS,
        "payment": "POST /api/v1/payments {invoice, provider: wallet}, no Idempotency-Key; each "
        "client thread its own logged-in customer paying its own unpaid invoice (1,110.00, one "
        "seller-less product) in full from its funded IDR wallet; only 201 + success counts",
        "floor": "the SQL floor: Lapak's 22 statements for one wallet payment "
        "(bench.floor_payments.PAYMENT_STEPS, checked kind and text for text on a probe "
        "payment) with psycopg 3, no HTTP, one connection per thread, one durable transaction, "
        "PAYMENT_CAPTURE computed as the ledger does (fingerprint by Posting.fingerprint, hash "
        "by modules.ledger.chain)",
        "http_floor": "bench.floor_app under gunicorn (sync, the same worker count and "
        "timeouts as lapak serve): the same JWT and Redis session checks, the SQL floor's "
        "statements in one transaction on a kept psycopg connection per worker, 201 with "
        "Lapak's JSON shape",
        "round_order": "each round rotates which side goes first (lapak, http_floor, floor)",
        "notification": "POST /api/v1/payments/providers/demo/notify, HMAC-signed success for "
        "a distinct pending demo transaction each; only 200 + success counts",
        "database": "throw-away PostgreSQL 15 primary + streaming replica (tests/servers.py); "
        "primary made durable (fsync, full_page_writes, synchronous_commit on), "
        "pg_stat_statements loaded",
        "outbox": "events written to core_outbox_event; no RQ worker runs, so none is delivered",
    }
    return run_as_command(NAME, inputs, measure)


if __name__ == "__main__":
    sys.exit(main())
