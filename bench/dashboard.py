"""Dashboard stats over a year of N payments beside the bare rollup query; the rebuild of the
rollups from those payments; a seller's recent transactions and the settlement summary's plans.

``python -m bench.dashboard [--payments 1000000] [--sellers 200] [--days 365] [--requests 200]
[--web-workers 2]``

Starts throw-away PostgreSQL (primary + streaming replica) and Redis (``tests/servers.py``),
migrates, creates staff, a customer and ``--sellers`` sellers (each with their pending and
available ledger accounts holding a balance, and a product), plus one seller who sells rarely,
and serves Lapak with ``lapak serve`` (gunicorn) on 127.0.0.1, reading from the replica.

**The payments** are generated set-based (``generate_series`` into the source tables, not
through the API): N orders over the last ``--days`` days of the marketplace, in time order, each
with its posted invoice (one line of one seller's product, 11 % tax, 5 % commission) and one
payment in full, spread over four providers: ``demo`` and ``wallet`` pay through a provider
transaction (85 % succeeded, 10 % failed, 5 % given up), ``bank_transfer`` and ``cash`` are
confirmed by staff (manual); one paid payment in 33 is refunded by half (with its credit note).
One payment in 50,000 is the rare seller's. Twenty completed settlements per seller, over the
last year, are written too, so the settlement summary reads rows as well. (The database's
triggers fill ``dashboard_seller_payment`` from the lines and payments as they go in.) Then
VACUUM ANALYZE.

**The rebuild** (``modules.dashboard.rollups.rebuild``, in this process, on the primary) counts
them into the rollups from nothing, then again (the rollups right already): its facts, its time
and how long it held the dashboard's tables locked (the subscribers wait only that long). Then
VACUUM ANALYZE of the rollups and a wait until the replica has replayed it all.

**Measured**, ``--requests`` sequential requests each, after a warm-up: ``GET
/api/v1/dashboard/stats`` over the whole period (``from`` .. ``to``: ``--days`` days, the
daily series, the provider and status split and the settlement summary), as staff (the
platform's rows) and as one seller (their share), over HTTP; and beside each, in the same run
on the replica with psycopg, **the bare rollup query**: the ``SELECT`` of the period's rollup
rows the endpoint sends (summed per day and per provider, one ``UNION ALL``; its text compiled
from ``modules.dashboard.services.ROLLUPS``), nothing else. p50/p99 of each, the ratio of the
p50s, the rollup rows the period holds and the plan of the rollup query. The answer
is checked before timing: the staff's totals count exactly the N payments. The issue's target
is a stats p99 under 100 ms over 1M payments. Then the first page of ``GET
/api/v1/dashboard/transactions`` as staff, a seller and the rare seller (p50/p99), and the
plans (``EXPLAIN ANALYZE`` on the replica) of the statements the endpoints send for a seller's
page, the rare seller's, and the staff's settlement summary (default period: 30 days), as
captured from an in-process request: a seller's page should walk their payments by time
(``ix_dashboard_seller_payment_seller_id_created_at_payment_id``, backward, stopping at the
page: no sort) and the summary start from the settlements' index
(``ix_seller_settlement_currency_state_completed_at``).

Only 127.0.0.1 is contacted, counts are bounded, and every server started is stopped, even on
failure or Ctrl-C/SIGTERM/SIGHUP.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Mapping
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy.dialects import postgresql

from app import create_app
from app.db import transaction
from app.migrate import upgrade
from bench.http_overhead import positive
from bench.orders import (
    PASSWORD,
    call_json,
    explain,
    log_in,
    percentile_ms,
    settings_for,
    start_lapak,
    timed_http,
    wait_for_replica,
)
from bench.runner import Figures, run_as_command
from modules.ledger.chart import CORE_PURPOSES, account_code, account_name
from modules.user.services import create_user
from tests.servers import start_services
from tests.statements import recorded_in

NAME = "dashboard"
STATS = "/api/v1/dashboard/stats"
TRANSACTIONS = "/api/v1/dashboard/transactions?limit=50"
STAFF_EMAIL = "bench.dashboard.staff@example.test"
CUSTOMER_EMAIL = "bench.dashboard.customer@example.test"
RARE_EMAIL = "bench.dashboard.rare.seller@example.test"
CURRENCY = "IDR"
ZONE = ZoneInfo("Asia/Jakarta")
PROVIDERS = ("demo", "bank_transfer", "cash", "wallet")
#: Of the providers, those that pay through a provider transaction (the others: by hand).
TRANSACTION_PROVIDERS = ("demo", "wallet")
WARMUP = 20
TARGET_P99_MS = 100.0
SETTLEMENTS_PER_SELLER = 20
#: One payment in this many is the rare seller's.
RARE_EVERY = 50_000
COUNT_ROWS = (
    "SELECT count(*) FROM dashboard_daily WHERE seller_id = %(seller_id)s "
    "AND currency = %(currency)s AND day BETWEEN %(since)s AND %(until)s"
)

#: N payments of the last ``days`` days in time order, each with its order, invoice, invoice
#: line (one seller's product), provider transaction (``demo``, ``wallet``) and, one paid in
#: 33, a refund of half with its credit note; the sellers' completed settlements. Ids are taken
#: from the tables' sequences up front, so each table is one INSERT ... SELECT. ``%(...)s`` are
#: psycopg's placeholders.
FILL = (
    """
CREATE TEMPORARY TABLE bench_payment AS
SELECT s.*, s.untaxed + s.tax AS total,
       s.provider IN ('bank_transfer', 'cash') OR s.outcome = 'success' AS paid,
       (s.provider IN ('bank_transfer', 'cash') OR s.outcome = 'success') AND s.i %% 33 = 0
           AS refunded,
       nextval(pg_get_serial_sequence('marketplace_sale_order', 'id')) AS order_id,
       nextval(pg_get_serial_sequence('marketplace_account_move', 'id')) AS invoice_id,
       nextval(pg_get_serial_sequence('marketplace_payment', 'id')) AS payment_id,
       nextval(pg_get_serial_sequence('marketplace_account_move', 'id')) AS credit_note_id
FROM (
    SELECT i, %(start)s::timestamptz + (i - 1) * %(step_us)s::bigint * interval '1 microsecond'
               AS at,
           p.provider,
           CASE WHEN p.provider IN ('bank_transfer', 'cash') THEN 'manual'
                WHEN i %% 20 < 17 THEN 'success' WHEN i %% 20 < 19 THEN 'failed'
                ELSE 'canceled' END AS outcome,
           CASE p.provider WHEN 'demo' THEN %(demo_method)s WHEN 'wallet' THEN %(wallet_method)s
                ELSE p.provider END AS method,
           CASE WHEN i %% %(rare_every)s = 1 THEN %(rare_seller)s
                ELSE %(first_seller)s + (i %% %(sellers)s) END AS seller,
           u.untaxed, round(u.untaxed * 0.11, 2) AS tax
    FROM generate_series(1, %(payments)s::bigint) AS i,
         LATERAL (SELECT (ARRAY['demo', 'bank_transfer', 'cash', 'wallet'])[1 + (i / 7) %% 4]
                         AS provider) AS p,
         LATERAL (SELECT round((1000000 + (i * 7919) %% 99000000) / 100.0, 2) AS untaxed) AS u
) AS s
""",
    """
INSERT INTO marketplace_product (uuid, name, list_price, active, seller_id, created_at,
                                 updated_at)
SELECT gen_random_uuid(), 'BENCH ' || s, 10000, true, s, now(), now()
FROM unnest(%(all_sellers)s::int[]) AS s
""",
    """
INSERT INTO marketplace_sale_order (id, uuid, name, state, customer_id, created_by_id, currency,
                                    currency_rate, tax_percent, date_order, amount_untaxed,
                                    amount_tax, amount_total)
SELECT order_id, gen_random_uuid(), 'SO/BENCH/' || i, 'sale', %(customer)s, %(customer)s, 'IDR',
       1, 11, at, untaxed, tax, total
FROM bench_payment
""",
    """
INSERT INTO marketplace_account_move (id, uuid, name, move_type, state, payment_state, order_id,
                                      customer_id, currency, invoice_date, invoice_date_due,
                                      amount_untaxed, amount_tax, amount_total, amount_residual,
                                      commission_percent, created_at)
SELECT invoice_id, gen_random_uuid(), 'INV/BENCH/' || i, 'out_invoice', 'posted',
       CASE WHEN paid THEN 'paid' ELSE 'not_paid' END, order_id, %(customer)s, 'IDR',
       CAST(at AT TIME ZONE 'Asia/Jakarta' AS date),
       CAST(at AT TIME ZONE 'Asia/Jakarta' AS date) + 14, untaxed, tax, total,
       CASE WHEN paid THEN 0 ELSE total END, 5, at
FROM bench_payment
""",
    """
INSERT INTO marketplace_account_move_line (move_id, product_id, seller_id, sequence, name,
                                           quantity, price_unit, price_subtotal, price_tax,
                                           price_total)
SELECT b.invoice_id, p.id, b.seller, 0, 'BENCH', 1, b.untaxed, b.untaxed, b.tax, b.total
FROM bench_payment AS b JOIN marketplace_product AS p ON p.seller_id = b.seller
""",
    """
INSERT INTO marketplace_payment (id, uuid, name, state, invoice_id, customer_id, method, amount,
                                 currency, created_at, confirmed_at, cancelled_at)
SELECT payment_id, gen_random_uuid(), 'PAY/BENCH/' || i,
       CASE WHEN paid THEN 'paid' ELSE 'canceled' END, invoice_id, %(customer)s, method, total,
       'IDR', at, CASE WHEN paid THEN at + interval '1 minute' END,
       CASE WHEN NOT paid THEN at + interval '1 minute' END
FROM bench_payment
""",
    """
INSERT INTO payment_transaction (uuid, reference, provider_id, kind, invoice_id, customer_id,
                                 account_payment_id, amount, currency, fee, net, state,
                                 late_success, action, tokenize, guest, expires_at,
                                 last_state_change, created_at)
SELECT gen_random_uuid(), 'TX/BENCH/' || b.i, pr.id, 'invoice', b.invoice_id, %(customer)s,
       b.payment_id, b.total, 'IDR', f.fee, b.total - f.fee, b.outcome, false, '{}'::jsonb,
       false, false, b.at + interval '1 day', b.at + interval '1 minute', b.at
FROM bench_payment AS b
JOIN payment_provider AS pr ON pr.code = b.provider,
LATERAL (SELECT CASE WHEN b.provider = 'demo' THEN round(b.total * 0.029 + 1000, 2)
                     ELSE 0 END AS fee) AS f
WHERE b.provider IN ('demo', 'wallet')
""",
    """
INSERT INTO marketplace_account_move (id, uuid, name, move_type, state, payment_state, order_id,
                                      customer_id, currency, invoice_date, invoice_date_due,
                                      amount_untaxed, amount_tax, amount_total, amount_residual,
                                      commission_percent, reversed_entry_id, created_at)
SELECT b.credit_note_id, gen_random_uuid(), 'RINV/BENCH/' || b.i, 'out_refund', 'posted', 'paid',
       b.order_id, %(customer)s, 'IDR', CAST(b.at AT TIME ZONE 'Asia/Jakarta' AS date),
       CAST(b.at AT TIME ZONE 'Asia/Jakarta' AS date), r.amount - r.tax, r.tax, r.amount, 0, 5,
       b.invoice_id, b.at + interval '2 minutes'
FROM bench_payment AS b,
LATERAL (SELECT round(b.total / 2, 2) AS amount,
                round(b.tax * round(b.total / 2, 2) / b.total, 2) AS tax) AS r
WHERE b.refunded
""",
    """
INSERT INTO marketplace_refund (uuid, payment_id, invoice_id, credit_note_id, customer_id,
                                amount, currency, reason, destination, state, created_at,
                                confirmed_at)
SELECT gen_random_uuid(), payment_id, invoice_id, credit_note_id, %(customer)s,
       round(total / 2, 2), 'IDR', 'bench', method, 'succeeded', at + interval '2 minutes',
       at + interval '2 minutes'
FROM bench_payment
WHERE refunded
""",
    """
INSERT INTO seller_settlement (uuid, name, seller_id, currency, amount, state, bank_code,
                               bank_holder_name, bank_account_last4, payout_adapter,
                               created_at, updated_at, completed_at)
SELECT gen_random_uuid(), 'STL/BENCH/' || s || '/' || n, s, 'IDR', 100000 + n, 'completed',
       '014', 'Bench', '7890', 'manual', now() - n * interval '18 days',
       now() - n * interval '18 days', now() - n * interval '18 days'
FROM generate_series(%(first_seller)s, %(first_seller)s + %(sellers)s - 1) AS s,
     generate_series(1, %(settlements)s) AS n
""",
)
#: What the fill wrote, analysed for the planner.
FILLED_TABLES = (
    "marketplace_product", "marketplace_sale_order", "marketplace_account_move",
    "marketplace_account_move_line", "marketplace_payment", "payment_transaction",
    "marketplace_refund", "seller_settlement", "ledger_account", "dashboard_seller_payment",
)  # fmt: skip


def measure(inputs: Mapping[str, Any]) -> Figures:
    from modules.dashboard.rollups import rebuild
    from modules.dashboard.services import ROLLUPS

    dialect = postgresql.psycopg.dialect()
    bare = [str(ROLLUPS.statement.compile(dialect=dialect))]
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="lapak-bench-dash-") as folder:
        services = start_services()
        stack.callback(services.stop)
        workdir = Path(folder)
        settings = settings_for(services, workdir)
        upgrade(settings)
        app = create_app(settings)
        people = _make_people(app, inputs["sellers"])
        primary_dsn = services.database_url.replace("+psycopg", "")
        replica_dsn = services.replica_urls[0].replace("+psycopg", "")
        today = datetime.now(ZONE).date()
        fill_s = _fill(primary_dsn, inputs, today, people)
        with app.app_context():
            first = rebuild()
            again = rebuild()
        with psycopg.connect(primary_dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE dashboard_daily")
            conn.execute("VACUUM ANALYZE dashboard_counted")
        replay_s = wait_for_replica(services)
        app.extensions["lapak.db"].dispose()

        server = start_lapak(stack, services, workdir, inputs["web_workers"])
        since = today - timedelta(days=inputs["days"] - 1)
        path = f"{STATS}?{urlencode({'from': str(since), 'to': str(today)})}"
        staff_token = log_in(server.port, STAFF_EMAIL)
        seller_token = log_in(server.port, _seller_email(0))
        rare_token = log_in(server.port, RARE_EMAIL)
        shown = call_json(server.port, "GET", path, staff_token)
        if shown["totals"]["transactions"] != inputs["payments"]:
            raise RuntimeError(f"the stats count {shown['totals']['transactions']} payments")
        share = call_json(server.port, "GET", path, seller_token)
        if share["scope"] != "seller" or not share["totals"]["transactions"]:
            raise RuntimeError("the seller's stats are not their share")

        rows = []
        sellers = people["sellers"]
        for who, token, owner in (("staff", staff_token, 0), ("seller", seller_token, sellers[0])):
            params = {"seller_id": owner, "currency": CURRENCY, "since": since, "until": today}
            timed_http(server.port, path, token, WARMUP)
            http_s, errors, samples = timed_http(server.port, path, token, inputs["requests"])
            with psycopg.connect(replica_dsn, autocommit=True) as replica:
                read = replica.execute(COUNT_ROWS, params).fetchone()[0]
                timed_queries(replica, bare, params, WARMUP)
                sql_s = timed_queries(replica, bare, params, inputs["requests"])
            rows.append(
                {
                    "caller": who,
                    "rollup_rows_read": read,
                    "stats_p50_ms": percentile_ms(http_s, 50),
                    "stats_p99_ms": percentile_ms(http_s, 99),
                    "bare_query_p50_ms": percentile_ms(sql_s, 50),
                    "bare_query_p99_ms": percentile_ms(sql_s, 99),
                    "p50_ratio": round(percentile_ms(http_s, 50) / percentile_ms(sql_s, 50), 1),
                    "errors": errors,
                    "error_samples": samples,
                }
            )
            plan = explain(replica_dsn, bare[0], params)
            rows[-1]["plan"] = " | ".join(line.strip() for line in plan[:4])
        listing = []
        for who, token in (("staff", staff_token), ("seller", seller_token),
                           ("rare seller", rare_token)):  # fmt: skip
            timed_http(server.port, TRANSACTIONS, token, WARMUP)
            http_s, errors, samples = timed_http(
                server.port, TRANSACTIONS, token, inputs["requests"]
            )
            listing.append(
                {
                    "caller": who,
                    "first_page_p50_ms": percentile_ms(http_s, 50),
                    "first_page_p99_ms": percentile_ms(http_s, 99),
                    "errors": errors,
                    "error_samples": samples,
                }
            )
        plans = {
            "seller_page": _plan_of(app, replica_dsn, TRANSACTIONS, seller_token, "seller_id"),
            "rare_seller_page": _plan_of(app, replica_dsn, TRANSACTIONS, rare_token, "seller_id"),
            # The default period (30 days): the settlements completed in it, of a year's.
            "staff_settlement_summary": _plan_of(
                app, replica_dsn, STATS, staff_token, "seller_settlement"
            ),
        }
        staff_p99 = rows[0]["stats_p99_ms"]
        return {
            "payments": inputs["payments"],
            "rollup_rows": _count_rollups(replica_dsn),
            "fill_s": round(fill_s, 1),
            "rebuild": [
                {
                    "run": name,
                    "facts": rebuilt.facts,
                    "total_s": round(rebuilt.total_s, 1),
                    "tables_locked_s": round(rebuilt.locked_s, 3),
                }
                for name, rebuilt in (("from empty", first), ("again", again))
            ],
            "replica_replay_s": round(replay_s, 1),
            "stats": rows,
            "target_p99_ms": TARGET_P99_MS,
            "target_met": all(row["stats_p99_ms"] < TARGET_P99_MS for row in rows),
            "staff_stats_p99_ms": staff_p99,
            "volume_shown": shown["totals"]["volume"],
            "transactions_listing": listing,
            "plans": plans,
        }


def timed_queries(
    conn: psycopg.Connection, queries: list[str], params: Any, count: int
) -> list[float]:
    """Seconds of each run of every query in ``queries`` one after the other, sorted."""
    seconds = []
    for _ in range(count):
        began = time.perf_counter()
        for query in queries:
            conn.execute(query, params).fetchall()
        seconds.append(time.perf_counter() - began)
    return sorted(seconds)


def _seller_email(index: int) -> str:
    return f"bench.dashboard.seller.{index}@example.test"


def _make_people(app: Any, sellers: int) -> dict[str, Any]:
    """Staff, the customer who pays, the sellers (consecutive user ids) and the rare seller,
    each seller with pending and available ledger accounts holding a balance, as their sales
    would have left them; the payment providers' rows."""
    from modules.payment.adapters import adapters
    from modules.payment.providers import ensure_providers

    with app.app_context():
        create_user(STAFF_EMAIL, role="staff", password=PASSWORD, name="Bench Staff")
        customer = create_user(CUSTOMER_EMAIL, role="customer", password=PASSWORD).id
        ids = [
            create_user(_seller_email(n), role="seller", password=PASSWORD, name=f"Toko {n}").id
            for n in range(sellers)
        ]
        rare = create_user(RARE_EMAIL, role="seller", password=PASSWORD, name="Toko Jarang").id
        with transaction():
            ensure_providers()
        methods = {code: adapters()[code].method.code for code in TRANSACTION_PROVIDERS}
    if ids != list(range(ids[0], ids[0] + len(ids))):
        raise RuntimeError("the sellers' user ids are not consecutive")
    purposes = [p for p in CORE_PURPOSES if p.code in ("seller_pending", "seller_available")]
    now = datetime.now(UTC)
    rows = [
        (account_code(purpose, CURRENCY, seller), account_name(purpose, CURRENCY), purpose.kind,
         purpose.code, CURRENCY, seller, not purpose.held, 125000 + seller, now)
        for seller in [*ids, rare]
        for purpose in purposes
    ]  # fmt: skip
    dsn = app.extensions["lapak.settings"].database_url.replace("+psycopg", "")
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO ledger_account (uuid, code, name, kind, purpose, currency, holder_id, "
            "allow_negative, balance, created_at) "
            "VALUES (gen_random_uuid(), %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
    return {"customer": customer, "sellers": ids, "rare": rare, "methods": methods}


def _fill(dsn: str, inputs: Mapping[str, Any], today: date, people: Mapping[str, Any]) -> float:
    """Write the payments and settlements (:data:`FILL`); seconds it took, VACUUM included."""
    began = time.perf_counter()
    start = datetime.combine(today - timedelta(days=inputs["days"] - 1), day_time(), ZONE)
    end = datetime.now(UTC) - timedelta(minutes=5)  # a refund's time is 2 minutes later
    sellers = people["sellers"]
    params = {
        "start": start,
        "step_us": int((end - start).total_seconds() * 1e6 / inputs["payments"]),
        "payments": inputs["payments"],
        "first_seller": sellers[0],
        "sellers": len(sellers),
        "rare_seller": people["rare"],
        "rare_every": RARE_EVERY,
        "all_sellers": [*sellers, people["rare"]],
        "customer": people["customer"],
        "demo_method": people["methods"]["demo"],
        "wallet_method": people["methods"]["wallet"],
        "settlements": SETTLEMENTS_PER_SELLER,
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            for statement in FILL:
                conn.execute(statement, params)
        for table in FILLED_TABLES:
            conn.execute(f"VACUUM ANALYZE {table}")
    return time.perf_counter() - began


def _plan_of(app: Any, replica_dsn: str, path: str, token: str, marker: str) -> str:
    """The plan (``EXPLAIN ANALYZE`` on the replica) of the statement containing ``marker``
    that ``GET path`` sends, captured from a request to ``app`` in this process."""
    with recorded_in(app) as sent:
        response = app.test_client().get(path, headers={"Authorization": f"Bearer {token}"})
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} answered {response.status_code}")
    found = [(sql, params) for sql, params in sent if marker in sql]
    if not found:
        raise RuntimeError(f"GET {path} sent no statement with {marker}")
    return " | ".join(line.strip() for line in explain(replica_dsn, *found[0]))


def _count_rollups(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM dashboard_daily").fetchone()[0]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__)
    parser.add_argument("--payments", type=positive, default=1_000_000)
    parser.add_argument("--sellers", type=positive, default=200)
    parser.add_argument("--days", type=positive, default=365)
    parser.add_argument("--requests", type=positive, default=200)
    parser.add_argument("--web-workers", type=positive, default=2)
    args = parser.parse_args(argv)
    if args.days > 366:
        parser.error("--days is at most 366 (the longest period the endpoint answers)")
    inputs = {
        "payments": args.payments,
        "sellers": args.sellers,
        "days": args.days,
        "requests": args.requests,
        "web_workers": args.web_workers,
    }
    return run_as_command(NAME, inputs, measure)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
