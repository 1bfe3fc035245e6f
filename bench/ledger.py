"""Ledger postings beside the SQL floor, and the statement page over millions of entries.

``python -m bench.ledger [--postings N] [--clients 1,8,32] [--accounts 10000]
[--entries 10000000] [--requests N] [--http]``

Starts throw-away PostgreSQL (primary + streaming replica) and Redis (``tests/servers.py``),
makes the primary durable again (``fsync``, ``full_page_writes``, ``synchronous_commit`` on)
with ``pg_stat_statements`` loaded, as ``bench/orders.py`` does, and migrates.

**Postings.** ``modules.ledger.posting.post`` called through the service, ``with
transaction(): post(...)``, from N threads each with its own app context (the app's own
engine and pool: the Python cost of the service counts), at 1, 8 and 32 concurrent clients,
in two shapes: *hot*, every posting a ``CREDIT_ADD`` to the same customer's wallet, and
*spread*, ``CREDIT_ADD`` to the wallets of ``--accounts`` customers (created set-based, with
their wallet accounts, before the run). Beside it, in the same run and on the same tables,
**the floor**: the statements Lapak sends for one posting (captured from the app's primary
engine on a probe posting and checked against the floor's list, text for text, the commit
included) with psycopg, one connection per thread: lock the two accounts by code in id order
(``SELECT ... FOR UPDATE``), lock the chain head, compute the fingerprint, the canonical
content and the SHA-256 link in Python, write the transaction, its entries, the balances and
the chain head in the one writable-CTE statement, COMMIT. Each level runs in two rounds that
alternate which side goes first. Per shape and level: postings/s, p50/p99 ms, the ratio
Lapak/floor, the statements that took the database's time (``pg_stat_statements``) and what
the backends were doing (``pg_stat_activity`` sampled every 25 ms). Both sides write the same
chain, so at the end ``modules.ledger.verify.verify()`` must be ok; it is timed (seconds per
million entries).

**Statement page.** Then ``ledger_transaction``/``ledger_entry`` are topped up to ``--entries``
entries with set-based SQL (generate_series), bypassing the service: balanced pairs (every
transaction debits the platform's ``manual_clearing:IDR`` and credits a customer wallet),
written in a session with ``session_replication_role = replica`` as the superuser, so neither
the append-only triggers nor the deferred per-row balance triggers (nor the foreign key
triggers) fire: the fill is checked by construction, not by the database. The fill's
transactions carry placeholder hashes and ``balance_after`` is the entry's own amount (so
``verify()`` is run before the fill, never after). Spread: the clearing account gets one entry
per transaction (millions); of the wallet side, one hot wallet takes 40% of the newer half and
a dormant one 40% of the older half (none since: its entries are all old), ten warm wallets 1%
each, and the rest spreads evenly over all ``--accounts`` wallets (a few each). VACUUM ANALYZE,
a wait until the replica has replayed it all; then on the replica with psycopg the statement
page (``limit`` 50, newest first by entry id, joined to the transactions for their number,
operation and time) is timed ``--requests`` times per case, for the first page and a deep page
(a cursor half way down the account's entries), with ``EXPLAIN (ANALYZE, BUFFERS)``, in two
forms: the plain keyset the endpoint first used (``account_id = X AND id < cursor ORDER BY id
DESC``, kept to show why it was dropped), and the range of the ``(account_id, id)`` index by
row comparisons that the endpoint now sends (:func:`row_keyset_sql`), which no estimate can
turn into a scan of the primary key.

``--http`` (off until ``GET /api/v1/ledger/accounts/{uuid}/entries`` is on main) also serves
Lapak with ``lapak serve`` (gunicorn, 4 threaded workers) reading from the replica, and times the
same pages over HTTP as staff, beside the bare SQL and beside the statements the endpoint sends
to the replica (captured from an in-process request, timed with psycopg):
:func:`measure_statement_http`.

Only 127.0.0.1 is contacted, counts are bounded, and every server started is stopped, even on
failure or Ctrl-C/SIGTERM/SIGHUP.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from sqlalchemy import event

from app import create_app
from app.db import RoutingSession, transaction
from app.migrate import upgrade
from bench.floor import ledger_lock_params
from bench.http_overhead import non_negative, positive
from bench.orders import (
    COMMIT,
    ActivitySampler,
    Batch,
    call_json,
    capturing,
    client_levels,
    drive,
    durable_primary,
    explain,
    in_process_login,
    log_in,
    normalised,
    percentile_ms,
    settings_for,
    start_lapak,
    statement_stats,
    timed_http,
    timed_sql,
    wait_for_replica,
)
from bench.runner import Figures, run_as_command
from modules.ledger import chain
from modules.ledger.posting import Leg, Posting, post
from modules.ledger.verify import verify
from modules.user.services import create_user
from tests.servers import Services, start_services

NAME = "ledger"
DEFAULT_CLIENTS = (1, 8, 32)
#: 48 characters, for this benchmark's throw-away instance only.
SECRET = "bench-ledger-throwaway-secret-0123456789abcdefgh"  # noqa: S105
PASSWORD = "benchmark password, long enough"  # noqa: S105 - throw-away users'
CURRENCY = "IDR"
OPERATION = "CREDIT_ADD"
CLEARING = "manual_clearing"
WALLET = "wallet"
CLEARING_CODE = f"{CLEARING}:{CURRENCY}"
HOT_EMAIL = "bench.ledger.hot@example.test"
STAFF_EMAIL = "bench.ledger.staff@example.test"
PROBE_STAFF_EMAIL = "bench.ledger.probe.staff@example.test"
FLOOR_APP = "bench-ledger-floor"
LAPAK_APP = "lapak"  # the application_name of the app's primary engine
PROBE_POSTINGS = 40
PAGE_LIMIT = 50
SLOW_PAGE_S = 0.1
SLOW_PAGE_RUNS = 20
WARMUP = 20
TARGET_FLOOR_RATIO = 0.5
TARGET_PAGE_P99_MS = 15.0
#: The HTTP statement endpoint (built in parallel; measured only with --http).
ENTRIES_PATH = "/api/v1/ledger/accounts/{uuid}/entries"
#: Share of the fill's wallet legs on the dormant wallet (older half of the fill) and the hot
#: one (newer half); each of the ten warm ones has 1%.
HOT_SHARE_PERCENT = 40
WARM_WALLETS = 10
FILL_CHUNK = 250_000  # transactions per INSERT (two entries each)


def amount_of(number: int) -> Decimal:
    """The amount of posting ``number``: 1,000.00 to 50,000.00 IDR, the same on both sides."""
    return Decimal((number % 50) + 1) * 1000 + Decimal("0.00")


def nonce_of(side: str, tag: str, number: int) -> str:
    # Unique per posting across the whole run: a repeat would be a replay, not a posting.
    return f"{side}-{tag}-{number}-{uuid.uuid4().hex[:12]}"


# --- Lapak: the service, in-process -------------------------------------------------------------


def credit_add(holder_id: int, amount: Decimal, nonce: str) -> Posting:
    return Posting(
        OPERATION,
        nonce,
        (
            Leg(CLEARING, CURRENCY, debit=amount),
            Leg(WALLET, CURRENCY, credit=amount, holder_id=holder_id),
        ),
    )


def lapak_worker(
    app: Any, holder_of: Callable[[int], int], tag: str
) -> Callable[[int], str | None]:
    """One client: posts through the service in its own thread with its own app context.

    The context is pushed once per thread (``drive`` runs each worker in one thread), so the
    thread's scoped session is reused from posting to posting, as a request's would be within
    its own context; the connection goes back to the app's pool at each commit.
    """
    local = threading.local()  # fresh in each thread (a thread id may be reused: not that)

    def posting(number: int) -> str | None:
        if getattr(local, "context", None) is None:
            local.context = app.app_context()
            local.context.push()
        with transaction():
            posted = post(
                credit_add(holder_of(number), amount_of(number), nonce_of("l", tag, number))
            )
        return None if not posted.replayed else "replayed"

    return posting


# --- the floor: the same statements through psycopg ---------------------------------------------

#: The two accounts in id order, each after its queue (an advisory lock), then the chain head
#: after its queue (when both accounts exist), one statement.
LOCK = (
    "SELECT * FROM (SELECT 'account' AS what, id::bigint AS id, code::text AS code, balance, "
    "allow_negative, kind::text AS kind, NULL::integer AS year, NULL::integer AS year_count "
    "FROM ledger_account WHERE code IN (%(codes_1)s, %(codes_2)s) AND (SELECT "
    "count(pg_advisory_xact_lock(%(account_queue)s::integer, queued.id)) FROM (SELECT id FROM "
    "ledger_account WHERE code IN (%(codes_1)s, %(codes_2)s) ORDER BY id) AS queued WHERE "
    "(SELECT count(*) FROM ledger_account WHERE code IN (%(codes_1)s, %(codes_2)s)) = "
    "%(count)s) = %(count)s ORDER BY id FOR UPDATE) "
    "AS accounts UNION ALL SELECT * FROM (SELECT 'chain', last_index, last_hash::text, "
    "NULL::numeric, NULL::boolean, NULL::text, year, year_count FROM ledger_chain WHERE id = 1 "
    "AND (SELECT pg_advisory_xact_lock(%(chain_queue)s::integer, 1) WHERE (SELECT count(*) "
    "FROM ledger_account WHERE code IN (%(codes_1)s, %(codes_2)s)) = %(count)s) IS NOT NULL "
    "FOR UPDATE) AS head"
)
#: The transaction, the chain head, the two balances and the two entries in one statement.
WRITE = (
    "WITH tx AS ( INSERT INTO ledger_transaction (uuid, number, chain_index, operation, nonce, "
    "fingerprint, reference, memo, actor_id, reverses_id, created_at, hash) VALUES (%(uuid)s, "
    "%(number)s, %(chain_index)s, %(operation)s, %(nonce)s, %(fingerprint)s, %(reference)s, "
    "%(memo)s, %(actor_id)s, %(reverses_id)s, %(created_at)s, %(hash)s) "
    "ON CONFLICT (operation, nonce) DO NOTHING RETURNING id), "
    "head AS ( UPDATE ledger_chain SET last_index = %(chain_index)s, last_hash = %(hash)s, "
    "year = %(year)s, year_count = %(year_count)s WHERE id = 1 AND EXISTS (SELECT FROM tx)), "
    "balances AS ( UPDATE ledger_account AS a SET balance = v.balance FROM (VALUES "
    "(%(account_0)s, CAST(%(balance_0)s AS NUMERIC)), (%(account_1)s, CAST(%(balance_1)s AS "
    "NUMERIC))) AS v(id, balance) WHERE a.id = v.id AND EXISTS (SELECT FROM tx)), "
    "entries AS ( INSERT INTO ledger_entry (transaction_id, account_id, currency, debit, credit, "
    "balance_after) SELECT tx.id, v.account_id, v.currency, v.debit, v.credit, v.balance_after "
    "FROM tx, (VALUES (0, %(entry_account_0)s, %(entry_currency_0)s, CAST(%(entry_debit_0)s AS "
    "NUMERIC), CAST(%(entry_credit_0)s AS NUMERIC), CAST(%(entry_balance_0)s AS NUMERIC)), "
    "(1, %(entry_account_1)s, %(entry_currency_1)s, CAST(%(entry_debit_1)s AS NUMERIC), "
    "CAST(%(entry_credit_1)s AS NUMERIC), CAST(%(entry_balance_1)s AS NUMERIC))) "
    "AS v(ord, account_id, currency, debit, credit, balance_after) ORDER BY v.ord) "
    "SELECT id FROM tx"
)
FLOOR_STATEMENTS = (LOCK, WRITE, COMMIT)
ZERO = Decimal("0.00")


def fingerprint(nonce: str, holder_id: int, amount: Decimal) -> str:
    """``Posting.fingerprint`` of a CREDIT_ADD, computed as the service computes it."""
    content = {
        "operation": OPERATION,
        "nonce": nonce,
        "reference": None,
        "memo": None,
        "legs": [
            [CLEARING, CURRENCY, None, chain.money(amount), chain.money(ZERO)],
            [WALLET, CURRENCY, holder_id, chain.money(ZERO), chain.money(amount)],
        ],
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def floor_post(
    conn: psycopg.Connection,
    holder_id: int,
    amount: Decimal,
    nonce: str,
    timings: dict[str, list[float]] | None = None,
) -> str | None:
    """One CREDIT_ADD as Lapak writes it, statement for statement, in one durable transaction."""
    wallet_code = f"{WALLET}:{CURRENCY}:{holder_id}"
    began = time.perf_counter()
    with conn.cursor() as cur:
        codes = sorted([CLEARING_CODE, wallet_code])
        rows = cur.execute(LOCK, ledger_lock_params(codes)).fetchall()
        locked = {code: (row_id, balance) for what, row_id, code, balance, *_ in rows
                  if what == "account"}  # fmt: skip
        heads = [row for row in rows if row[0] == "chain"]
        if len(locked) != 2 or not heads:
            conn.rollback()
            return f"accounts or chain head missing for {codes}"
        # The clearing account is an asset debited, the wallet a liability credited: both grow.
        clearing_id, clearing_balance = locked[CLEARING_CODE]
        wallet_id, wallet_balance = locked[wallet_code]
        clearing_after, wallet_after = clearing_balance + amount, wallet_balance + amount
        _, last_index, last_hash, _, _, _, head_year, head_count = heads[0]
        accounts_locked = time.perf_counter()
        chain_locked = accounts_locked
        now = datetime.now(UTC)
        year = max(now.year, head_year)
        year_count = head_count + 1 if head_year == year else 1
        number = f"LT/{year}/{year_count:05d}"
        transaction_uuid = uuid.uuid4()
        request_print = fingerprint(nonce, holder_id, amount)
        content = chain.canonical(
            transaction_uuid=transaction_uuid,
            number=number,
            operation=OPERATION,
            nonce=nonce,
            reference=None,
            memo=None,
            actor_id=None,
            reverses_id=None,
            fingerprint=request_print,
            created_at=now,
            legs=[(CLEARING_CODE, CURRENCY, amount, ZERO), (wallet_code, CURRENCY, ZERO, amount)],
        )
        balances = sorted([(clearing_id, clearing_after), (wallet_id, wallet_after)])
        params = {
            "uuid": transaction_uuid,
            "number": number,
            "chain_index": last_index + 1,
            "operation": OPERATION,
            "nonce": nonce,
            "fingerprint": request_print,
            "reference": None,
            "memo": None,
            "actor_id": None,
            "reverses_id": None,
            "created_at": now,
            "hash": chain.link(last_hash, content),
            "year": year,
            "year_count": year_count,
            "account_0": balances[0][0],
            "balance_0": balances[0][1],
            "account_1": balances[1][0],
            "balance_1": balances[1][1],
            "entry_account_0": clearing_id,
            "entry_currency_0": CURRENCY,
            "entry_debit_0": amount,
            "entry_credit_0": ZERO,
            "entry_balance_0": clearing_after,
            "entry_account_1": wallet_id,
            "entry_currency_1": CURRENCY,
            "entry_debit_1": ZERO,
            "entry_credit_1": amount,
            "entry_balance_1": wallet_after,
        }
        computed = time.perf_counter()
        written = cur.execute(WRITE, params).fetchone()
        if written is None:
            conn.rollback()
            return f"nonce {nonce} seen before"
        committing = time.perf_counter()
    conn.commit()
    if timings is not None:
        ended = time.perf_counter()
        for part, seconds in (
            ("total", ended - began),
            ("lock accounts and chain head", accounts_locked - began),
            ("python: hash, params", computed - chain_locked),
            ("write", committing - computed),
            ("commit", ended - committing),
            ("accounts locked", ended - began),
        ):
            timings.setdefault(part, []).append(seconds)
    return None


def floor_connection(dsn: str) -> psycopg.Connection:
    return psycopg.connect(dsn, application_name=FLOOR_APP, autocommit=False)


def floor_worker(
    conn: psycopg.Connection, holder_of: Callable[[int], int], tag: str
) -> Callable[[int], str | None]:
    def posting(number: int) -> str | None:
        try:
            return floor_post(
                conn, holder_of(number), amount_of(number), nonce_of("f", tag, number)
            )
        except psycopg.Error:
            conn.rollback()
            raise

    return posting


# --- the probe: statements compared, and where an uncontended posting's time goes --------------


def probe(app: Any, dsn: str, holder_id: int, count: int) -> dict[str, Any]:
    """Postings in-process, one at a time: Lapak's statements captured and compared with the
    floor's; then both sides' uncontended times, split at the statements' starts, and the
    client's CPU time per posting (this thread's), one Lapak and one floor posting in turn
    (alternating which goes first), so that both meet the same machine."""
    engine = app.extensions["lapak.db"].primary
    marks: dict[str, float] = {}
    driver: list[float] = []

    def before(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        now = marks["statement"] = time.perf_counter()
        if "FROM ledger_account" in statement and "FOR UPDATE" in statement:
            marks.setdefault("lock accounts", now)
            marks.setdefault("lock chain", now)  # the same statement
        elif "FROM ledger_chain" in statement:
            marks.setdefault("lock chain", now)
        elif statement.startswith("WITH tx AS"):
            marks.setdefault("write", now)

    def after(*_: Any) -> None:
        driver.append(time.perf_counter() - marks["statement"])

    def commit(_conn: Any) -> None:
        marks.setdefault("commit", time.perf_counter())

    def committed(_session: Any) -> None:
        marks.setdefault("committed", time.perf_counter())

    listeners = [
        (engine, "before_cursor_execute", before),
        (engine, "after_cursor_execute", after),
        (engine, "commit", commit),
        (RoutingSession, "after_commit", committed),
    ]

    def lapak_posting(number: int) -> None:
        marks.clear()
        driver.clear()
        for target, name, fn in listeners:
            event.listen(target, name, fn)
        try:
            began, cpu = time.perf_counter(), time.thread_time()
            with transaction():
                post(credit_add(holder_id, amount_of(number), nonce_of("p", "probe", number)))
            ended, cpu = time.perf_counter(), time.thread_time() - cpu
        finally:
            for target, name, fn in listeners:
                event.remove(target, name, fn)
        if number < 2:
            return
        totals.append(ended - began)
        cpu_s.append(cpu)
        in_driver.append(sum(driver))
        for part, (start, end) in {
            "before the first statement (validation, pool checkout)": (
                began, marks["lock accounts"]),
            "lock accounts and chain head, then python: hash, params": (
                marks["lock accounts"], marks["write"]),
            "write": (marks["write"], marks["commit"]),
            "commit": (marks["commit"], marks["committed"]),
            "after the commit": (marks["committed"], ended),
            "accounts locked (first lock to commit returned)": (
                marks["lock accounts"], marks["committed"]),
        }.items():  # fmt: skip
            parts.setdefault(part, []).append(end - start)

    def floor_posting(conn: psycopg.Connection, number: int) -> None:
        nonce = nonce_of("p", "floor-probe", number)
        cpu = time.thread_time()
        if error := floor_post(conn, holder_id, amount_of(number), nonce, floor_timings):
            raise RuntimeError(f"floor probe: {error}")
        floor_cpu_s.append(time.thread_time() - cpu)

    parts: dict[str, list[float]] = {}
    totals: list[float] = []
    cpu_s: list[float] = []
    in_driver: list[float] = []
    floor_timings: dict[str, list[float]] = {}
    floor_cpu_s: list[float] = []
    statements: list[str] = []
    with app.app_context(), floor_connection(dsn) as conn:
        with capturing(engine) as captured:
            lapak_posting(0)  # made the accounts and the chain head
            captured.clear()
            lapak_posting(1)
            statements = [sql for sql, _ in captured]
        for number in range(6):  # psycopg prepares after 5 executions
            floor_posting(conn, number)
        floor_timings.clear()
        floor_cpu_s.clear()
        for number in range(2, count + 2):
            if number % 2:
                lapak_posting(number)
                floor_posting(conn, number)
            else:
                floor_posting(conn, number)
                lapak_posting(number)
    lapak_sql = [normalised(s) for s in statements]
    floor_sql = [normalised(s) for s in FLOOR_STATEMENTS]
    if lapak_sql != floor_sql:
        raise RuntimeError(
            "the floor's statements are not Lapak's:\n"
            + "\n".join(
                f"lapak: {a}\nfloor: {b}"
                for a, b in zip(lapak_sql, floor_sql, strict=False)
                if a != b
            )
            + f"\n(lapak sent {len(lapak_sql)}, the floor {len(floor_sql)})"
        )
    p50 = lambda seconds: percentile_ms(sorted(seconds), 50)  # noqa: E731
    return {
        "floor_sql_identical": True,  # checked above: the run stops otherwise
        "statements": [" ".join(s.split())[:70] for s in statements],
        "not_in_the_floor": "a ping at a checkout of a connection idle for 10 s or that the "
        "server wrote to (not a cursor execute, so not captured; none under load), and "
        "SELECT pg_current_wal_insert_lsn() sent with the COMMIT",
        "uncontended_postings": count,
        "lapak_ms_p50": p50(totals),
        "floor_ms_p50": p50(floor_timings["total"]),
        "lapak_client_cpu_ms_p50": p50(cpu_s),
        "floor_client_cpu_ms_p50": p50(floor_cpu_s),
        "lapak_driver_ms_p50": p50(in_driver),
        "lapak_breakdown_ms_p50": {part: p50(s) for part, s in parts.items()},
        "floor_breakdown_ms_p50": {
            part: p50(s) for part, s in floor_timings.items() if part != "total"
        },
    }


# --- the postings benchmark --------------------------------------------------------------------


def postings_at(clients: int, inputs: Mapping[str, Any]) -> int:
    if inputs["postings"]:
        return int(inputs["postings"])
    return 500 if clients == 1 else 2000


@contextmanager
def observed(dsn: str, application: str, into: dict[str, Any]):  # type: ignore[no-untyped-def]
    """pg_stat_statements and backend states of one batch, added into ``into``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
        with ActivitySampler(dsn, application) as sampler:
            yield
        stats = statement_stats(conn)
    for qid, (calls, total, query) in stats.items():
        old = into.setdefault("statements", {}).get(qid, (0, 0.0, query))
        into["statements"][qid] = (old[0] + calls, old[1] + total, query)
    into.setdefault("activity", Counter()).update(sampler.states)
    into["samples"] = into.get("samples", 0) + sampler.samples


def summarise_db(into: Mapping[str, Any], postings: int) -> dict[str, Any]:
    statements = {
        k: v for k, v in into.get("statements", {}).items() if "pg_stat_statements" not in v[2]
    }
    total_ms = sum(total for _, total, _ in statements.values()) or 1.0
    top = sorted(statements.values(), key=lambda s: -s[1])[:5]
    activity: Counter[str] = into.get("activity", Counter())
    samples = max(1, into.get("samples", 0))
    busy = sorted(((k, v) for k, v in activity.items() if k != "idle"), key=lambda kv: -kv[1])
    return {
        # This process's CPU (all its threads; the side's client code, and the sampler's).
        "client_cpu_ms_per_posting": round(into.get("client_cpu_s", 0.0) * 1000 / postings, 3),
        "db_exec_ms_per_posting": round(total_ms / postings, 3),
        "top_statements": [
            {
                "statement": " ".join(query.split())[:80],
                "calls_per_posting": round(calls / postings, 2),
                "mean_ms": round(total / max(1, calls), 3),
                "share_of_db_time": round(total / total_ms, 3),
            }
            for calls, total, query in top
        ],
        "backends_by_state": {k: round(v / samples, 2) for k, v in busy[:6]},
    }


def measure_postings(
    app: Any, dsn: str, hot_holder: int, holders: Sequence[int], inputs: Mapping[str, Any]
) -> list[dict[str, Any]]:
    levels = list(inputs["clients"])
    connections: list[psycopg.Connection] = []
    shapes: dict[str, Callable[[int], int]] = {
        "hot": lambda _number: hot_holder,
        # Spread evenly and scattered over the holders (7919 is prime, so coprime with most).
        "spread": lambda number: holders[(number * 7919) % len(holders)],
    }
    rows = []
    try:
        connections = [floor_connection(dsn) for _ in range(max(levels))]
        print("  postings: warm-up ...", file=sys.stderr, flush=True)
        warm = min(8, max(levels))
        drive(8 * warm, [lapak_worker(app, shapes["spread"], "warm") for _ in range(warm)])
        for conn in connections:  # psycopg prepares after 5 executions
            worker = floor_worker(conn, shapes["spread"], "warm")
            for n in range(6):
                if error := worker(n):
                    raise RuntimeError(f"floor warm-up: {error}")
        for shape, holder_of in shapes.items():
            for clients in levels:
                count = postings_at(clients, inputs)
                halves = [count // 2, count - count // 2]
                lapak, floor = Batch(), Batch()
                lapak_db: dict[str, Any] = {}
                floor_db: dict[str, Any] = {}
                tag = f"{shape}{clients}"
                lapak_workers = [lapak_worker(app, holder_of, tag) for _ in range(clients)]
                floor_workers = [floor_worker(c, holder_of, tag) for c in connections[:clients]]
                for round_, share in enumerate(halves):
                    print(f"  postings: {shape}, {clients} client(s), round {round_ + 1} ...",
                          file=sys.stderr, flush=True)  # fmt: skip
                    sides = [("lapak", lapak, lapak_db), ("floor", floor, floor_db)]
                    for side, total, db in sides if round_ == 0 else sides[::-1]:
                        application = LAPAK_APP if side == "lapak" else FLOOR_APP
                        workers = lapak_workers if side == "lapak" else floor_workers
                        # Spread over the range so that each round posts to other holders.
                        offset = round_ * share
                        shifted = [lambda n, w=w, o=offset: w(n + o) for w in workers]
                        with observed(dsn, application, db):
                            cpu = time.process_time()
                            total.merge(drive(share, shifted))
                            db["client_cpu_s"] = db.get("client_cpu_s", 0.0) + (
                                time.process_time() - cpu
                            )
                rows.append(posting_row(shape, clients, count, lapak, floor, lapak_db, floor_db))
    finally:
        for conn in connections:
            with suppress(psycopg.Error):
                conn.close()
    return rows


def posting_row(
    shape: str, clients: int, count: int, lapak: Batch, floor: Batch,
    lapak_db: Mapping[str, Any], floor_db: Mapping[str, Any],
) -> dict[str, Any]:  # fmt: skip
    lapak.latencies.sort()
    floor.latencies.sort()
    lapak_rate = (lapak.calls - lapak.errors) / lapak.seconds
    floor_rate = (floor.calls - floor.errors) / floor.seconds
    return {
        "shape": shape,
        "clients": clients,
        "postings": count,
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "lapak_per_s": round(lapak_rate, 1),
        "lapak_p50_ms": percentile_ms(lapak.latencies, 50),
        "lapak_p99_ms": percentile_ms(lapak.latencies, 99),
        "lapak_errors": lapak.errors,
        "floor_per_s": round(floor_rate, 1),
        "floor_p50_ms": percentile_ms(floor.latencies, 50),
        "floor_p99_ms": percentile_ms(floor.latencies, 99),
        "floor_errors": floor.errors,
        "ratio_lapak_over_floor": round(lapak_rate / floor_rate, 3),
        "error_samples": (lapak.error_samples + floor.error_samples)[:3],
        "lapak_db": summarise_db(lapak_db, count),
        "floor_db": summarise_db(floor_db, count),
    }


def timed_verify(app: Any) -> dict[str, Any]:
    with app.app_context():
        began = time.perf_counter()
        report = verify()
        seconds = time.perf_counter() - began
    return {
        "ok": report.ok,
        "transactions": report.transactions,
        "entries": report.entries,
        "accounts": report.accounts,
        "first_problem": report.first_problem,
        "seconds": round(seconds, 2),
        "seconds_per_million_entries": round(seconds / max(1, report.entries) * 1e6, 1),
        "note": "over the postings' journal only (the fill has no valid chain): on a small "
        "journal the fixed cost (every account, --accounts of them, read first) dominates, so "
        "seconds per million is an upper bound",
    }


# --- setting up --------------------------------------------------------------------------------


def create_holders(dsn: str, count: int) -> list[int]:
    """``count`` customers and their IDR wallets, set-based (no passwords: they never log in)."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        ids = [
            row[0]
            for row in conn.execute(
                """
                INSERT INTO user_account (uuid, email, email_key, name, role, active,
                    created_at, updated_at)
                SELECT gen_random_uuid(), 'bench.holder.' || g || '@example.test',
                    'bench.holder.' || g || '@example.test', 'Pemegang ' || g, 'customer', true,
                    now(), now()
                FROM generate_series(1, %s) AS g ORDER BY g
                RETURNING id
                """,
                (count,),
            ).fetchall()
        ]
        conn.execute(
            """
            INSERT INTO ledger_account (uuid, code, name, kind, purpose, currency, holder_id,
                allow_negative, balance, created_at)
            SELECT gen_random_uuid(), 'wallet:IDR:' || h, 'Customer wallet (IDR)', 'liability',
                'wallet', 'IDR', h, false, 0, now()
            FROM unnest(%s::int[]) AS h ORDER BY h
            """,
            (ids,),
        )
    with psycopg.connect(dsn, autocommit=True) as conn:
        # As autovacuum would soon after: the probe's connections prepared their statements
        # when the table held a few accounts, and kept the plans (a sequential scan) until the
        # table's statistics change; measured at once, 10,000 accounts were scanned per posting.
        conn.execute("ANALYZE user_account, ledger_account")
    return sorted(ids)


def account_ids(dsn: str, codes: Sequence[str]) -> dict[str, tuple[int, str]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT code, id, uuid::text FROM ledger_account WHERE code = ANY(%s)", (list(codes),)
        ).fetchall()
    return {code: (account_id, account_uuid) for code, account_id, account_uuid in rows}


# --- the statement page ------------------------------------------------------------------------


def fill_entries(
    dsn: str, entries: int, clearing_id: int, wallet_ids: Sequence[int]
) -> dict[str, Any]:
    """Top ``ledger_entry`` up to ``entries`` rows, in balanced pairs, set-based.

    ``session_replication_role = replica`` (superuser): no trigger fires, so the append-only
    and deferred balance triggers and the foreign-key checks are skipped; every pair balances
    by construction. Transaction numbers ``LF/...`` and chain positions after the real ones.
    """
    hot, warm = wallet_ids[0], list(wallet_ids[1 : 1 + WARM_WALLETS])
    dormant = wallet_ids[1 + WARM_WALLETS]
    with psycopg.connect(dsn, autocommit=True) as conn:
        existing, base = conn.execute(
            "SELECT (SELECT count(*) FROM ledger_entry), "
            "(SELECT coalesce(max(chain_index), 0) FROM ledger_transaction)"
        ).fetchone()
        missing = max(0, entries - existing) // 2
        conn.execute("SET session_replication_role = replica")
        end = datetime.now(UTC) - timedelta(minutes=5)
        step_us = int(timedelta(days=365).total_seconds() * 1e6 / max(1, missing))
        began = time.perf_counter()
        for first in range(1, missing + 1, FILL_CHUNK):
            last = min(missing, first + FILL_CHUNK - 1)
            print(f"  statement: transactions {first}..{last} of {missing} ...", file=sys.stderr,
                  flush=True)  # fmt: skip
            with conn.transaction():
                conn.execute(
                    """
                    INSERT INTO ledger_transaction (uuid, number, chain_index, operation, nonce,
                        fingerprint, created_at, hash)
                    SELECT gen_random_uuid(), 'LF/' || (%(base)s + g), %(base)s + g, 'CREDIT_ADD',
                        'fill-' || (%(base)s + g), repeat('0', 64),
                        %(start)s::timestamptz + (g::bigint * %(step)s) * interval '1 microsecond',
                        '$0$' || repeat('0', 64)
                    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
                    ORDER BY g
                    """,
                    {"base": base, "first": first, "last": last, "step": step_us,
                     "start": end - timedelta(days=365)},
                )  # fmt: skip
                # Per transaction: the clearing debit, then the wallet credit (as postings do).
                # Wallet: 40% the hot one, 1% each of ten warm ones, the rest over all wallets.
                conn.execute(
                    """
                    INSERT INTO ledger_entry (transaction_id, account_id, currency, debit, credit,
                        balance_after)
                    SELECT t.id, v.account_id, 'IDR', v.debit, v.credit, a.amount
                    FROM ledger_transaction AS t,
                        LATERAL (SELECT t.chain_index - %(base)s AS g) AS i,
                        LATERAL (SELECT ((i.g %% 50) + 1) * 1000.00 AS amount,
                                        (i.g * 2654435761) %% 100 AS bucket) AS a,
                        LATERAL (SELECT CASE
                            WHEN a.bucket < %(hot_share)s AND i.g <= %(dormant_until)s
                                THEN %(dormant)s
                            WHEN a.bucket < %(hot_share)s THEN %(hot)s
                            WHEN a.bucket < %(hot_share)s + %(warm_count)s
                                THEN (%(warm)s::int[])[1 + i.g %% %(warm_count)s]
                            ELSE (%(wallets)s::int[])
                                [1 + ((i.g / 100) * 7919 + i.g %% 100) %% %(wallet_count)s]
                            END AS wallet) AS w,
                        LATERAL (VALUES (0, %(clearing)s, a.amount, 0.00),
                                        (1, w.wallet, 0.00, a.amount))
                            AS v(ord, account_id, debit, credit)
                    WHERE t.chain_index BETWEEN %(base)s + %(first)s AND %(base)s + %(last)s
                    ORDER BY t.id, v.ord
                    """,
                    {"base": base, "first": first, "last": last, "hot": hot,
                     "hot_share": HOT_SHARE_PERCENT, "warm": warm, "warm_count": len(warm),
                     "wallets": list(wallet_ids), "wallet_count": len(wallet_ids),
                     "clearing": clearing_id, "dormant": dormant, "dormant_until": missing // 2},
                )  # fmt: skip
        insert_s = time.perf_counter() - began
        conn.execute("RESET session_replication_role")
        print("  statement: VACUUM ANALYZE ...", file=sys.stderr, flush=True)
        began = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) ledger_transaction")
        conn.execute("VACUUM (ANALYZE) ledger_entry")
        vacuum_s = time.perf_counter() - began
        total = conn.execute("SELECT count(*) FROM ledger_entry").fetchone()[0]
        size = conn.execute("SELECT pg_total_relation_size('ledger_entry')").fetchone()[0]
        per_account = conn.execute(
            """
            SELECT max(n), percentile_disc(0.5) WITHIN GROUP (ORDER BY n),
                percentile_disc(0.9) WITHIN GROUP (ORDER BY n), count(*)
            FROM (SELECT count(*) AS n FROM ledger_entry GROUP BY account_id) AS c
            """
        ).fetchone()
    return {
        "entries_total": total,
        "transactions_inserted": missing,
        "insert_s": round(insert_s, 1),
        "vacuum_analyze_s": round(vacuum_s, 1),
        "entry_table_with_indexes_mb": round(size / 1e6),
        "entries_per_account": {
            "max": per_account[0],
            "p50": per_account[1],
            "p90": per_account[2],
            "accounts_with_entries": per_account[3],
        },
        "how": "balanced pairs (clearing debit, wallet credit) with generate_series, in a "
        "session with session_replication_role = replica (superuser): no trigger fires "
        "(append-only, deferred balance, foreign keys); placeholder hashes, balance_after = "
        "the entry's amount; verify() ran before the fill",
        "spread": f"clearing: every transaction; wallet side: {HOT_SHARE_PERCENT}% one dormant "
        f"wallet in the older half (none since), {HOT_SHARE_PERCENT}% one hot wallet in the "
        f"newer half, 1% each of {WARM_WALLETS} warm ones, the rest evenly over all wallets",
    }


#: The statement page, newest first, keyset within the account on ix_ledger_entry_account_id
#: (account_id, id); each entry with its transaction's public id, number, operation and time
#: (what ``services.statement`` of the endpoint's branch reads, after it has looked up and
#: authorised the account by its uuid: that lookup is one more primary-key-like statement).
PAGE_COLUMNS = (
    "e.id, e.debit, e.credit, e.balance_after, t.uuid, t.number, t.operation, t.created_at"
)


def page_sql(after_id: int | None) -> str:
    """The page as the endpoint first wrote it: ``account_id = X AND id < cursor``.

    With the account fixed by equality, ``ORDER BY id DESC`` is served as well by the primary
    key read backwards, filtering on the account, as by ``(account_id, id)``; the planner takes
    the primary key for an account it estimates to hold many entries, which is fast while they
    are spread over the journal and reads millions of rows when they are all old (the dormant
    wallet's first page).
    """
    keyset = "AND e.id < %(after)s " if after_id is not None else ""
    return (
        f"SELECT {PAGE_COLUMNS} FROM ledger_entry AS e "  # noqa: S608 - no value is inlined
        "JOIN ledger_transaction AS t ON t.id = e.transaction_id "
        f"WHERE e.account_id = %(account)s {keyset}"
        f"ORDER BY e.id DESC LIMIT {PAGE_LIMIT + 1}"
    )


def row_keyset_sql(after_id: int | None) -> str:
    """The same page as a range of the ``(account_id, id)`` index, by row comparisons.

    No equality on the account: the ordering ``account_id DESC, id DESC`` is the index's, so
    only it can serve the page, whatever the planner estimates. The first page's upper bound is
    the largest bigint.
    """
    bound = "%(after)s" if after_id is not None else "9223372036854775807"
    return (
        f"SELECT {PAGE_COLUMNS} FROM ledger_entry AS e "  # noqa: S608 - no value is inlined
        "JOIN ledger_transaction AS t ON t.id = e.transaction_id "
        f"WHERE (e.account_id, e.id) < (%(account)s, {bound}) "
        "AND (e.account_id, e.id) > (%(account)s, 0) "
        f"ORDER BY e.account_id DESC, e.id DESC LIMIT {PAGE_LIMIT + 1}"
    )


def statement_cases(dsn: str, accounts: Mapping[str, tuple[int, str]]) -> list[dict[str, Any]]:
    """Per account: its entry count, and the cursor of a page half way down its entries."""
    cases = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for label, (account_id, account_uuid) in accounts.items():
            count = conn.execute(
                "SELECT count(*) FROM ledger_entry WHERE account_id = %s", (account_id,)
            ).fetchone()[0]
            deep = conn.execute(
                "SELECT id FROM ledger_entry WHERE account_id = %s ORDER BY id DESC "
                "OFFSET %s LIMIT 1",
                (account_id, count // 2),
            ).fetchone()
            base = {"account": label, "account_id": account_id, "uuid": account_uuid,
                    "entries": count}  # fmt: skip
            cases.append({**base, "page": "first", "after": None})
            if deep is not None and count > 2 * PAGE_LIMIT:
                cases.append({**base, "page": f"deep (after {count // 2} entries)",
                              "after": deep[0]})  # fmt: skip
    return cases


def measure_statement_sql(
    replica_dsn: str, cases: Sequence[Mapping[str, Any]], requests: int
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    rows, plans = [], {}
    with psycopg.connect(replica_dsn, autocommit=True) as replica:
        if not replica.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            raise RuntimeError("the replica URL does not point at a replica")
        for case in cases:
            label = f"{case['account']}, {case['page']}"
            print(f"  statement: {label} ...", file=sys.stderr, flush=True)
            params = {"account": case["account_id"], "after": case["after"]}
            timed: dict[str, list[float]] = {}
            for form, sql in (("sql", page_sql(case["after"])),
                              ("row_keyset_sql", row_keyset_sql(case["after"]))):  # fmt: skip
                # A page that takes more than 100 ms is timed 20 times, not --requests times.
                slow = max(timed_sql(replica, sql, params, 2)) > SLOW_PAGE_S
                timed_sql(replica, sql, params, 0 if slow else WARMUP)
                timed[form] = timed_sql(replica, sql, params, SLOW_PAGE_RUNS if slow else requests)
                plans[f"{label} ({form})"] = explain(replica_dsn, sql, params)
            rows.append({
                "account": case["account"],
                "entries": case["entries"],
                "page": case["page"],
                "requests": len(timed["sql"]),
                "sql_p50_ms": percentile_ms(timed["sql"], 50),
                "sql_p99_ms": percentile_ms(timed["sql"], 99),
                "row_keyset_sql_p50_ms": percentile_ms(timed["row_keyset_sql"], 50),
                "row_keyset_sql_p99_ms": percentile_ms(timed["row_keyset_sql"], 99),
            })  # fmt: skip
    return rows, plans


def measure_statement_http(
    port: int, app: Any, replica_dsn: str, token: str, cases: Sequence[Mapping[str, Any]],
    requests: int,
) -> list[dict[str, Any]]:  # fmt: skip
    """``GET /api/v1/ledger/accounts/{uuid}/entries`` through gunicorn, per case, as staff;
    beside it, the SQL the endpoint sends to the replica (captured from an in-process request
    and timed on the replica with psycopg, all of one request's statements per sample).

    Checks the answer's shape (``{"items": [...], "next_cursor": ...}``, ``PAGE_LIMIT`` items
    on a long statement); the deep page's cursor is made in-process with
    ``app.http.encode_cursor`` for the entry id the bare SQL pages after (a cursor is signed and
    bound to its endpoint, so it is made inside a request context of that path).
    """
    from app.http import encode_cursor

    headers = in_process_login(app.test_client(), PROBE_STAFF_EMAIL)
    replica_engine = app.extensions["lapak.db"].replicas[0].engine
    # Every gunicorn worker's first requests (connections, prepared statements) before any case.
    timed_http(port, ENTRIES_PATH.format(uuid=cases[0]["uuid"]), token, 10 * WARMUP)
    rows = []
    with psycopg.connect(replica_dsn, autocommit=True) as replica:
        for case in cases:
            label = f"{case['account']}, {case['page']}"
            print(f"  statement over HTTP: {label} ...", file=sys.stderr, flush=True)
            path = ENTRIES_PATH.format(uuid=case["uuid"]) + f"?limit={PAGE_LIMIT}"
            if case["after"] is not None:
                with app.test_request_context(path):
                    path += f"&cursor={quote(encode_cursor([case['after']]))}"
            page = call_json(port, "GET", path, token)
            if not isinstance(page.get("items"), list) or "next_cursor" not in page:
                raise RuntimeError(f"GET {path}: not a keyset page: {str(page)[:300]}")
            if len(page["items"]) != min(PAGE_LIMIT, case["entries"]):
                raise RuntimeError(f"GET {path}: {len(page['items'])} items")
            with capturing(replica_engine) as captured:
                answer = app.test_client().get(path, headers=headers)
            if answer.status_code != 200:
                raise RuntimeError(f"in-process GET {path} answered {answer.status_code}")
            sent = [(sql, params) for sql, params in captured if sql != COMMIT]
            timed_http(port, path, token, WARMUP)
            seconds, errors, samples = timed_http(port, path, token, requests)
            timed_statements(replica, sent, WARMUP)
            orm_s = timed_statements(replica, sent, requests)
            rows.append({
                "account": case["account"],
                "page": case["page"],
                "requests": requests,
                "errors": errors,
                "http_p50_ms": percentile_ms(seconds, 50),
                "http_p99_ms": percentile_ms(seconds, 99),
                "endpoint_sql_statements": len(sent),
                "endpoint_sql_p50_ms": percentile_ms(orm_s, 50),
                "endpoint_sql_p99_ms": percentile_ms(orm_s, 99),
                "error_samples": samples,
            })  # fmt: skip
    return rows


def timed_statements(
    conn: psycopg.Connection, statements: Sequence[tuple[str, Any]], count: int
) -> list[float]:
    """Seconds per run of all ``statements`` in turn, sorted."""
    seconds = []
    for _ in range(count):
        began = time.perf_counter()
        for sql, params in statements:
            conn.execute(sql, params).fetchall()
        seconds.append(time.perf_counter() - began)
    return sorted(seconds)


def start_http(stack: ExitStack, services: Services, workdir: Path, app: Any) -> tuple[int, str]:
    """Lapak under gunicorn, and a staff token (for --http); a second staff user logs in
    in-process (a login ends the user's previous session)."""
    with app.app_context():
        create_user(STAFF_EMAIL, role="staff", password=PASSWORD, name="Bench Staff")
        create_user(PROBE_STAFF_EMAIL, role="staff", password=PASSWORD, name="Probe Staff")
    port = start_lapak(stack, services, workdir, 4).port
    return port, log_in(port, STAFF_EMAIL)  # bench.orders' password is this one too


# --- running it all ----------------------------------------------------------------------------


def measure(inputs: Mapping[str, Any]) -> Figures:
    services = start_services()
    figures: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="lapak-bench-ledger-") as tmp, ExitStack() as stack:
            workdir = Path(tmp)
            print("  durable primary, migrating, creating holders ...", file=sys.stderr,
                  flush=True)  # fmt: skip
            durable_primary(services)
            dsn = services.database_url.replace("+psycopg", "")
            settings = settings_for(services, workdir)
            upgrade(settings)
            app = create_app(settings)
            stack.callback(app.extensions["lapak.db"].dispose)
            stack.callback(app.extensions["lapak.jobs"].wait_embedded)
            with app.app_context():
                hot = create_user(HOT_EMAIL, password=None, name="Pelanggan Panas").id
            # The probe opens the platform's clearing account: the oldest, as in production.
            print("  probe postings (statements) ...", file=sys.stderr, flush=True)
            figures["posting_statements"] = probe(app, dsn, hot, PROBE_POSTINGS)
            holders = create_holders(dsn, int(inputs["accounts"]))
            rows = measure_postings(app, dsn, hot, holders, inputs)
            figures["postings"] = rows
            print("  verify ...", file=sys.stderr, flush=True)
            figures["verify"] = timed_verify(app)
            codes = {
                "clearing (platform)": CLEARING_CODE,
                "hot wallet": f"{WALLET}:{CURRENCY}:{holders[0]}",
                "warm wallet": f"{WALLET}:{CURRENCY}:{holders[1]}",
                "dormant wallet": f"{WALLET}:{CURRENCY}:{holders[1 + WARM_WALLETS]}",
                "typical wallet": f"{WALLET}:{CURRENCY}:{holders[len(holders) // 2]}",
            }
            found = account_ids(dsn, list(codes.values()))
            accounts = {label: found[code] for label, code in codes.items()}
            # The fill's hot wallet is the first holder's, its warm ones the next ten's, then
            # the dormant one.
            by_holder = account_ids(dsn, [f"{WALLET}:{CURRENCY}:{h}" for h in holders])
            wallets = [by_holder[f"{WALLET}:{CURRENCY}:{h}"][0] for h in holders]
            figures["statement_fill"] = fill_entries(
                dsn, int(inputs["entries"]), accounts["clearing (platform)"][0], wallets
            )
            print("  statement: waiting for the replica ...", file=sys.stderr, flush=True)
            figures["statement_fill"]["replica_catch_up_s"] = round(
                wait_for_replica(services, timeout=900), 1
            )
            cases = statement_cases(dsn, accounts)
            replica_dsn = services.replica_urls[0].replace("+psycopg", "")
            pages, plans = measure_statement_sql(replica_dsn, cases, int(inputs["requests"]))
            if inputs["http"]:
                port, token = start_http(stack, services, workdir, app)
                http_rows = measure_statement_http(
                    port, app, replica_dsn, token, cases, int(inputs["requests"])
                )
                for row, http in zip(pages, http_rows, strict=True):
                    row.update({
                        k: v for k, v in http.items() if k.startswith(("http", "err", "endpoint"))
                    })  # fmt: skip
                    row["http_p99_over_sql_p99"] = (
                        round(row["http_p99_ms"] / row["sql_p99_ms"], 1)
                        if row["http_p99_ms"] and row["sql_p99_ms"] else None
                    )  # fmt: skip
            figures["statement_pages"] = pages
            figures["statement_page_sql"] = " ".join(page_sql(1).split())
            figures["statement_page_row_keyset_sql"] = " ".join(row_keyset_sql(1).split())
            figures["statement_plans"] = plans
    finally:
        services.stop()
    figures["targets"] = targets(figures)
    return figures


def targets(figures: Mapping[str, Any]) -> dict[str, Any]:
    rows = figures.get("postings", [])
    pages = figures.get("statement_pages", [])
    result = {
        "postings_at_least_half_of_floor": all(
            r["ratio_lapak_over_floor"] >= TARGET_FLOOR_RATIO for r in rows
        ),
        "postings_0_errors": all(r["lapak_errors"] == 0 and r["floor_errors"] == 0 for r in rows),
        "verify_ok": figures.get("verify", {}).get("ok"),
        "statement_sql_p99_under_15_ms": all(
            (r["sql_p99_ms"] or 1e9) < TARGET_PAGE_P99_MS for r in pages
        ),
        "statement_row_keyset_sql_p99_under_15_ms": all(
            (r["row_keyset_sql_p99_ms"] or 1e9) < TARGET_PAGE_P99_MS for r in pages
        ),
    }
    if any("http_p99_ms" in r for r in pages):
        result["statement_http_p99_under_15_ms"] = all(
            (r.get("http_p99_ms") or 1e9) < TARGET_PAGE_P99_MS for r in pages
        )
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ledger",
        description="Ledger postings through the service beside the SQL floor; the statement "
        "page over millions of entries on the replica.",
    )
    parser.add_argument("--postings", type=positive, default=None,
                        help="postings per shape, client count and side (default 500 at 1 "
                        "client, 2000 otherwise)")  # fmt: skip
    parser.add_argument("--clients", type=client_levels, default=list(DEFAULT_CLIENTS),
                        help="concurrent clients, comma-separated (default 1,8,32)")  # fmt: skip
    parser.add_argument("--accounts", type=positive, default=10_000,
                        help="customers with a wallet for the spread shape and the fill "
                        "(default 10000)")  # fmt: skip
    parser.add_argument("--entries", type=non_negative, default=10_000_000,
                        help="entries in the journal for the statement page (default "
                        "10000000)")  # fmt: skip
    parser.add_argument("--requests", type=positive, default=500,
                        help="timed statement pages per case (default 500)")  # fmt: skip
    parser.add_argument("--http", action="store_true",
                        help=f"also time GET {ENTRIES_PATH} through gunicorn (off until the "
                        "endpoint exists)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.accounts < WARM_WALLETS + 3:
        parser.error(f"--accounts: at least {WARM_WALLETS + 3}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    inputs = {
        "postings": args.postings,
        "postings_per_level": {
            c: postings_at(c, {"postings": args.postings}) for c in args.clients
        },
        "clients": args.clients,
        "accounts": args.accounts,
        "entries": args.entries,
        "requests": args.requests,
        "http": args.http,
        "posting": "CREDIT_ADD of 1,000-50,000 IDR: manual_clearing:IDR debited, a customer's "
        "wallet credited; hot: one customer's wallet; spread: the wallets of --accounts "
        "customers, scattered",
        "lapak": "with transaction(): modules.ledger.posting.post(...) in-process, one thread "
        "per client, each with its own app context (the app's engine: pool 5 + 10 overflow, "
        "LIFO, pinged only when in doubt)",
        "floor": "the same statements as Lapak's (checked on a probe posting, commit included) "
        "with psycopg 3, one connection per thread: accounts locked by code in id order, chain "
        "head locked, fingerprint, canonical content and SHA-256 link in Python, the one "
        "writable-CTE write, COMMIT",
        "rounds": "two per shape and client count, alternating which side goes first",
        "database": "throw-away PostgreSQL primary + streaming replica (tests/servers.py); "
        "primary made durable (fsync, full_page_writes, synchronous_commit on), "
        "pg_stat_statements loaded",
        "statement_page": f"limit {PAGE_LIMIT}, newest first, keyset e.id < cursor within the "
        "account, joined to ledger_transaction; psycopg on the replica, one connection, "
        "sequential; replica caught up first",
    }
    return run_as_command(NAME, inputs, measure)


if __name__ == "__main__":
    sys.exit(main())
