"""The HTTP floor of ``bench.orders``: Lapak's order and listing requests with nothing but
what they must do, in a bare Flask app under the same gunicorn as Lapak.

Served as ``python -m bench.serve_floor bench.floor_app:app`` (``lapak serve``'s gunicorn and
settings: threaded workers, the same count, threads and timeouts); configured by the environment
(``bench.orders`` sets it): ``BENCH_FLOOR_DATABASE_URL`` (the primary), ``BENCH_FLOOR_REPLICA_URL``,
``BENCH_FLOOR_REDIS_URL``, ``BENCH_FLOOR_SECRET_KEY`` (Lapak's ``secret_key``: the same JWT key and
cursor signatures), ``BENCH_FLOOR_CURSOR_SALT`` (the salt of Lapak's listing cursors, so a cursor
from either server works on both) and ``BENCH_FLOOR_SESSION_SECONDS``.

Per request, as Lapak does:

* the ``Authorization: Bearer`` JWT checked with PyJWT (HS256, the key Lapak derives from its
  secret, the same audience and issuer, the same required claims);
* the session checked in Redis (``GET lapak:auth:session:<sid>``); on a miss, the same
  session/user SELECT on the primary, and the state cached for the same time;
* ``POST /api/v1/marketplace/orders``: exactly Lapak's order statements
  (:data:`bench.floor.ORDER_STEPS`) in one transaction on this thread's kept connection, answered
  201 with a ``Location`` and the body in Lapak's shape;
* ``POST /api/v1/payments`` (``bench.payments``): exactly Lapak's wallet payment statements
  (:data:`bench.floor_payments.PAYMENT_STEPS`) in one transaction on the same kept connection,
  answered 201 with a ``Location`` and the transaction in Lapak's shape;
* ``GET /api/v1/marketplace/orders?limit=&cursor=``: the listing's keyset SQL
  (:func:`bench.floor.bare_sql`; a customer sees their own orders) on this thread's kept replica
  connection, answered with ``items`` and a signed ``next_cursor`` (and ``Link``), as Lapak.

With ``?replica_check=1`` the listing first asks the replica what Lapak asks it before serving
its rows (:data:`bench.floor.REPLICA_STATE`: not promoted, replayed what the client has seen),
in a round trip of its own as Lapak does: the same SQL. Without it, the keyset query alone.

Left out, because they are Lapak's overhead to measure: the pool's checkout (and its rare ping),
choosing among replicas, ``X-Lapak-LSN`` on answers, the outbox dispatch flag, request ids and
logs, schema validation beyond what the bench sends, and the sliding idle expiry's rare write.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import jwt
import psycopg
import redis
from flask import Flask, Response, jsonify, request
from itsdangerous import BadSignature, URLSafeSerializer

from bench.floor import (
    REPLICA_STATE,
    FloorRefused,
    bare_sql,
    place,
    placed_body,
    summary_item,
)
from bench.floor_payments import paid_body, pay

ISSUER = "lapak"
AUDIENCE = "lapak-api"
REQUIRED_CLAIMS = ("sub", "sid", "iat", "exp", "iss", "aud", "jti", "role", "email")
SESSION_KEY = "lapak:auth:session:{}"
TOMBSTONE = b"revoked"
APPLICATION = "bench-http-floor"
ORDERS = "/api/v1/marketplace/orders"
PAYMENTS = "/api/v1/payments"
MAX_LIMIT = 100
#: The session check on a cache miss: what Lapak's ``_load_state`` reads.
LOAD_SESSION = (
    "SELECT s.id, s.sid, s.user_id, s.revoked_at, s.revoked_reason, s.idle_expires_at, "
    "s.absolute_expires_at, s.last_seen_at, u.uuid, u.email, u.role, u.active "
    "FROM auth_session AS s JOIN user_account AS u ON s.user_id = u.id WHERE s.sid = %s"
)

SECRET_KEY = os.environ.get("BENCH_FLOOR_SECRET_KEY", "")
JWT_KEY = hmac.new(SECRET_KEY.encode(), b"lapak.auth.jwt", hashlib.sha256).hexdigest()
SESSION_SECONDS = int(os.environ.get("BENCH_FLOOR_SESSION_SECONDS", "10"))
CURSORS = URLSafeSerializer(SECRET_KEY, salt=os.environ.get("BENCH_FLOOR_CURSOR_SALT", ""))

app = Flask(__name__)

# A connection per primary and replica per thread (gunicorn's threaded worker, as lapak serve:
# several requests at once in a worker, each on its own thread), made on first use; as Lapak's
# pool, which hands each concurrent request a connection of its own. One Redis client per
# process: it is thread-safe and pools its connections.
_threads = threading.local()
_kept: dict[str, Any] = {}


def _thread_kept() -> dict[str, Any]:
    kept = getattr(_threads, "kept", None)
    if kept is None:
        kept = _threads.kept = {}
    return kept


def _primary() -> psycopg.Connection:
    kept = _thread_kept()
    conn = kept.get("primary")
    if conn is None or conn.closed or conn.broken:
        conn = kept["primary"] = psycopg.connect(
            os.environ["BENCH_FLOOR_DATABASE_URL"], application_name=APPLICATION
        )
    return conn


def _replica() -> psycopg.Connection:
    kept = _thread_kept()
    conn = kept.get("replica")
    if conn is None or conn.closed or conn.broken:
        conn = kept["replica"] = psycopg.connect(
            os.environ["BENCH_FLOOR_REPLICA_URL"],
            application_name=f"{APPLICATION}-replica",
            autocommit=True,
        )
    return conn


def _redis() -> redis.Redis:
    client = _kept.get("redis")
    if client is None:
        client = _kept["redis"] = redis.Redis.from_url(os.environ["BENCH_FLOOR_REDIS_URL"])
    return client


def _problem(status: int, title: str) -> Response:
    answer = jsonify({"type": "about:blank", "title": title, "status": status})
    answer.status_code = status
    answer.content_type = "application/problem+json"
    return answer


class Refused(Exception):
    def __init__(self, status: int, title: str) -> None:
        super().__init__(title)
        self.status, self.title = status, title


@app.errorhandler(Refused)
def _refused(error: Refused) -> Response:
    return _problem(error.status, error.title)


@app.errorhandler(psycopg.OperationalError)
def _unavailable(_error: Exception) -> Response:
    return _problem(503, "The database is unavailable")


def _caller() -> dict[str, Any]:
    """The session state of the request's bearer token (Lapak's checks, in the same order)."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refused(401, "send Authorization: Bearer <access token>")
    try:
        claims = jwt.decode(
            token.strip(),
            JWT_KEY,
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.PyJWTError:
        raise Refused(401, "the token is not valid") from None
    state = _session_state(claims["sid"])
    if state is None or state["user_uuid"] != claims["sub"]:
        raise Refused(401, "this session does not exist")
    now = datetime.now(UTC)
    if state["revoked"] or not state["user_active"]:
        raise Refused(401, "the session was ended")
    expires = min(
        datetime.fromisoformat(state["idle_expires_at"]),
        datetime.fromisoformat(state["absolute_expires_at"]),
    )
    if now >= expires:
        raise Refused(401, "the session has expired")
    return state


def _session_state(sid: str) -> dict[str, Any] | None:
    cached = _redis().get(SESSION_KEY.format(sid))
    if cached is not None and cached != TOMBSTONE:
        return json.loads(cached)
    conn = _primary()
    try:
        row = conn.execute(LOAD_SESSION, (uuid.UUID(sid),)).fetchone()
    finally:
        conn.rollback()
    if row is None:
        return None
    state = {
        "session_pk": row[0],
        "sid": str(row[1]),
        "user_id": row[2],
        "user_uuid": str(row[8]),
        "email": row[9],
        "role": row[10],
        "user_active": row[11],
        "revoked_reason": row[4],
        "revoked": row[3] is not None,
        "idle_expires_at": row[5].isoformat(),
        "absolute_expires_at": row[6].isoformat(),
        "last_seen_at": row[7].isoformat(),
    }
    if cached is None:
        _redis().set(SESSION_KEY.format(sid), json.dumps(state), ex=SESSION_SECONDS)
    return state


def _check_replica(replica: psycopg.Connection) -> None:
    """With ``?replica_check=1``: Lapak's question to the replica before its rows are served
    (in recovery, replayed at least the client's ``X-Lapak-LSN``), one round trip of its own."""
    in_recovery, replayed, _ = replica.execute(REPLICA_STATE).fetchone()
    wanted = request.headers.get("X-Lapak-LSN")
    if not in_recovery or (wanted and _lsn(replayed) < _lsn(wanted)):
        raise Refused(503, "the replica is promoted or behind the client")


def _lsn(text: str | None) -> int:
    high, _, low = (text or "0/0").partition("/")
    return (int(high, 16) << 32) + int(low, 16)


@app.get("/health/live")
def live() -> dict[str, str]:
    return {"status": "ok"}


@app.post(ORDERS)
def place_order() -> tuple[Response, int, dict[str, str]]:
    caller = _caller()
    if caller["role"] != "customer":
        raise Refused(403, "the floor places customers' own orders only")
    body = request.get_json(silent=True) or {}
    try:
        (line,) = body["lines"]
        product, quantity = str(uuid.UUID(line["product"])), Decimal(str(line["quantity"]))
        if body["payment"]["method"] != "bank_transfer" or quantity <= 0:
            raise ValueError
    except (KeyError, TypeError, ValueError, InvalidOperation):
        raise Refused(422, "one line of a product and a quantity, paid by bank_transfer") from None
    try:
        ctx = place(_primary(), caller["user_id"], product, quantity)
    except FloorRefused as refused:
        raise Refused(422, str(refused)) from None
    answer = placed_body(ctx, caller["user_uuid"])
    return jsonify(answer), 201, {"Location": f"{ORDERS}/{answer['order']['id']}"}


@app.post(PAYMENTS)
def pay_from_wallet() -> tuple[Response, int, dict[str, str]]:
    """``bench.payments``: a customer pays their own invoice in full from their wallet."""
    caller = _caller()
    if caller["role"] != "customer":
        raise Refused(403, "the floor pays customers' own invoices only")
    body = request.get_json(silent=True) or {}
    try:
        invoice = str(uuid.UUID(body["invoice"]))
        if body["provider"] != "wallet" or set(body) != {"invoice", "provider"}:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise Refused(422, "an invoice, paid in full by the wallet provider") from None
    try:
        ctx = pay(_primary(), caller["user_id"], invoice)
    except FloorRefused as refused:
        raise Refused(422, str(refused)) from None
    answer = paid_body(ctx)
    return jsonify(answer), 201, {"Location": f"{PAYMENTS}/{answer['id']}"}


@app.get(ORDERS)
def list_orders() -> Response:
    caller = _caller()
    try:
        limit = int(request.args.get("limit", "50"))
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError
    except ValueError:
        raise Refused(422, f"limit is 1 to {MAX_LIMIT}") from None
    key = None
    if cursor := request.args.get("cursor"):
        try:
            moment, last_id = CURSORS.loads(cursor)
            key = (datetime.fromisoformat(moment["t"]), int(last_id))
        except (BadSignature, KeyError, TypeError, ValueError):
            raise Refused(400, "the cursor is not valid") from None
    customer = caller["user_id"] if caller["role"] == "customer" else None
    sql, params = bare_sql(key, customer, limit)
    replica = _replica()
    if request.args.get("replica_check"):
        _check_replica(replica)
    rows = replica.execute(sql, params).fetchall()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = CURSORS.dumps([{"t": rows[-1][10].isoformat()}, rows[-1][0]])
    answer = jsonify({"items": [summary_item(row) for row in rows], "next_cursor": next_cursor})
    if next_cursor:
        answer.headers["Link"] = f'<{ORDERS}?limit={limit}&cursor={quote(next_cursor)}>; rel="next"'
    return answer
